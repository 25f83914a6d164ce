"""Instructions per `evaluate_json` call, counted by valgrind (cachegrind): a measure of the
core's cost that, unlike time, does not move with what else runs on the machine, so two
commits can be compared on a noisy VM (docs/performance.md).

    .venv/bin/python benchmarks/instructions.py            # 10, 100 and 1,000 resources
    .venv/bin/python benchmarks/instructions.py 100 --calls 200
    .venv/bin/python benchmarks/instructions.py --service   # one patient-view call, in process

Each size runs the interpreter twice under cachegrind, with W and W + N calls after the same
warm-up; the difference over N is one call's instructions, start-up and imports cancelling
out. Needs valgrind (Debian: `apt-get install -y valgrind`); about 10 s a size. Instructions
are not time: orjson's vector code does more per instruction than the interpreter does.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WARM_UP = 20

PROGRAM = """
import sys
sys.path.insert(0, {root!r})
from datetime import UTC, datetime
import orjson
from clinical import evaluate_json
from sandbox.synthetic import bundle_bytes
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
data = bundle_bytes({n}, 0, NOW)
for _ in range({warm_up}):
    {call}
for _ in range({calls}):
    {call}
"""

CALLS = {"evaluate_json": "evaluate_json(data, now=NOW)", "orjson": "orjson.loads(data)"}

# A whole patient-view call with a 100-resource prefetch through the server worker's app
# (create_worker_app: the collector set up as under gunicorn), JWT verification on. The keys
# and one JWT per call are made once, by `service_tokens`, and read from files: key generation
# (RSA above all) and ECDSA signing take a different number of instructions every time.
SERVICE_PROGRAM = """
import sys, logging, tempfile
from pathlib import Path
sys.path.insert(0, {root!r})
logging.disable(logging.INFO)
import orjson
from anastrozole_cds.server import create_worker_app
from anastrozole_cds.settings import load_settings
from benchmarks.test_bench_service import NOW, hook_request, patient_resources
from tests.cds_hooks.cds_helpers import PATIENT_VIEW, Keys, settings_values
keys = Keys(None, None, Path({jwks!r}))
client = create_worker_app(
    load_settings(**settings_values(keys, Path(tempfile.mkdtemp()), evaluation_time=NOW))
).test_client()
data = orjson.dumps(hook_request(patient_resources({n}), prefetch=True))
tokens = Path({tokens!r}).read_text().split()
for token in tokens[: {warm_up} + {calls}]:
    response = client.post(
        f"/cds-services/{{PATIENT_VIEW}}",
        data=data,
        headers={{"Authorization": f"Bearer {{token}}", "Content-Type": "application/json"}},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
"""


def service_tokens(folder: Path, count: int) -> tuple[Path, Path]:
    """The issuer's JWKS file and `count` patient-view JWTs (one per line), in `folder`."""
    sys.path.insert(0, str(ROOT))
    from tests.cds_hooks.cds_helpers import PATIENT_VIEW, make_keys, service_url

    keys = make_keys(folder)
    tokens = folder / "tokens.txt"
    tokens.write_text("\n".join(keys.sign(service_url(PATIENT_VIEW)) for _ in range(count)))
    return keys.jwks_file, tokens


def instructions(n: int, call: str, calls: int, *, tokens: tuple[Path, Path] | None = None) -> int:
    """Instructions of the whole program with `calls` timed calls (cachegrind's I refs);
    `tokens`, from `service_tokens`, for the service call."""
    if call == "service":
        assert tokens is not None
        program = SERVICE_PROGRAM.format(
            root=str(ROOT), n=n, warm_up=WARM_UP, calls=calls, jwks=str(tokens[0]),
            tokens=str(tokens[1]),
        )  # fmt: skip
    else:
        program = PROGRAM.format(root=str(ROOT), n=n, warm_up=WARM_UP, calls=calls, call=call)
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run(
            ["valgrind", "--tool=cachegrind", "--cache-sim=no",
             f"--cachegrind-out-file={folder}/out", sys.executable, "-c", program],
            capture_output=True, text=True, check=False,
            env={**os.environ, "PYTHONHASHSEED": "0"},  # the same dict and set layouts each run
        )  # fmt: skip
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"valgrind failed:\n{done.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def per_call(n: int, call: str, calls: int) -> float:
    if call != "service":
        return (instructions(n, call, calls) - instructions(n, call, 0)) / calls
    with tempfile.TemporaryDirectory() as folder:
        tokens = service_tokens(Path(folder), WARM_UP + calls)
        return (
            instructions(n, call, calls, tokens=tokens) - instructions(n, call, 0, tokens=tokens)
        ) / calls


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[10, 100, 1_000])
    parser.add_argument("--calls", type=int, default=100, help="calls counted per size")
    parser.add_argument(
        "--service", action="store_true", help="a patient-view call with a 100-resource prefetch"
    )
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed: apt-get install -y valgrind")
    if args.service:
        calls = min(args.calls, 50)
        print(f"patient-view, 100-resource prefetch: {per_call(100, 'service', calls) / 1e6:.3f} M")
        return
    print(f"{'resources':>9}  {'orjson.loads':>14}  {'evaluate_json':>14}  ratio")
    for n in args.sizes:
        calls = max(5, args.calls * 100 // max(n, 100))  # fewer calls for larger patients
        parse = per_call(n, CALLS["orjson"], calls)
        evaluate = per_call(n, CALLS["evaluate_json"], calls)
        print(
            f"{n:>9,}  {parse / 1e6:>12.3f} M  {evaluate / 1e6:>12.3f} M  {evaluate / parse:.2f}x"
        )


if __name__ == "__main__":
    main()
