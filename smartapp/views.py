"""The SMART app's HTTP face: launch.html, launch, callback, the dashboard (and the EHR's
style for it), the JWKS.

Views read the request, call `flow` / `page`, and write the response: the browser cookie
(minted here, never adopted from the browser; HttpOnly; Secure over https; SameSite=None
once the EHR framed a launch of this browser), the security headers (a strict
Content-Security-Policy: no script at all; frame-ancestors the EHRs) on every response under
/smart, and pages for every failure. Tokens never reach the browser, a URL, a log line or a
page.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime
from importlib import resources
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    g,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.wrappers import Response as BaseResponse

from ehr.keys import KeyFileError, public_jwks
from smartapp.dashboard import SEVERITY_LABEL
from smartapp.ehr_style import ehr_urls
from smartapp.errors import PAGES, AppError, Problem
from smartapp.flow import SmartRuntime, begin_launch, complete_launch, sign_out
from smartapp.page import load_dashboard
from smartapp.tokens import SmartSession, browser_hash, new_secret, sign_out_token, utc_now

log = logging.getLogger(__name__)

EXTENSION = "smartapp"
BROWSER_COOKIE = "anastrozole_smart"
COOKIE_PATH = "/smart"
# The launch page is package data, served from the installed package (the project's top-level
# launch.html is a link to this one file).
LAUNCH_PAGE = resources.files("smartapp") / "static" / "launch.html"

blueprint = Blueprint(
    "smartapp",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/smart/static",
)


def _runtime() -> SmartRuntime:
    runtime: SmartRuntime = current_app.extensions[EXTENSION]
    return runtime


# -- launch ----------------------------------------------------------------------------------------


@blueprint.get("/launch.html")
def launch_page() -> BaseResponse:
    """The registered launch URL: an EHR or standalone launch goes straight on to the EHR's
    authorize endpoint; with nothing to go on, the page asks for the FHIR server."""
    if request.args.get("iss") or request.args.get("launch") or _runtime().smart.default_issuer:
        # On to /smart/launch, where the browser sends the app's cookie (path /smart): read
        # here it would be missing, and a new one would end the sessions open in other tabs.
        # Only the parameters it reads: others could collide with url_for's own arguments.
        iss, launch = request.args.get("iss"), request.args.get("launch")
        return redirect(url_for("smartapp.launch", iss=iss, launch=launch), 302)
    response = make_response(LAUNCH_PAGE.read_text(encoding="utf-8"))
    response.mimetype = "text/html"
    return response


@blueprint.get("/smart/launch")
def launch() -> BaseResponse:
    return _start_launch()


def _framed() -> bool:
    """Shown inside the EHR's iframe (Fetch Metadata, sent by current browsers)."""
    return request.headers.get("Sec-Fetch-Dest") == "iframe"


def _redirect_uri(runtime: SmartRuntime) -> str:
    if runtime.smart.redirect_url:
        return runtime.smart.redirect_url
    if runtime.product.public_base_url:
        return f"{runtime.product.public_base_url}/smart/callback"
    return url_for("smartapp.callback", _external=True)


def _start_launch() -> BaseResponse:
    runtime = _runtime()
    # The browser's own cookie keeps its other sessions open; one the app did not mint (planted
    # to learn the session key: session fixation) is replaced.
    cookie = _minted_cookie(runtime) or _new_cookie(runtime)
    browser = browser_hash(cookie)
    framed = _framed()
    authorize_url = begin_launch(
        runtime,
        iss=request.args.get("iss"),
        launch=request.args.get("launch"),
        browser=browser,
        framed=framed,
        redirect_uri=_redirect_uri(runtime),
        now=utc_now(),
    )
    response = redirect(authorize_url, 302)
    _set_cookie(runtime, response, cookie, framed=framed or _framed_session(runtime, browser))
    return response


# Cookies are sealed under a name no session handle can have (handles have no space): a
# sealed token never opens as a cookie, nor a cookie as a token.
_COOKIE_SEAL = "browser cookie"


def _new_cookie(runtime: SmartRuntime) -> str:
    """A random cookie value, sealed with the token key so that later launches know it is ours."""
    return runtime.tokens.cipher.seal(new_secret(), handle=_COOKIE_SEAL)


def _minted_cookie(runtime: SmartRuntime) -> str | None:
    """The browser's cookie when this app minted it (and still holds the key it was sealed with)."""
    cookie = request.cookies.get(BROWSER_COOKIE)
    if cookie and runtime.tokens.cipher.open(cookie, handle=_COOKIE_SEAL) is not None:
        return cookie
    return None


