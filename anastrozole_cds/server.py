"""The production server: the app under gunicorn, with what start-up checks once, before any
worker starts (settings, key files, the database), so that a mistake is one line, not a
traceback from every worker."""

from __future__ import annotations

import gc
import importlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import orjson
from flask import Flask

from anastrozole_cds.app import create_app
from anastrozole_cds.settings import check_faces
from anastrozole_cds.worker import BufferingThreadWorker, RedactingLogger
from runtime import metrics, schema
from runtime.logs import configure_logging
from runtime.settings import ConfigError, ProductSettings, served_at
from runtime.store import readable_by_others, sqlite_file

log = logging.getLogger(__name__)


def create_worker_app(settings: ProductSettings | None = None) -> Any:
    """The app for one server worker, with what start-up built moved out of the GC's sight.

    Imports and the app (fhir.resources' and pydantic's models, value sets, routes) leave a few
    hundred thousand long-lived objects; every full collection would walk them all again, which
    measured as pauses of 50-70 ms in one call out of a hundred. `gc.freeze()` keeps them in
    a generation the collector does not scan (Python docs, gc.freeze).

    A worker that raises while it boots exits with code 3, and gunicorn then stops the whole
    service (its master halts on a worker that fails to boot). The master has checked the
    settings and the database before any worker started, so what fails here is passing (a file
    replaced, a disk full): the worker then boots anyway and answers 503 saying why until the
    app can be built (`NotYetBuilt`)."""
    try:
        app = create_app(settings)
    except Exception as error:  # the boundary: any failure here would stop every worker
        log.error(
            "this worker cannot build the app yet (%s: %s): answering 503 until it can",
            type(error).__name__,
            error,
        )
        return NotYetBuilt(settings, error)
    gc.collect()
    gc.freeze()
    log.info("%s %d", WORKER_READY, os.getpid())
    return app


WORKER_READY = "worker ready: pid"  # one line per worker booted (tests wait for them all)


class NotYetBuilt:
    """A worker's WSGI app while the real one cannot be built: 503 with the reason, and a new
    try at most every RETRY_SECONDS, by one request at a time."""

    RETRY_SECONDS = 5.0

    def __init__(self, settings: ProductSettings | None, error: Exception) -> None:
        self._settings = settings
        self._reason = f"{type(error).__name__}: {error}".splitlines()[0][:300]
        self._app: Flask | None = None
        self._tried = time.monotonic()
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        app = self._app or self._try_again()
        if app is not None:
            return app(environ, start_response)
        body = orjson.dumps(
            {"error": "unavailable", "message": f"the service is starting: {self._reason}"}
        )
        start_response(
            "503 SERVICE UNAVAILABLE",
            [("Content-Type", "application/json"), ("Retry-After", "5")],
        )
        return [body]

    def _try_again(self) -> Flask | None:
        if time.monotonic() - self._tried < self.RETRY_SECONDS or not self._lock.acquire(False):
            return None
        try:
            self._tried = time.monotonic()
            self._app = create_app(self._settings)
            log.info("this worker has built the app")
        except Exception as error:  # still failing: keep answering 503 with the reason
            self._reason = f"{type(error).__name__}: {error}".splitlines()[0][:300]
        finally:
            self._lock.release()
        return self._app


def serve(
    settings: ProductSettings,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 2,
    threads: int = 4,
    timeout: int = 30,
    config: Path | None = None,
) -> None:
    """Run the app under gunicorn (gthread workers); blocks until stopped. ConfigError, with
    one line naming the setting, when the app could not start with these settings: checked
    here, once, rather than as a traceback from every worker."""
    from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]

    configure_logging(settings.log_level)
    if not settings.public_base_url:
        settings = served_at(settings, host, port)
        if settings.public_base_url:
            log.warning(
                "public_base_url is not set: taken as %s, the address served on; set it to the "
                "URL EHRs use (JWT aud is checked against it)",
                settings.public_base_url,
            )
    settings.check_audience_base()  # before the workers start, so the CLI says why
    settings.check_issuer_key_files()
    check_faces(settings, key_files=True)
    prepare_database(settings, config)  # once, before the workers: they never touch the schema
    _import_what_workers_build()
    if settings.metrics_enabled:
        folder = settings.instance_path.resolve() / "prometheus-metrics"
        try:
            metrics.share_between_workers(folder)
        except metrics.MetricsFolderInUse:
            raise ConfigError(
                f"instance_path {settings.instance_path.resolve()} is in use by another running "
                "anastrozole-cds serve (its /metrics counts there): give this server its own "
                "instance_path (ANASTROZOLE_CDS_INSTANCE_PATH)"
            ) from None

    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        # gthread, with each request read whole before a thread takes it (worker.py)
        "worker_class": BufferingThreadWorker.configured(
            read_seconds=settings.request_read_seconds,
            max_body_bytes=settings.max_request_bytes,
            buffer_bytes=settings.request_buffer_bytes,
        ),
        "threads": threads,
        "timeout": timeout,
        "graceful_timeout": 10,
        "accesslog": "-",
        "logger_class": RedactingLogger,  # no SMART code, state, launch or handle in it
        "errorlog": "-",
        "loglevel": settings.log_level.lower(),
        "proc_name": "anastrozole-cds",
        "preload_app": False,  # each worker opens its own database connections
        "child_exit": _worker_exited,
    }
    if Path("/dev/shm").is_dir():  # the heartbeat files: never on a disk that may fill
        options["worker_tmp_dir"] = "/dev/shm"

    class _Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)
            # gunicorn >= 25.1 opens a control socket at one path per user: instances would clash
            if "control_socket_disable" in self.cfg.settings:
                self.cfg.set("control_socket_disable", True)

        def load(self) -> Any:
            return create_worker_app(settings)

    _Server().run()


def _import_what_workers_build() -> None:
    """The faces' views and what they import, imported once here rather than in every
    worker after the fork: each worker then builds the app in about 15 ms instead of 250
    (measured), and they share these modules' memory."""
    for module in WORKER_MODULES:
        importlib.import_module(module)


WORKER_MODULES = ("cds_hooks.views", "smartapp.views")  # what the faces' init_app import


def prepare_database(settings: ProductSettings, config: Path | None = None) -> None:
    """Upgrade the schema (store_upgrade_on_start) and check it is the one this version needs;
    ConfigError, one line naming store_url and what to run, otherwise."""
    from sqlalchemy.exc import SQLAlchemyError

    url = settings.store_location()
    if url.startswith("sqlite") and sqlite_file(url) is None:
        return  # in memory: each worker's own database, migrated by create_app
    shown = schema.shown_url(url)
    try:
        if settings.store_upgrade_on_start:
            schema.upgrade(url)
        found = schema.state(url)
    except schema.SchemaTooNew as error:
        raise ConfigError(f"store_url: {shown}: {error}") from None
    except (SQLAlchemyError, ImportError) as error:
        reason = schema.describe_error(error)
        raise ConfigError(f"store_url: cannot use the database at {shown}: {reason}") from None
    if found.status == "unreachable":
        raise ConfigError(f"store_url: cannot use the database at {shown}: {found.reason}")
    if not found.ok:
        hint = f" --config {config}" if config else ""
        raise ConfigError(f"store_url: {shown}: {found.problem(hint)}")
    warning = readable_by_others(url)
    if warning:
        log.warning("%s", warning)


def _worker_exited(_server: Any, worker: Any) -> None:
    metrics.worker_exited(worker.pid)
