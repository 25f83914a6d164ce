"""`anastrozole-cds serve` checks what would make every worker fail before gunicorn starts,
and stops with one line naming the setting; a second `serve` on the same instance_path never
empties the running one's /metrics."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client import values

from runtime import metrics
from tests.cds_hooks.cds_helpers import PATIENT_VIEW, hook_body, make_keys, trt_man_prefetch
from tests.security.sec_live_server import ROOT, live_service

PORT = 19041  # never bound: every start here stops before gunicorn


def _serve(tmp_path: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANASTROZOLE_CDS_")}
    env.update(
        ANASTROZOLE_CDS_INSTANCE_PATH=str(tmp_path),
        ANASTROZOLE_CDS_PUBLIC_BASE_URL=f"http://127.0.0.1:{PORT}",
        **variables,
    )
    command = [sys.executable, "-m", "anastrozole_cds.cli", "serve", "--port", str(PORT)]
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize(
    ("variables", "says"),
    [
        ({"ANASTROZOLE_CDS_SMART_ALLOWED_ISSUERS": "https://ehr.example.org/fhir"}, "ANASTROZOLE_CDS_SMART_ALLOWED_ISSUERS: not a JSON list"),
        ({"ANASTROZOLE_CDS_SMART_CLIENT_AUTH": "private_key_jwt"}, "needs private_key_file"),
        ({"ANASTROZOLE_CDS_SMART_CLIENT_AUTH": "private_key_jwt", "ANASTROZOLE_CDS_SMART_PRIVATE_KEY_FILE": "/nope/key.json"}, "ANASTROZOLE_CDS_SMART_PRIVATE_KEY_FILE: key file not found: /nope/key.json"),
        ({"ANASTROZOLE_CDS_SMART_TOKEN_KEY": "not-a-key-but-secret-all-the-same"}, "ANASTROZOLE_CDS_SMART_TOKEN_KEY: the token key is not a Fernet key"),
        ({"ANASTROZOLE_CDS_SMART_PREVIOUS_TOKEN_KEYS": '["not-a-key-but-secret-all-the-same"]'}, "ANASTROZOLE_CDS_SMART_PREVIOUS_TOKEN_KEYS: previous token key 1 is not a Fernet key"),
        ({"ANASTROZOLE_CDS_STORE_URL": "postgresql+psycopg://cds:hunter2-secret@127.0.0.1:1/cds"}, "store_url: cannot use the database at postgresql+psycopg://cds:***@127.0.0.1:1/cds"),
    ],
    ids=["issuers-not-json", "no-key-file", "missing-key-file", "bad-token-key", "bad-previous-key", "database-down"],
)  # fmt: skip
def test_a_setting_that_would_fail_every_worker_stops_serve_with_one_line(
    tmp_path: Path, variables: dict[str, str], says: str
) -> None:
    result = _serve(tmp_path, **variables)
    assert result.returncode == 1, result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("Error: ") and says in last_line
    assert "Traceback" not in result.stderr and "Worker" not in result.stderr
    assert "secret" not in result.stderr
    assert not (tmp_path / "prometheus-metrics").exists()  # stopped before anything was shared


# -- the Prometheus folder of a running server -------------------------------------------------------


def _series(base: str) -> list[str]:
    text = requests.get(f"{base}/metrics", timeout=5).text
    return [line for line in text.splitlines() if line and not line.startswith("#")]


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Any]:
    with live_service(tmp_path, make_keys(tmp_path), workers=2) as service:
        yield service


@pytest.mark.integration
def test_a_second_serve_on_the_same_instance_path_leaves_the_first_ones_metrics(
    running: Any, tmp_path: Path
) -> None:
    path = f"/cds-services/{PATIENT_VIEW}"
    body = hook_body(prefetch=trt_man_prefetch())
    url = f"{running.base}{path}"
    assert requests.post(url, json=body, headers=running.headers(path), timeout=10).ok
    assert _series(running.base)

    port = running.base.rsplit(":", 1)[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANASTROZOLE_CDS_")}
    second = subprocess.run(
        [sys.executable, "-m", "anastrozole_cds.cli", "serve", "--port", port,
         "--config", str(tmp_path / "anastrozole-cds.toml")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert second.returncode == 1
    assert "in use by another running anastrozole-cds serve" in second.stderr

    assert requests.post(url, json=body, headers=running.headers(path), timeout=10).ok
    calls = [
        line for line in _series(running.base) if line.startswith("anastrozole_cds_calls_total")
    ]
    assert calls and float(calls[0].rsplit(" ", 1)[1]) == 2.0


def test_a_folder_left_by_a_server_that_has_ended_is_emptied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Set first so that monkeypatch records the variable and takes back what
    # share_between_workers sets: left set, it turned every later test's metrics multiprocess.
    monkeypatch.setenv(metrics.MULTIPROCESS_ENV, "recorded")
    monkeypatch.delenv(metrics.MULTIPROCESS_ENV)
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)
    monkeypatch.setattr(metrics, "_folder_lock", [])
    folder = tmp_path / "prometheus-metrics"
    folder.mkdir()
    (folder / "counter_4242.db").write_bytes(b"old counts")
    metrics.share_between_workers(folder)
    try:
        assert list(folder.glob("*.db")) == []
        assert os.environ[metrics.MULTIPROCESS_ENV] == str(folder)
        with pytest.raises(metrics.MetricsFolderInUse):  # and this server now holds it
            metrics.share_between_workers(folder)
    finally:
        for lock in metrics._folder_lock:
            lock.close()
