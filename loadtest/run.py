"""Load test: `anastrozole-cds serve --workers N` on 127.0.0.1, wrk posting signed patient-view
calls with a 100-resource prefetch, then 1,000 concurrent feedback posts counted in the store,
and the count checked again across a restart (one batch interrupted by SIGTERM mid-flight).

    make loadtest                                   # 2 workers x 1 thread, 4 connections, or:
    .venv/bin/python loadtest/run.py --workers 2 --threads 4 --duration 10 --connections 16

One thread per worker by default: with the prefetch in the request a call never waits, and
threads only contend for the GIL (2x4 measured 25% fewer calls a second than 2x1). Four
connections keep both workers busy; more only queue (docs/performance.md).

Needs `wrk` (Debian: `apt-get install -y wrk`; run.py installs it with apt-get when it is
missing and it runs as root). Bounded in time: about duration + 30 s. Only 127.0.0.1.

JWTs: every call carries its own pre-signed JWT (a fresh `jti`), as a real EHR sends; wrk's Lua
script rotates through tokens.txt and never reuses one. Nothing in the service is relaxed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import orjson
import requests
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cds_hooks.services import prefetch_templates  # noqa: E402
from sandbox.processes import ProcessError, free_port, stop_process, wait_until_ready  # noqa: E402
from sandbox.synthetic import make_patient_bundle, prefetch_for  # noqa: E402

ISSUER = "https://loadtest-ehr.example.org"
PATIENT_VIEW = "anastrozole-monitor-patient-view"
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
GOALS = {"rps": 500.0, "p99_ms": 50.0, "rss_mb": 150.0}


# -- the request and its tokens ------------------------------------------------------------------


def patient_view_body(n_resources: int) -> bytes:
    resources = [e["resource"] for e in make_patient_bundle(n_resources, seed=0, now=NOW)["entry"]]
    prefetch = prefetch_for(resources, [template.key for template in prefetch_templates()])
    patient_id = prefetch["patient"]["id"]
    return orjson.dumps(
        {
            "hook": "patient-view",
            "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/load-1", "patientId": patient_id},
            "prefetch": prefetch,
        }
    )


_SIGNING_KEY: ECKey | None = None


def _init_signer(private_jwk: dict[str, Any]) -> None:
    global _SIGNING_KEY
    _SIGNING_KEY = ECKey.import_key(private_jwk)


def _sign(aud: str) -> str:
    assert _SIGNING_KEY is not None
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": aud, "iat": now, "exp": now + 600, "jti": str(uuid.uuid4())}
    header = {"alg": "ES384", "typ": "JWT", "kid": _SIGNING_KEY.kid}
    return jwt.encode(header, claims, _SIGNING_KEY, algorithms=["ES384"])


def sign_many(key: ECKey, aud: str, count: int) -> list[str]:
    with Pool(2, initializer=_init_signer, initargs=(key.as_dict(private=True),)) as pool:
        return pool.map(_sign, [aud] * count, chunksize=500)


# -- the server -------------------------------------------------------------------------------------


class Server:
    def __init__(self, folder: Path, config: Path, port: int, workers: int, threads: int):
        self.folder, self.config, self.port = folder, config, port
        self.workers, self.threads = workers, threads
        self.base = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANASTROZOLE_CDS_")}
        command = [sys.executable, "-m", "anastrozole_cds.cli", "serve", "--host", "127.0.0.1",
                   "--port", str(self.port), "--workers", str(self.workers),
                   "--threads", str(self.threads), "--config", str(self.config)]  # fmt: skip
        log = (self.folder / "serve.log").open("ab")
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
        try:
            wait_until_ready(f"{self.base}/healthz", self.process, what="anastrozole-cds serve")
        except ProcessError as error:
            raise SystemExit(f"{error}; see {self.folder / 'serve.log'}") from None

    def worker_pids(self) -> list[int]:
        assert self.process is not None
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(self.process.pid)], capture_output=True, text=True
        ).stdout
        return [int(pid) for pid in out.split()]

    def stop(self) -> None:
        if self.process is None:
            return
        stop_process(self.process)  # SIGTERM: gunicorn finishes the requests it acknowledged
        self.process = None


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used so far (/proc/PID/stat)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


class RssSampler(threading.Thread):
    """The peak RSS of each worker while the load runs."""

    def __init__(self, server: Server) -> None:
        super().__init__(daemon=True)
        self.server, self.peak, self.running = server, {}, True

    def run(self) -> None:
        while self.running:
            for pid in self.server.worker_pids():
                self.peak[pid] = max(self.peak.get(pid, 0.0), rss_mb(pid))
            time.sleep(0.5)


# -- the runs ---------------------------------------------------------------------------------------


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk not found: apt-get install -y wrk", flush=True)
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, capture_output=True)
        found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is needed: apt-get install -y wrk (Debian/Ubuntu)")
    return found


def run_wrk(args: argparse.Namespace, server: Server, folder: Path) -> dict[str, float]:
    env = {
        **os.environ,
        "LOADTEST_DIR": str(folder),
        "LOADTEST_PATH": f"/cds-services/{PATIENT_VIEW}",
    }
    command = [ensure_wrk(), f"-t{args.wrk_threads}", f"-c{args.connections}",
               f"-d{args.duration}s", "--timeout", "5s", "-s", str(ROOT / "loadtest" / "patient_view.lua"),
               server.base, "--", str(args.wrk_threads)]  # fmt: skip
    output = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=args.duration + 30
    ).stdout
    (folder / "wrk.txt").write_text(output)
    line = next(line for line in output.splitlines() if line.startswith("RESULT "))
    result = {k: float(v) for k, v in (item.split("=") for item in line.split()[1:])}
    result["rps"] = result["requests"] / result["duration_s"]
    result["errors"] = (
        result["non200"] + result["connect"] + result["read"] + result["write"] + result["timeout"]
    )
    return result


def post_feedback(server: Server, tokens: list[str], stop_after: float | None) -> int:
    """POST one feedback item per token, 64 at a time; the number answered 200."""
    path = f"/cds-services/{PATIENT_VIEW}/feedback"
    acked = 0
    lock = threading.Lock()

    def one(token: str) -> None:
        nonlocal acked
        body = {
            "feedback": [
                {
                    "card": str(uuid.uuid4()),
                    "outcome": "overridden",
                    "outcomeTimestamp": "2025-06-01T12:00:00Z",
                }
            ]
        }
        try:
            response = requests.post(
                f"{server.base}{path}",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )
        except requests.RequestException:
            return
        if response.status_code == 200 and response.json() == {"received": 1}:
            with lock:
                acked += 1

    stopper = threading.Timer(stop_after or 0.0, server.stop)
    with ThreadPoolExecutor(max_workers=64) as pool:
        if stop_after is not None:
            stopper.start()
        list(pool.map(one, tokens))
    if stop_after is not None:
        stopper.join()  # the old server has exited before anything else happens
    return acked


def stored_feedback(database: Path) -> int:
    with sqlite3.connect(database) as connection:
        (count,) = connection.execute("SELECT COUNT(*) FROM cds_feedback").fetchone()
    return int(count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk load")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--resources", type=int, default=100, help="prefetch size")
    parser.add_argument("--feedback", type=int, default=1000)
    parser.add_argument(
        "--max-rps", type=int, default=1500, help="tokens signed per second of load"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")

    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="anastrozole-loadtest-"))
    key = ECKey.generate_key("P-384", parameters={"kid": "loadtest-es384", "use": "sig"})
    (folder / "jwks.json").write_bytes(orjson.dumps(KeySet([key]).as_dict(private=False)))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    database = folder / "store.sqlite3"
    config = folder / "loadtest.toml"
    config.write_text(
        f"""# load-test config: a test issuer pinned by a local JWKS file; nothing else relaxed
