"""The SMART launch, step by step: launch -> authorize -> callback -> session -> refresh.

Plain functions over a `SmartRuntime`; the views only read the request and write the
response. Every failure is an `AppError` the clinician sees as a page.
"""

from __future__ import annotations

import logging
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from clinical.settings import Settings as ClinicalSettings
from ehr.client import ClientLimits
from runtime.acknowledgements import CardEvidenceLog
from runtime.settings import ProductSettings
from smartapp.config import SmartSettings, normalise_issuer
from smartapp.discovery import Discovery, DiscoveryError
from smartapp.ehr_style import EhrStyles
from smartapp.errors import AppError, Problem
from smartapp.oauth import (
    GrantedTokens,
    OAuthFailure,
    SmartOAuthClient,
    authorization_error,
    import_key_set,
    new_code_verifier,
    smart_scopes,
    unverified_issuer,
    validate_id_token,
)
from smartapp.tokens import (
    MAX_LAUNCH_VALUE_CHARS,
    MAX_PENDING_LAUNCHES,
    PendingLaunch,
    SmartSession,
    TokenStore,
    new_secret,
    utc_now,
)

log = logging.getLogger(__name__)

LAUNCH_LIFETIME = timedelta(minutes=10)  # from the launch to the callback
REFRESH_LOCK_STRIPES = 64  # sessions share a lock only by chance, and only while refreshing
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass
class SmartRuntime:
    """What the SMART views need, built once per app."""

    product: ProductSettings
    smart: SmartSettings
    tokens: TokenStore
    discovery: Discovery
    oauth: SmartOAuthClient
    fhir_limits: ClientLimits
    clinical: ClinicalSettings
    styles: EhrStyles = field(default_factory=EhrStyles)  # the EHRs' smart_style_url, as CSS
    # the answers to the EHR's cards, to mark findings "acknowledged" (docs/smart-app.md)
    acknowledgements: CardEvidenceLog | None = None
    refresh_locks: tuple[threading.Lock, ...] = field(
        default_factory=lambda: tuple(threading.Lock() for _ in range(REFRESH_LOCK_STRIPES))
    )

    def refresh_lock(self, handle: str) -> threading.Lock:
        """The lock that one session's refreshes take in this worker, one at a time."""
        return self.refresh_locks[hash(handle) % len(self.refresh_locks)]


def begin_launch(
    runtime: SmartRuntime,
    *,
    iss: str | None,
    launch: str | None,
    browser: str,
    framed: bool,
    redirect_uri: str,
    now: datetime,
) -> str:
    """Check the issuer, discover its server, remember the launch; the authorize URL."""
    # SMART: in an EHR launch `aud` is the launch's `iss`, so it is kept as the EHR sent it (a
    # trailing "/" too); a standalone launch goes to the FHIR base as the allowlist writes it.
    if iss:
        iss = iss.strip() if launch else normalise_issuer(iss)
    else:
        iss = runtime.smart.default_issuer
    if not iss:
        raise AppError(Problem.NO_ISSUER)
    if not runtime.smart.allows(iss):
        log.warning("launch refused: issuer not in the allowlist")
        raise AppError(Problem.UNKNOWN_ISSUER, f"issuer {iss}")
    if launch and len(launch) > MAX_LAUNCH_VALUE_CHARS:
        log.warning("launch refused: a launch value of %d characters", len(launch))
        raise AppError(Problem.LAUNCH_TOO_LONG, f"more than {MAX_LAUNCH_VALUE_CHARS} characters")
    try:
        config = runtime.discovery.configuration(iss)
    except DiscoveryError as error:
        raise AppError(Problem.DISCOVERY_FAILED, error.reason) from None
    if config.refuses_s256:
        raise AppError(Problem.EHR_UNSUITABLE, "the EHR does not offer PKCE S256")
    for endpoint in (config.authorization_endpoint, config.token_endpoint, config.jwks_uri):
        if endpoint and runtime.product.plain_http_problem(endpoint):
            log.warning("launch refused: the EHR's sign-in service is on plain http")
            raise AppError(Problem.EHR_UNSUITABLE, "the EHR's sign-in service is not on https")
    methods = config.token_endpoint_auth_methods
    if (
        runtime.oauth.auth_method == "private_key_jwt"
        and methods
        and "private_key_jwt" not in methods
    ):
        raise AppError(Problem.EHR_UNSUITABLE, "the EHR does not accept private_key_jwt")

    pending = PendingLaunch(
        state=new_secret(),
        browser=browser,
        iss=iss,
        launch=launch or None,
        code_verifier=new_code_verifier(),
        nonce=new_secret(),
        redirect_uri=redirect_uri,
        token_endpoint=config.token_endpoint,
        issuer=config.issuer,
        jwks_uri=config.jwks_uri,
        framed=framed,
        expires_at=now + LAUNCH_LIFETIME,
    )
    runtime.tokens.purge_expired(now)
    if not runtime.tokens.save_launch(pending):
        log.error("launch refused: %d launches are pending already", MAX_PENDING_LAUNCHES)
        raise AppError(Problem.TOO_MANY_LAUNCHES)
    log.info(
        "%s launch: redirecting to the EHR's authorize endpoint (%s scopes)",
        "EHR" if pending.launch else "standalone",
        "v2" if config.speaks_v2_scopes else "v1",
    )
    return runtime.oauth.authorization_url(
        config,
        redirect_uri=redirect_uri,
        scope=smart_scopes(
            ehr_launch=bool(pending.launch),
            v2=config.speaks_v2_scopes,
            extra_resources=runtime.smart.extra_resources,
            refresh_scope=runtime.smart.refresh_scope,
        ),
        state=pending.state,
        code_verifier=pending.code_verifier or "",
        nonce=pending.nonce,
        launch=pending.launch,
    )