def _framed_session(runtime: SmartRuntime, browser: str) -> bool:
    """Whether a session of this browser is open in the EHR's iframe. They all share one
    cookie: set again SameSite=Lax, it would no longer reach that iframe."""
    return any(session.framed for session in runtime.tokens.sessions_of(browser, utc_now()))


def _set_cookie(
    runtime: SmartRuntime,
    response: BaseResponse,
    value: str,
    *,
    framed: bool,
    max_age: int | None = None,
) -> None:
    """Set (or, with max_age 0, clear) the browser cookie; a third-party iframe accepts either
    only with SameSite=None; Secure, so `framed` is true while any of its sessions is framed."""
    setting = runtime.smart.cookie_secure
    secure = setting == "always" or (
        setting == "auto" and (request.is_secure or _redirect_uri(runtime).startswith("https://"))
    )
    response.set_cookie(
        BROWSER_COOKIE,
        value,
        max_age=int(runtime.smart.session_hours * 3600) if max_age is None else max_age,
        path=COOKIE_PATH,
        secure=secure,
        httponly=True,
        # Inside the EHR's iframe the app is a third party: only SameSite=None (which browsers
        # accept only with Secure) lets the cookie through. Otherwise Lax: the callback is a
        # top-level navigation from the EHR.
        samesite="None" if framed and secure else "Lax",
    )


@blueprint.get("/smart/callback")
def callback() -> BaseResponse:
    runtime = _runtime()
    cookie = request.cookies.get(BROWSER_COOKIE)
    session = complete_launch(
        runtime,
        state=request.args.get("state"),
        code=request.args.get("code"),
        error=request.args.get("error"),
        browser=browser_hash(cookie) if cookie else None,
        now=utc_now(),
    )
    # A new cookie at sign-in, the browser's sessions moved to it: a cookie planted in this
    # browser before (session fixation) opens nothing after.
    new_cookie = _new_cookie(runtime)
    browser = browser_hash(new_cookie)
    runtime.tokens.rebind_browser(session.browser, browser)
    # No #fragment to the card's finding: scrolling would hide the patient banner. The page
    # marks the finding and links to it instead.
    response = redirect(url_for("smartapp.dashboard", handle=session.handle), 303)
    framed = _framed() or _framed_session(runtime, browser)
    _set_cookie(runtime, response, new_cookie, framed=framed)
    return response


# -- the page --------------------------------------------------------------------------------------


def _session_of(handle: str, clock: datetime) -> SmartSession | None:
    """The session behind a page's handle, if this browser's cookie signed it in."""
    cookie = request.cookies.get(BROWSER_COOKIE)
    return _runtime().tokens.session(handle, browser_hash(cookie), clock) if cookie else None


@blueprint.get("/smart/app/<handle>")
def dashboard(handle: str) -> Response:
    runtime = _runtime()
    cookie = request.cookies.get(BROWSER_COOKIE)
    clock = utc_now()
    session = _session_of(handle, clock)
    if session is None:
        raise AppError(Problem.SESSION_EXPIRED, "no session for this browser")
    page = load_dashboard(runtime, session, clock)
    return make_response(
        render_template(
            "smart_dashboard.html",
            page=page,
            session=session,
            severity_label=SEVERITY_LABEL,
            launch_context=_launch_context(session.encounter, session.fhir_context),
            sign_out_token=sign_out_token(cookie or "", handle),
        )
    )


@blueprint.get("/smart/app/<handle>/ehr-style.css")
def ehr_style(handle: str) -> Response:
    """The EHR's smart_style_url as CSS overrides (docs/smart-app.md, "EHR styling"); empty
    when there is none. Bound to the session like its page: otherwise 404, saying nothing."""
    session = _session_of(handle, utc_now())
    if session is None:
        return Response("", status=404, mimetype="text/css")
    css = ""
    if session.smart_style_url:
        runtime = _runtime()
        css = runtime.styles.css(session.smart_style_url, ehr_urls(session, runtime.discovery))
    return Response(css, mimetype="text/css")


@blueprint.post("/smart/app/<handle>/sign-out")
def sign_out_of_app(handle: str) -> Response:
    """End this browser's sessions and forget its cookie. Only the dashboard's own form can
    ask: it carries a token derived from the HttpOnly cookie, and the browser says (Fetch
    Metadata, Origin) that the form came from this site. A GET is 405: nothing changes."""
    runtime = _runtime()
    if not _from_this_site():
        raise AppError(Problem.SIGN_OUT_REFUSED, "sign-out request from another site")
    cookie = request.cookies.get(BROWSER_COOKIE)
    if not cookie:
        raise AppError(Problem.SESSION_EXPIRED, "sign-out without the browser cookie")
    sent = request.form.get("csrf_token", "")
    if not secrets.compare_digest(sent, sign_out_token(cookie, handle)):
        raise AppError(Problem.SIGN_OUT_REFUSED, "sign-out form token does not match")
    clock = utc_now()
    browser = browser_hash(cookie)
    ended = sign_out(runtime, browser=browser, now=clock)
    response = make_response(render_template("smart_signed_out.html"))
    # cleared with the SameSite it was set with: None if any of its sessions was framed
    framed = _framed() or any(session.framed for session in ended)
    _set_cookie(runtime, response, "", framed=framed, max_age=0)
    return response


