"""The service's life as an admin sees it (issue 18): fresh starts with several workers on a
new database, a worker that dies while the database is down, a rolling restart under load,
a worker that cannot build the app, a full disk, a held write lock and an old schema."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from runtime import schema
from tests.app.postgres_server import PostgresServer, fresh_database, postgres_cluster
from tests.cds_hooks.cds_helpers import PATIENT_VIEW, Keys, hook_body, make_keys, trt_man_prefetch
from tests.security.sec_live_server import ROOT, LiveService, live_service

pytestmark = pytest.mark.integration

FRESH_STARTS = 20
WORKERS = 4
FEEDBACK = f"/cds-services/{PATIENT_VIEW}/feedback"
CALL = f"/cds-services/{PATIENT_VIEW}"


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with postgres_cluster() as server:
        yield server


def call(service: LiveService, timeout: float = 10) -> requests.Response:
    return requests.post(
        f"{service.base}{CALL}",
        json=hook_body(prefetch=trt_man_prefetch()),
        headers=service.headers(CALL),
        timeout=timeout,
    )


def give_feedback(service: LiveService, card: str) -> requests.Response:
    item = {
        "card": card,
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": "s1"}],
        "outcomeTimestamp": "2026-11-01T12:05:00Z",
    }
    headers = {**service.headers(FEEDBACK), "Connection": "close"}
    return requests.post(
        f"{service.base}{FEEDBACK}", json={"feedback": [item]}, headers=headers, timeout=15
    )


def healthz(service: LiveService) -> requests.Response:
    return requests.get(f"{service.base}/healthz", timeout=3)


def wait_for(condition: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {seconds} s for {what}")
        time.sleep(0.2)


def assert_healthy_start(service: LiveService) -> None:
    """Every worker built the app, none failed to boot, and the service answers."""
    assert service.process is not None and service.process.poll() is None
    assert len(service.worker_pids()) == WORKERS
    assert healthz(service).status_code == 200
    log = service.log.read_text()
    for sign in ("Worker failed to boot", "Traceback", "exited with code", "Shutting down: Master"):
        assert sign not in log, log


# -- fresh starts (findings 1 and 2) ------------------------------------------------------------


def _fresh_start(folder: Path, keys: Keys, store_url: str) -> None:
    folder.mkdir()
    with live_service(folder, keys, workers=WORKERS, store_url=store_url) as service:
        assert_healthy_start(service)


def test_twenty_fresh_starts_with_four_workers_on_a_new_sqlite_file_are_all_healthy(
    tmp_path: Path, keys: Keys
) -> None:
    """Finding 1: workers created the tables themselves and raced; one that lost exited 3,
    and gunicorn stopped the whole service. Four starts at a time, to keep this short."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        starts = [
            pool.submit(
                _fresh_start,
                tmp_path / f"start-{n}",
                keys,
                f"sqlite:///{tmp_path / f'start-{n}' / 'store.sqlite3'}",
            )
            for n in range(FRESH_STARTS)
        ]
        for start in starts:
            start.result()