def complete_launch(
    runtime: SmartRuntime,
    *,
    state: str | None,
    code: str | None,
    error: str | None,
    browser: str | None,
    now: datetime,
) -> SmartSession:
    """The callback: the state is this browser's, the code becomes tokens, kept here."""
    # only this browser's launch is taken: another browser opening the callback URL (a link
    # sent to it) leaves the launch for the browser that started it
    pending = runtime.tokens.take_launch(state, browser, now) if state and browser else None
    # SMART: the state is checked for any request to the redirect URL, an error answer too;
    # anyone can send a browser there, with any text in `error`.
    if (
        pending is None
        or browser is None
        or not secrets.compare_digest(pending.browser.encode(), browser.encode())
    ):
        log.warning("callback refused: state unknown, used, expired or from another browser")
        raise AppError(Problem.STATE_MISMATCH)
    if error:
        known = authorization_error(error)
        log.info("the EHR refused the authorization: %s", known)
        raise AppError(Problem.AUTHORIZATION_REFUSED, f"the EHR answered {known}")
    if not code:
        raise AppError(Problem.TOKEN_FAILED, "the EHR sent no authorization code")
    if not pending.code_verifier:
        log.error("callback refused: the launch has no PKCE code verifier")
        raise AppError(Problem.PKCE_MISSING)
    try:
        granted = runtime.oauth.exchange_code(
            token_endpoint=pending.token_endpoint,
            code=code,
            redirect_uri=pending.redirect_uri,
            code_verifier=pending.code_verifier,
        )
    except OAuthFailure as failure:
        raise AppError(Problem.TOKEN_FAILED, failure.reason) from None
    claims = _verify_identity(runtime, pending, granted) if granted.id_token else {}
    if not granted.patient:
        raise AppError(Problem.NO_PATIENT)
    fhir_user = claims.get("fhirUser") if isinstance(claims.get("fhirUser"), str) else None
    session = SmartSession(
        handle=new_secret(),
        browser=pending.browser,
        iss=pending.iss,
        token_endpoint=pending.token_endpoint,
        access_token=granted.access_token,
        refresh_token=granted.refresh_token,
        access_expires_at=granted.access_expires_at,
        scope=granted.scope,
        patient=granted.patient,
        encounter=granted.encounter,
        need_patient_banner=granted.need_patient_banner,
        smart_style_url=granted.smart_style_url,
        fhir_context=granted.fhir_context,
        app_context=granted.app_context,
        fhir_user=fhir_user,
        framed=pending.framed,
        expires_at=now + timedelta(hours=runtime.smart.session_hours),
    )
    runtime.tokens.save_session(session)
    log.info("SMART session started (refresh token: %s)", "yes" if granted.refresh_token else "no")
    return session


def _verify_identity(
    runtime: SmartRuntime, pending: PendingLaunch, granted: GrantedTokens
) -> dict[str, Any]:
    id_token = granted.id_token or ""
    try:
        issuer = pending.issuer or _issuer_named_by(id_token, pending)
        jwks_uri = pending.jwks_uri or runtime.discovery.openid_jwks_uri(issuer)
        document = runtime.discovery.get_json(jwks_uri)
        if document is None:
            raise OAuthFailure("the EHR's signing keys could not be fetched")
        return validate_id_token(
            id_token,
            import_key_set(document),
            issuer=issuer,
            client_id=runtime.smart.client_id,
            nonce=pending.nonce,
        )
    except (OAuthFailure, DiscoveryError) as failure:
        log.warning("id_token refused: %s", failure.reason)
        raise AppError(Problem.IDENTITY_UNVERIFIED, failure.reason) from None


