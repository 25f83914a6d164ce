"""The app factory: one Flask app for the whole product, composed of blueprints.

    app = create_app()                  # settings from ANASTROZOLE_CDS_* and the TOML file
    app = create_app(load_settings(...))

To add a face of the product (the SMART app), append its `init_app(app, settings, store)`
to BLUEPRINTS. Every error a client can cause is a JSON 4xx; anything else is a JSON 500
without a stack trace. CORS, the request size limit (413), logging without PHI or tokens,
GET /healthz and GET /metrics (Prometheus) are set up here.
"""

from __future__ import annotations

import gc
import logging
import re
import sys
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

import cds_hooks
import smartapp
from anastrozole_cds import __version__, metrics
from anastrozole_cds.config import ConfigError, ProductSettings, load_settings, served_at
from anastrozole_cds.store import Store
from smartapp.config import SmartSettingsError

log = logging.getLogger(__name__)

BlueprintInit = Callable[[Flask, ProductSettings, Store], None]

BLUEPRINTS: list[BlueprintInit] = [
    cds_hooks.init_app,
    smartapp.init_app,
]

PRODUCT_LOGGERS = ("anastrozole_cds", "cds_hooks", "ehr", "smartapp", "sandbox", "clinical")
CORS_ALLOWED_HEADERS = "Authorization, Content-Type, Accept"
CORS_ALLOWED_METHODS = "GET, POST, OPTIONS"


def create_app(settings: ProductSettings | None = None, *, store: Store | None = None) -> Flask:
    """The product's WSGI app. Settings default to the environment and the TOML file."""
    settings = settings or load_settings()
    settings.check_audience_base()
    settings.check_issuer_key_files()
    configure_logging(settings.log_level)
    app = Flask("anastrozole_cds", instance_path=str(settings.instance_path.resolve()))
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    store = store or Store(settings.store_location())
    app.extensions["anastrozole_cds.settings"] = settings
    app.extensions["anastrozole_cds.store"] = store
    _warn_about(settings)

    _register_errors(app)
    _register_cors(app, settings)
    _register_health(app, settings, store)
    _register_metrics(app, settings)
    for init_app in BLUEPRINTS:
        init_app(app, settings, store)
    return app


def _warn_about(settings: ProductSettings) -> None:
    if settings.insecure_skip_jwt_verification:
        log.warning(
            "!!! INSECURE: JWT verification is OFF (insecure_skip_jwt_verification). Any caller "
            "is trusted. Development only: never expose this instance to real EHRs or PHI. !!!"
        )
    elif not settings.issuers:
        log.warning("no trusted issuers are configured: every CDS call will be refused (401)")
    if settings.evaluation_time is not None:
        log.warning(
            "evaluation_time is set: findings are judged as of %s, not now (tests and sandboxes only)",
            settings.evaluation_time.isoformat(),
        )
    if not settings.public_base_url:  # no issuers, or no JWT check: see check_audience_base
        log.warning(
            "public_base_url is not set: card links use the Host of each request; "
            "set it in production"
        )


# -- errors --------------------------------------------------------------------------------------


def _json(body: dict[str, Any], status: int) -> Response:
    return Response(orjson.dumps(body), status=status, mimetype="application/json")


def _register_errors(app: Flask) -> None:
    @app.before_request
    def _request_id() -> None:
        g.request_id = uuid.uuid4().hex

    @app.after_request
    def _tag(response: Response) -> Response:
        request_id = getattr(g, "request_id", None)
        if request_id:
            response.headers["X-Request-Id"] = request_id
        return response

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        if isinstance(error, RequestEntityTooLarge):
            message = f"request body larger than {app.config['MAX_CONTENT_LENGTH']} bytes"
        else:
            message = error.description or error.name
        response = _json({"error": _snake(error.name), "message": message}, status)
        headers = dict(error.get_headers())
        for name in ("Allow", "Retry-After", "WWW-Authenticate"):
            if name in headers:
                response.headers[name] = headers[name]
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        request_id = getattr(g, "request_id", "-")
        log.error(
            "unhandled %s on %s %s (request %s)",
            type(error).__name__,
            request.method,
            request.path,
            request_id,
            exc_info=error,
        )
        return _json(
            {"error": "internal_error", "message": "internal error", "requestId": request_id}, 500
        )


def _snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


# -- CORS (CDS Hooks 2.0: browser-based clients need it) --------------------------------------------


