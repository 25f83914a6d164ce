-- wrk script: POST a patient-view with a 100-resource prefetch, each request with its own
-- pre-signed JWT (a real EHR signs a fresh JWT, with a new jti, for every call; the service
-- refuses a replayed jti). Thread i of n takes tokens i, i+n, i+2n, ... from tokens.txt.
-- Set by run.py through the environment: LOADTEST_DIR (tokens.txt, body.json), LOADTEST_PATH.

local dir = os.getenv("LOADTEST_DIR")
local path = os.getenv("LOADTEST_PATH")
local threads = {}
local counter = 0

local function read(name)
  local file = assert(io.open(dir .. "/" .. name, "rb"))
  local text = file:read("*a")
  file:close()
  return text
end

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

function init(args)
  body = read("body.json")
  tokens = {}
  local index = 0
  local total = tonumber(args[1] or "1")
  for line in io.lines(dir .. "/tokens.txt") do
    if index % total == (id - 1) then
      table.insert(tokens, line)
    end
    index = index + 1
  end
  next_token = 1
  bad = 0
end

function request()
  local token = tokens[next_token]
  if token == nil then
    token = "exhausted" -- more requests than tokens: counted as errors (401), never replayed
  end
  next_token = next_token + 1
  return wrk.format("POST", path, {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }, body)
end

function response(status, headers, body)
  if status ~= 200 then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local non200 = 0
  for _, thread in ipairs(threads) do
    non200 = non200 + thread:get("bad")
  end
  local errors = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_s=%.3f non200=%d connect=%d read=%d write=%d timeout=%d status=%d p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
    summary.requests, summary.duration / 1e6, non200, errors.connect, errors.read, errors.write,
    errors.timeout, errors.status, latency:percentile(50) / 1e3, latency:percentile(90) / 1e3,
    latency:percentile(99) / 1e3, latency.max / 1e3))
end