def _issuer_named_by(id_token: str, pending: PendingLaunch) -> str:
    """The id_token's own `iss`, when discovery named no issuer (SMART before 2.0, or without
    sso-openid-connect): SMART's "Steps for using an ID token" start from it. Trusted only on
    the origin of the FHIR base or of the token endpoint the token came from, so the token
    cannot send the app anywhere else; its signature is then checked with that issuer's keys."""
    issuer = unverified_issuer(id_token)
    if issuer is None:
        raise OAuthFailure("the id_token names no issuer")
    origin = _origin(issuer)
    if origin is None or origin not in (_origin(pending.iss), _origin(pending.token_endpoint)):
        raise OAuthFailure("the id_token's issuer is not the EHR's sign-in service")
    return issuer


def _origin(url: str) -> tuple[str, str, int] | None:
    """Scheme, host and port (RFC 6454); None for what is not a plain http(s) URL."""
    try:
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORTS.get(parts.scheme, 0)
    except ValueError:  # a port that is not a number
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or "@" in parts.netloc:
        return None
    return parts.scheme, parts.hostname, port


def fresh_session(runtime: SmartRuntime, session: SmartSession, now: datetime) -> SmartSession:
    """The session with an access token that has not expired, refreshed if need be."""
    if not session.access_expired(now):
        return session
    return refresh_session(runtime, session)


def refresh_session(runtime: SmartRuntime, session: SmartSession) -> SmartSession:
    """New tokens from the refresh token; the session ends when there is none or it is refused.

    Two requests of one session (two tabs, a reload) may refresh at once, and an EHR that
    rotates refresh tokens accepts each one once. So the tokens another request stored in the
    meantime are used, and new ones are stored only over the refresh token they came from."""
    with runtime.refresh_lock(session.handle):
        stored = _stored(runtime, session)
        if stored.access_token != session.access_token:
            return stored  # refreshed by another request of this worker while this one waited
        if not stored.refresh_token:
            runtime.tokens.end_session(stored.handle)
            raise AppError(
                Problem.SESSION_EXPIRED, "access expired and the EHR gave no refresh token"
            )
        try:
            granted = runtime.oauth.refresh(
                token_endpoint=stored.token_endpoint, refresh_token=stored.refresh_token
            )
        except OAuthFailure as failure:
            if not failure.error_code:
                raise AppError(Problem.TOKEN_FAILED, failure.reason) from None
            # The EHR answered no: the grant is over, unless another worker spent the refresh
            # token just before and has stored what it got.
            if runtime.tokens.end_grant(stored):
                raise AppError(Problem.SESSION_EXPIRED, failure.reason) from None
            return _stored(runtime, stored)
        refreshed = runtime.tokens.update_tokens(
            stored,
            access_token=granted.access_token,
            refresh_token=granted.refresh_token or stored.refresh_token,
            access_expires_at=granted.access_expires_at,
        )
    if refreshed is None:  # another worker stored its refresh first; one grant, one set kept
        return _stored(runtime, stored)
    log.info("SMART access token refreshed")
    return refreshed


def _stored(runtime: SmartRuntime, session: SmartSession) -> SmartSession:
    """The session as it is stored now; AppError when it has ended."""
    stored = runtime.tokens.session(session.handle, session.browser, utc_now())
    if stored is None:
        raise AppError(Problem.SESSION_EXPIRED, "the session has ended")
    return stored


def sign_out(runtime: SmartRuntime, *, browser: str, now: datetime) -> list[SmartSession]:
    """End every session this browser signed in (its cookie is about to go), giving each
    grant back to the EHR when it offers a revocation endpoint. The sessions ended."""
    sessions = runtime.tokens.sessions_of(browser, now)
    for session in sessions:
        runtime.tokens.end_session(session.handle)
        _revoke(runtime, session)
    log.info("SMART sign-out: %d session(s) ended", len(sessions))
    return sessions


def _revoke(runtime: SmartRuntime, session: SmartSession) -> None:
    """Best effort: the session is already gone here, whatever the EHR answers."""
    try:
        endpoint = runtime.discovery.configuration(session.iss).revocation_endpoint
    except DiscoveryError as error:
        log.info("tokens not revoked: %s", error.reason)
        return
    if endpoint is None:
        return
    # Revoking the refresh token ends the grant (RFC 7009 s2.1); the access token dies with it
    # on most servers, and within its short lifetime on the others.
    token, hint = (
        (session.refresh_token, "refresh_token")
        if session.refresh_token
        else (session.access_token, "access_token")
    )
    runtime.oauth.revoke(revocation_endpoint=endpoint, token=token, token_type_hint=hint)