def _register_cors(app: Flask, settings: ProductSettings) -> None:
    allowed = set(settings.cors_allowed_origins)

    @app.after_request
    def _cors(response: Response) -> Response:
        origin = request.headers.get("Origin")
        if not origin:
            return response
        if "*" in allowed:
            response.headers["Access-Control-Allow-Origin"] = "*"
        elif origin in allowed:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.vary.add("Origin")
        else:
            return response
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = CORS_ALLOWED_METHODS
            response.headers["Access-Control-Allow-Headers"] = CORS_ALLOWED_HEADERS
            response.headers["Access-Control-Max-Age"] = "600"
        response.headers["Access-Control-Expose-Headers"] = "WWW-Authenticate, X-Request-Id"
        return response


# -- health ----------------------------------------------------------------------------------------


def _register_health(app: Flask, settings: ProductSettings, store: Store) -> None:
    @app.get("/healthz")
    def healthz() -> Response:
        store_ok = store.ping()
        body = {
            "status": "ok" if store_ok else "degraded",
            "version": __version__,
            "store": store_ok,
            "jwtVerification": not settings.insecure_skip_jwt_verification,
        }
        return _json(body, 200 if store_ok else 503)


# -- metrics (Prometheus) -------------------------------------------------------------------------


def _register_metrics(app: Flask, settings: ProductSettings) -> None:
    recorded = metrics.metrics_for(app)
    if not settings.metrics_enabled:
        return

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        return Response(recorded.exposition(), content_type=metrics.CONTENT_TYPE)


# -- logging ---------------------------------------------------------------------------------------

_SECRETS = (
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9\-._~+/]{8,}=*"), r"\1[redacted]"),
    (re.compile(r"eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*"), "[redacted-jwt]"),
    (re.compile(r"(?i)(access_token[\"']?\s*[:=]\s*[\"']?)[^\"'\s,}]+"), r"\1[redacted]"),
    # Fernet keys (the SMART app's token_key): 32 bytes, URL-safe base64 with its one "="
    (re.compile(r"(?<![\w-])[A-Za-z0-9_\-]{43}=(?![\w=-])"), "[redacted-key]"),
)


class RedactSecrets(logging.Filter):
    """A last line of defence: bearer tokens and JWTs never reach a log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = message
        for pattern, replacement in _SECRETS:
            redacted = pattern.sub(replacement, redacted)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def configure_logging(level: str = "INFO") -> None:
    """A stderr handler on the root logger, with secrets redacted, unless logging is already
    set up (by an embedding server or a test runner); product loggers at `level`."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.addFilter(RedactSecrets())
        root.addHandler(handler)
    for name in PRODUCT_LOGGERS:
        logging.getLogger(name).setLevel(level)
    # urllib3 logs every URL it requests at DEBUG, and FHIR query strings name the patient
    logging.getLogger("urllib3").setLevel(logging.WARNING)


# -- production server -----------------------------------------------------------------------------


def create_worker_app(settings: ProductSettings | None = None) -> Flask:
    """The app for one server worker, with what start-up built moved out of the GC's sight.

    Imports and the app (fhir.resources' and pydantic's models, value sets, routes) leave a few
    hundred thousand long-lived objects; every full collection would walk them all again, which
    measured as pauses of 50-70 ms in one call out of a hundred. `gc.freeze()` keeps them in
    a generation the collector does not scan (Python docs, gc.freeze)."""
    app = create_app(settings)
    gc.collect()
    gc.freeze()
    return app


def serve(
    settings: ProductSettings,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 2,
    threads: int = 4,
    timeout: int = 30,
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
    try:
        smartapp.check_settings(settings)
    except SmartSettingsError as error:
        raise ConfigError(str(error)) from None
    _create_schema(settings)  # once, before the workers
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
        "worker_class": "gthread",
        "threads": threads,
        "timeout": timeout,
        "graceful_timeout": 10,
        "accesslog": "-",
        "errorlog": "-",
        "loglevel": settings.log_level.lower(),
        "proc_name": "anastrozole-cds",
        "preload_app": False,  # each worker opens its own database connections
        "child_exit": _worker_exited,
    }

    class _Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)
            # gunicorn >= 25.1 opens a control socket at one path per user: instances would clash
            if "control_socket_disable" in self.cfg.settings:
                self.cfg.set("control_socket_disable", True)

        def load(self) -> Flask:
            return create_worker_app(settings)

    _Server().run()


def _create_schema(settings: ProductSettings) -> None:
    """Create the database's tables; ConfigError naming store_url (password hidden) when the
    database cannot be reached."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    try:
        Store(settings.store_location()).dispose()
    except (SQLAlchemyError, ImportError) as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        try:
            shown = make_url(settings.store_location()).render_as_string(hide_password=True)
        except SQLAlchemyError:
            shown = "(not a database URL)"
        raise ConfigError(f"store_url: cannot use the database at {shown}: {reason}") from None


def _worker_exited(_server: Any, worker: Any) -> None:
    metrics.worker_exited(worker.pid)