def _from_this_site() -> bool:
    """False when the browser says the request came from another site or origin. Origin
    "null" (a form on a page with Referrer-Policy no-referrer) and no header at all (older
    browsers) are left to the form token."""
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return True
    own = {request.host_url.rstrip("/")}
    public = _runtime().product.public_base_url
    if public:
        own.add("/".join(public.split("/", 3)[:3]))
    return origin.rstrip("/") in own


def _launch_context(encounter: str | None, fhir_context: list[Any] | None) -> list[str]:
    """The launch's encounter and fhirContext references: objects (SMART 2.1, `reference` or
    `canonical`) or plain strings (SMART 2.0.0: `["DiagnosticReport/123"]`)."""
    items = [f"Encounter/{encounter}"] if encounter else []
    for entry in fhir_context or ():
        reference = entry
        if isinstance(entry, dict):
            reference = entry.get("reference") or entry.get("canonical")
        if isinstance(reference, str) and reference:
            items.append(reference)
    return items


@blueprint.get("/smart/jwks.json")
def jwks() -> Response:
    """The app's public keys, for EHRs that register it as an asymmetric client."""
    key_file = _runtime().smart.private_key_file
    document: dict[str, Any] = {"keys": []}
    if key_file is not None:
        try:
            document = public_jwks(key_file)
        except KeyFileError as error:
            log.error("JWKS not served: %s", error)
            raise AppError(Problem.INTERNAL, "the app's key file cannot be read") from None
    response = current_app.response_class(
        current_app.json.dumps(document), mimetype="application/json"
    )
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


# -- errors and headers ----------------------------------------------------------------------------


def problem_response(
    problem: Problem, detail: str | None = None, status: int | None = None
) -> Response:
    page = PAGES[problem]
    status = status or page.status
    return make_response(
        render_template(
            "smart_error.html",
            problem=problem.value,
            page=page,
            status=status,
            detail=detail,
            request_id=getattr(g, "request_id", None),
        ),
        status,
    )


@blueprint.errorhandler(AppError)
def _app_error(error: AppError) -> Response:
    log.info("SMART page %s (%s): %s", error.page.status, error.problem.value, error.detail or "-")
    return problem_response(error.problem, error.detail)


def _is_smart_path() -> bool:
    """The app's own addresses: launch.html and everything under /smart."""
    path = request.path
    return path in ("/launch.html", COOKIE_PATH) or path.startswith(f"{COOKIE_PATH}/")


@blueprint.before_app_request
def _routing_failure() -> Response | None:
    """An unknown address or a wrong method under /smart matches no route of the blueprint,
    so its handlers never see it: answer here with the not-found page (the status says which)."""
    error = request.routing_exception
    if not isinstance(error, NotFound | MethodNotAllowed) or not _is_smart_path():
        return None
    response = problem_response(Problem.NOT_FOUND, status=error.code)
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        response.headers["Allow"] = ", ".join(sorted(error.valid_methods))
    return response


@blueprint.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> Response:
    if error.code == 404:
        return problem_response(Problem.NOT_FOUND)
    return problem_response(Problem.INTERNAL, error.name, status=error.code or 500)


@blueprint.errorhandler(Exception)
def _unexpected(error: Exception) -> Response:
    log.error(
        "unhandled %s on %s (request %s)",
        type(error).__name__,
        request.endpoint,  # not the path: a page's path holds its session handle
        getattr(g, "request_id", "-"),
        exc_info=error,
    )
    return problem_response(Problem.INTERNAL)


@blueprint.after_app_request
def _security_headers(response: Response) -> Response:
    if not _is_smart_path():
        return response
    runtime = current_app.extensions.get(EXTENSION)
    ancestors = " ".join(runtime.smart.frame_ancestor_sources()) if runtime else "'self'"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; base-uri 'none'; "
        f"frame-ancestors {ancestors}"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    if request.endpoint not in ("smartapp.static", "smartapp.jwks"):
        response.headers["Cache-Control"] = "no-store"  # pages hold PHI
    return response
