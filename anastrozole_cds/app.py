"""The app factory: one Flask app for the whole product, composed of its two faces.

    app = create_app()                  # settings from ANASTROZOLE_CDS_* and the TOML file
    app = create_app(load_settings(...))

Each face is a blueprint registered by its `init_app(app, settings, store)` (FACES). Every
error a client can cause is a JSON 4xx; anything else is a JSON 500 without a stack trace.
CORS, the request size limit (413), logging without PHI or tokens, GET /healthz and GET
/metrics (Prometheus) are set up here. `anastrozole_cds.server` runs it under gunicorn.
"""

from __future__ import annotations

import io
import logging
import re
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

import cds_hooks
import smartapp
from anastrozole_cds.settings import check_faces, load_settings
from runtime import __version__, metrics, schema
from runtime.logs import configure_logging
from runtime.settings import ProductSettings
from runtime.store import Store

log = logging.getLogger(__name__)

FaceInit = Callable[[Flask, ProductSettings, Store], None]

FACES: list[FaceInit] = [
    cds_hooks.init_app,
    smartapp.init_app,
]

SETTINGS_EXTENSION = "runtime.settings"
STORE_EXTENSION = "runtime.store"
CORS_ALLOWED_HEADERS = "Authorization, Content-Type, Accept"
CORS_ALLOWED_METHODS = "GET, POST, OPTIONS"


def create_app(settings: ProductSettings | None = None, *, store: Store | None = None) -> Flask:
    """The product's WSGI app. Settings default to the environment and the TOML file.

    Opens no database connection and never touches the schema of a database others can
    reach: `serve` or `anastrozole-cds db upgrade` migrates it before (tests:
    `runtime.schema.upgrade(url)`). Only an in-memory SQLite database is migrated here."""
    settings = settings or load_settings()
    settings.check_audience_base()
    settings.check_issuer_key_files()
    check_faces(settings)
    configure_logging(settings.log_level)
    app = Flask("anastrozole_cds", instance_path=str(settings.instance_path.resolve()))
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    store = store or Store(settings.store_location())
    if store.in_memory:  # nobody else can reach it to migrate it (runtime/schema.py)
        schema.upgrade(store.engine)
    app.extensions[SETTINGS_EXTENSION] = settings
    app.extensions[STORE_EXTENSION] = store
    _warn_about(settings)

    _register_errors(app)
    _register_cors(app, settings)
    _register_health(app, settings, store)
    _register_metrics(app, settings)
    for init_app in FACES:
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
        _read_chunked_body(request.environ, app.config["MAX_CONTENT_LENGTH"])

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


def _read_chunked_body(environ: dict[str, Any], limit: int) -> None:
    """A chunked body (no Content-Length), read whole here, up to `limit`: 413 beyond it.
    Under gunicorn's own workers a larger one was cut at the limit and answered 200 (issue
    18); read here, it reaches the views whole and with its length, under any server."""
    if environ.get("CONTENT_LENGTH") or not environ.get("wsgi.input_terminated"):
        return
    body = environ["wsgi.input"].read(limit + 1)
    if len(body) > limit:
        raise RequestEntityTooLarge()
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    environ.pop("wsgi.input_terminated", None)


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
        """Up (this answer) and able to store: the schema is current and a write can be made
        within a short timeout (Store.health). 503 when it cannot: every call needs the
        replay cache, and feedback the database, so a balancer should send none here."""
        health = store.health()
        body: dict[str, Any] = {
            "status": "ok" if health.able_to_store else "degraded",
            "version": __version__,
            "up": True,
            "store": health.able_to_store,
            "schema": {"current": health.schema.current, "needed": health.schema.head},
            "jwtVerification": not settings.insecure_skip_jwt_verification,
        }
        if health.problem:
            body["storeProblem"] = health.problem
        return _json(body, 200 if health.able_to_store else 503)


# -- metrics (Prometheus) -------------------------------------------------------------------------


def _register_metrics(app: Flask, settings: ProductSettings) -> None:
    if not settings.metrics_enabled:
        return

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        return Response(metrics.exposition(app), content_type=metrics.CONTENT_TYPE)