public_base_url = "{base}"
store_url = "sqlite:///{database}"
instance_path = "{folder}"
evaluation_time = "{NOW.isoformat()}"
log_level = "WARNING"

[[issuers]]
iss = "{ISSUER}"
jwks_file = "{folder / "jwks.json"}"
"""
    )
    (folder / "body.json").write_bytes(patient_view_body(args.resources))

    count = args.duration * args.max_rps
    started = time.monotonic()
    tokens = sign_many(key, f"{base}/cds-services/{PATIENT_VIEW}", count + 50)
    feedback_tokens = sign_many(
        key, f"{base}/cds-services/{PATIENT_VIEW}/feedback", 2 * args.feedback
    )
    print(f"signed {len(tokens) + len(feedback_tokens)} JWTs in {time.monotonic() - started:.1f} s")
    (folder / "tokens.txt").write_text("\n".join(tokens[50:]) + "\n")

    server = Server(folder, config, port, args.workers, args.threads)
    server.start()
    figures: dict[str, Any] = {"workers": args.workers, "threads": args.threads}
    try:
        for token in tokens[:50]:  # warm every worker up (imports, first connections)
            requests.post(
                f"{base}/cds-services/{PATIENT_VIEW}",
                data=(folder / "body.json").read_bytes(),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                timeout=10,
            ).raise_for_status()
        sampler = RssSampler(server)
        sampler.start()
        workers = server.worker_pids()
        cpu_before = cpu_seconds(workers)
        load = run_wrk(args, server, folder)
        cpu_used = cpu_seconds(workers) - cpu_before
        sampler.running = False
        sampler.join()
        figures.update(load)
        # The workers' own CPU per call: what a call costs whatever else shares the cores
        # (wrk itself, other work on the machine), and so what dedicated cores would carry.
        figures["server_cpu_ms_per_request"] = round(1000 * cpu_used / max(load["requests"], 1), 2)
        figures["rss_mb_per_worker"] = sorted(round(mb, 1) for mb in sampler.peak.values())

        acked = post_feedback(server, feedback_tokens[: args.feedback], None)
        figures["feedback_acked"] = acked
        figures["feedback_stored"] = stored_feedback(database)

        # a second batch, with SIGTERM (graceful stop) while it is in flight
        acked_during_stop = post_feedback(server, feedback_tokens[args.feedback :], 0.3)
        stored_before_restart = stored_feedback(database)
        server.start()
        figures["feedback_acked_during_stop"] = acked_during_stop
        figures["feedback_stored_before_restart"] = stored_before_restart
        figures["feedback_stored_after_restart"] = stored_feedback(database)
        figures["healthy_after_restart"] = (
            requests.get(f"{base}/healthz", timeout=5).status_code == 200
        )
    finally:
        server.stop()

    lost = acked + acked_during_stop - figures["feedback_stored_after_restart"]
    figures["feedback_lost"] = max(0, lost)
    print(json.dumps(figures, indent=2))
    verdicts = {
        f"patient-view >= {GOALS['rps']:.0f} req/s": figures["rps"] >= GOALS["rps"],
        f"p99 < {GOALS['p99_ms']:.0f} ms": figures["p99_ms"] < GOALS["p99_ms"],
        "zero errors": figures["errors"] == 0,
        f"RSS per worker < {GOALS['rss_mb']:.0f} MB": all(
            mb < GOALS["rss_mb"] for mb in figures["rss_mb_per_worker"]
        ),
        f"{args.feedback} concurrent feedback posts all stored": figures["feedback_stored"]
        == args.feedback
        and acked == args.feedback,
        "no acknowledged feedback lost across a restart": figures["feedback_lost"] == 0,
    }
    for goal, met in verdicts.items():
        print(f"[{'met' if met else 'NOT MET':^8}] {goal}")
    if args.json:
        args.json.write_text(json.dumps({"figures": figures, "goals": verdicts}, indent=2))
    print(f"logs and wrk output: {folder}")


if __name__ == "__main__":
    main()