def test_twenty_fresh_starts_with_four_workers_on_a_new_postgresql_database_are_all_healthy(
    tmp_path: Path, keys: Keys, postgres: PostgresServer
) -> None:
    databases = [fresh_database(postgres.url, f"fresh_{n}") for n in range(FRESH_STARTS)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        starts = [
            pool.submit(_fresh_start, tmp_path / f"start-{n}", keys, url)
            for n, url in enumerate(databases)
        ]
        for start in starts:
            start.result()


def test_a_worker_killed_during_a_database_outage_does_not_take_the_service_down(
    tmp_path: Path, keys: Keys, postgres: PostgresServer
) -> None:
    """Finding 2: its replacement could not boot without the database, and the master
    exited. Now it boots, everything answers 503 meanwhile, and all recovers."""
    url = fresh_database(postgres.url, "outage")
    with live_service(tmp_path, keys, workers=2, store_url=url) as service:
        assert give_feedback(service, "before-outage").status_code == 200
        postgres.stop()
        try:
            time.sleep(2.5)  # what each worker's /healthz said before has expired
            for _ in range(4):  # whichever worker answers
                down = healthz(service)
                assert down.status_code == 503
                assert "cannot be reached" in down.json()["storeProblem"], down.text
            assert call(service).status_code == 503  # the replay cache is in the database
            killed = service.worker_pids()[0]
            os.kill(killed, signal.SIGKILL)
            wait_for(lambda: len(service.worker_pids()) == 3, 30, "a new worker")
            assert service.process is not None and service.process.poll() is None
            assert healthz(service).status_code == 503
        finally:
            postgres.start()
        wait_for(lambda: healthz(service).status_code == 200, 30, "healthz to say 200")
        assert call(service).status_code == 200
        assert give_feedback(service, "after-outage").status_code == 200
        assert service.process.poll() is None
    assert {"before-outage", "after-outage"} <= _stored_cards(url)


def _stored_cards(url: str) -> set[str]:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as connection:
        cards = {row[0] for row in connection.execute(text("SELECT card_uuid FROM cds_feedback"))}
    engine.dispose()
    return cards


# -- a rolling restart ------------------------------------------------------------------------------


def test_a_rolling_restart_under_load_loses_no_acknowledged_feedback_and_answers_no_5xx(
    tmp_path: Path, keys: Keys
) -> None:
    """SIGHUP: gunicorn starts new workers and lets the old ones finish what they hold."""
    store = tmp_path / "store.sqlite3"
    acknowledged: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            card = str(uuid.uuid4())
            try:
                answer = give_feedback(service, card)
            except requests.RequestException as error:
                failures.append(f"{type(error).__name__}: {error}")
                continue
            if answer.status_code == 200 and answer.json() == {"received": 1}:
                acknowledged.append(card)
            else:
                failures.append(f"{answer.status_code}: {answer.text[:200]}")

    with live_service(tmp_path, keys, workers=2) as service:
        assert service.process is not None
        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            for _ in range(2):
                time.sleep(1.5)
                before = len(service.worker_pids())
                service.process.send_signal(signal.SIGHUP)
                wait_for(lambda b=before: len(service.worker_pids()) >= b + 2, 30, "new workers")
            time.sleep(1.5)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        assert service.process.poll() is None
    assert failures == []
    assert len(acknowledged) > 50
    with sqlite3.connect(store) as connection:
        stored = {row[0] for row in connection.execute("SELECT card_uuid FROM cds_feedback")}
    assert set(acknowledged) <= stored


# -- a worker that cannot build the app ----------------------------------------------------------


def test_a_worker_that_cannot_build_the_app_answers_503_until_it_can(
    tmp_path: Path,
) -> None:
    """A key file removed after start-up: its new worker failed to boot (exit 3), and
    gunicorn stopped the service. Now it says why, and recovers once the file is back."""
    keys = make_keys(tmp_path)
    with live_service(tmp_path, keys, workers=1) as service:
        saved = keys.jwks_file.read_bytes()
        keys.jwks_file.unlink()
        os.kill(service.worker_pids()[0], signal.SIGKILL)
        wait_for(lambda: healthz(service).status_code == 503, 30, "the new worker's 503")
        refused = healthz(service)
        assert refused.json()["error"] == "unavailable"
        assert "jwks_file" in refused.json()["message"]
        assert service.process is not None and service.process.poll() is None
        keys.jwks_file.write_bytes(saved)
        wait_for(lambda: healthz(service).status_code == 200, 30, "the app, built")
        assert call(service).status_code == 200


# -- /healthz: able to store ------------------------------------------------------------------------


def test_healthz_answers_at_once_while_a_sqlite_write_lock_is_held(
    tmp_path: Path, keys: Keys
) -> None:
    """Findings 5 and 16: /healthz ran SELECT 1 (ok while no write could be made) and took
    8 s while the write lock was held."""
    with live_service(tmp_path, keys, workers=1) as service:
        holder = sqlite3.connect(tmp_path / "store.sqlite3", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            time.sleep(2.5)  # what /healthz said before has expired
            started = time.monotonic()
            answer = requests.get(f"{service.base}/healthz", timeout=3)
            assert time.monotonic() - started < 3
            assert answer.status_code == 503
            assert answer.json()["up"] is True and answer.json()["store"] is False
            assert "lock" in answer.json()["storeProblem"]
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        wait_for(lambda: healthz(service).status_code == 200, 10, "healthz to say 200")


def test_an_old_schema_is_named_by_healthz_and_by_the_feedback_refusal(
    tmp_path: Path, keys: Keys
) -> None:
    """Finding 3: against an older table, /healthz said ok and feedback answered 503
    "could not be stored" with no hint."""
    with live_service(tmp_path, keys, workers=1) as service:
        database = sqlite3.connect(tmp_path / "store.sqlite3", isolation_level=None)
        database.execute("UPDATE alembic_version SET version_num = '0001'")
        database.execute("ALTER TABLE cds_feedback DROP COLUMN tenant")  # as 0001 had it
        database.close()
        wait_for(lambda: healthz(service).status_code == 503, 10, "healthz to say 503")
        health = healthz(service)
        assert "at revision 0001" in health.json()["storeProblem"]
        assert health.json()["schema"] == {"current": "0001", "needed": schema.head()}
        refused = give_feedback(service, "card-1")
        assert refused.status_code == 503
        assert "run `anastrozole-cds db upgrade`" in refused.json()["message"]


# -- a full disk (finding 4) ---------------------------------------------------------------------


def test_a_full_disk_under_the_metrics_files_costs_counts_not_workers(
    tmp_path: Path, keys: Keys
) -> None:
    """The workers' Prometheus files are mmapped in instance_path: on a full disk the first
    write killed each worker with SIGBUS, again and again. Here instance_path is a 1 MiB
    tmpfs, filled before the server starts, in a mount namespace of its own (unshare: no
    mount is left behind, and it needs no root outside)."""
    instance = tmp_path / "instance"
    instance.mkdir()
    log = tmp_path / "serve.log"
    from sandbox.processes import free_port

    port = free_port()
    config = tmp_path / "anastrozole-cds.toml"
    config.write_text(
        f'public_base_url = "http://127.0.0.1:{port}"\n'
        f'store_url = "sqlite:///{tmp_path / "store.sqlite3"}"\n'
        f'instance_path = "{instance}"\n'
        'evaluation_time = "2026-11-01T12:00:00Z"\n'
        "[smart]\n"
        'token_key = "l3Dqo_CUF8jqdWJmBQ_vbQfmFSsN_ehGNdK9xzl1eEM="\n'
        "[cards]\n"  # keys are made at the first start: this disk is full from the first
        f'patient_key = "{"k" * 40}"\n'
        "[[issuers]]\n"
        'iss = "https://ehr.example.org"\n'
        f'jwks_file = "{keys.jwks_file}"\n'
    )
    script = (
        f"mount -t tmpfs -o size=1m tmpfs {instance} && "
        f"(dd if=/dev/zero of={instance}/filler bs=64k 2>/dev/null; true) && "
        f"exec {sys.executable} -m anastrozole_cds.cli serve --port {port} --workers 2 "
        f"--config {config}"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANASTROZOLE_CDS_")}
    with log.open("wb") as output:
        process = subprocess.Popen(
            ["unshare", "--mount", "--map-root-user", "sh", "-c", script],
            cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    service = LiveService(f"http://127.0.0.1:{port}", keys, log, process)
    try:
        wait_for(lambda: _answers(service), 60, f"the server:\n{log.read_text()}")
        answers = [call(service).status_code for _ in range(72)]
        assert answers == [200] * 72
        assert requests.get(f"{service.base}/metrics", timeout=5).status_code == 200
        assert process.poll() is None
        text = log.read_text()
        assert "SIGBUS" not in text and "signal 7" not in text, text
        assert "a metric is not counted: No space left on device" in text
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def _answers(service: LiveService) -> bool:
    try:
        return healthz(service).status_code == 200
    except requests.RequestException:
        return False
