"""The OAuth 2.0 side of SMART App Launch 2.x, on Authlib and joserfc.

- the authorize URL: PKCE S256, `state`, `aud` = the FHIR base URL, `launch`, SMART scopes;
- the code exchange and refresh, as a public client or a confidential asymmetric client
  (`private_key_jwt`, RS384 or ES384, SMART's headers and a five-minute expiry);
- the id_token: signature from the issuer's key set, `iss`, `aud`, `exp`, `iat`, `sub`, `nonce`.

Failures are `OAuthFailure` with a short reason that names no token.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session, OAuthError
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc import jws, jwt
from joserfc.errors import ClaimError, JoseError
from joserfc.jwk import KeySet

from ehr.keys import SigningKey
from smartapp.discovery import SmartConfiguration

log = logging.getLogger(__name__)

# The FHIR resources the page reads (SMART App Launch 2.x scopes; v1 names for older servers).
RESOURCE_SCOPES: tuple[tuple[str, bool], ...] = (
    ("Patient", False),  # read only
    ("Observation", True),  # read and search
    ("MedicationRequest", True),
    ("Condition", True),
    ("Procedure", True),
    ("DiagnosticReport", True),
)
ID_TOKEN_ALGORITHMS = ["RS256", "RS384", "ES256", "ES384"]
ASSERTION_LIFETIME_SECONDS = 300  # SMART: exp no more than five minutes in the future
REVOCATION_TIMEOUT_SECONDS = 2.0  # sign-out waits no longer than this for the EHR
CLOCK_LEEWAY_SECONDS = 60
# The error codes an authorization server may send to the redirect URL (RFC 6749 s4.1.2.1,
# OpenID Connect Core s3.1.2.6). Anything else is not shown: the redirect URL is public.
AUTHORIZATION_ERRORS = frozenset(
    {
        "invalid_request",
        "unauthorized_client",
        "access_denied",
        "unsupported_response_type",
        "invalid_scope",
        "server_error",
        "temporarily_unavailable",
        "interaction_required",
        "login_required",
        "account_selection_required",
        "consent_required",
        "invalid_request_uri",
        "invalid_request_object",
        "request_not_supported",
        "request_uri_not_supported",
        "registration_not_supported",
    }
)


def smart_scopes(
    *,
    ehr_launch: bool,
    v2: bool,
    extra_resources: tuple[str, ...] = (),
    refresh_scope: str = "online_access",
) -> str:
    """The scopes the app asks for, in SMART v2 (`.rs`) or v1 (`.read`) syntax, and the
    refresh token it asks for (`online_access` or `offline_access`: SmartSettings)."""
    scopes = ["launch" if ehr_launch else "launch/patient", "openid", "fhirUser"]
    extra = tuple((resource, True) for resource in extra_resources)
    for resource, search in RESOURCE_SCOPES + extra:
        permission = ("rs" if search else "r") if v2 else "read"
        scopes.append(f"patient/{resource}.{permission}")
    scopes.append(refresh_scope)
    return " ".join(scopes)


def authorization_error(error: str) -> str:
    """The redirect's `error` as a known OAuth error code, never the text as sent."""
    return error if error in AUTHORIZATION_ERRORS else "an unrecognised error"


def new_code_verifier() -> str:
    """A PKCE code verifier: 64 characters of [A-Za-z0-9] (RFC 7636: 43 to 128)."""
    return str(generate_token(64))


class OAuthFailure(Exception):
    """The EHR's authorization server did not give what was needed; `reason` is safe to show."""

    def __init__(self, reason: str, *, error_code: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error_code = error_code


class _SmartPrivateKeyJWT(PrivateKeyJWT):  # type: ignore[misc]
    """private_key_jwt as SMART asks: `kid` and `typ` headers, exp within five minutes."""

    def __init__(self, signing_key: SigningKey) -> None:
        super().__init__(alg=signing_key.alg)
        self.kid = signing_key.kid

    def sign(self, auth: Any, token_endpoint: str) -> Any:
        self.headers = {"kid": self.kid, "typ": "JWT"}
        self.claims = {"exp": int(time.time()) + ASSERTION_LIFETIME_SECONDS}
        return super().sign(auth, token_endpoint)


@dataclass(frozen=True)
class GrantedTokens:
    """What a token response gave: the tokens and the SMART launch context."""

    access_token: str
    refresh_token: str | None
    access_expires_at: datetime | None
    scope: str
    patient: str | None
    encounter: str | None
    need_patient_banner: bool
    smart_style_url: str | None
    fhir_context: list[Any] | None
    app_context: str | None
    id_token: str | None

    def __repr__(self) -> str:  # never shows a token
        return f"GrantedTokens(patient={self.patient!r}, scope={self.scope!r})"

    @classmethod
    def from_response(cls, body: dict[str, Any]) -> GrantedTokens:
        access_token = body.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise OAuthFailure("the token response has no access token")
        token_type = body.get("token_type")
        # SMART: token_type is fixed to Bearer. A DPoP or MAC token sent as Bearer would not
        # work, or would leak a token bound to a key. Missing (against RFC 6749) is taken as
        # Bearer: nothing says the token is bound to anything.
        if token_type is not None and str(token_type).lower() != "bearer":
            raise OAuthFailure("the EHR issued a token that is not a Bearer token")
        expires_at = body.get("expires_at")
        if not isinstance(expires_at, int | float) and isinstance(
            body.get("expires_in"), int | float
        ):
            expires_at = time.time() + float(body["expires_in"])
        app_context = body.get("appContext")
        if app_context is not None and not isinstance(app_context, str):
            app_context = None
        fhir_context = body.get("fhirContext")
        return cls(
            access_token=access_token,
            refresh_token=_text(body.get("refresh_token")),
            access_expires_at=(
                datetime.fromtimestamp(float(expires_at), UTC)
                if isinstance(expires_at, int | float)
                else None
            ),
            scope=_text(body.get("scope")) or "",
            patient=_text(body.get("patient")),
            encounter=_text(body.get("encounter")),
            need_patient_banner=body.get("need_patient_banner") is not False,
            smart_style_url=_text(body.get("smart_style_url")),
            fhir_context=fhir_context if isinstance(fhir_context, list) else None,
            app_context=app_context,
            id_token=_text(body.get("id_token")),
        )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class SmartOAuthClient:
    """Talks OAuth to the EHR's authorization servers for one registered client."""

    def __init__(
        self,
        client_id: str,
        *,
        signing_key: SigningKey | None,
        timeout_seconds: float,
        session_factory: type[OAuth2Session] = OAuth2Session,
    ) -> None:
        self.client_id = client_id
        self.signing_key = signing_key
        self.timeout = (min(2.0, timeout_seconds), timeout_seconds)
        self._session_factory = session_factory

    @property
    def auth_method(self) -> str:
        return "private_key_jwt" if self.signing_key else "none"

    def _session(self, *, redirect_uri: str | None = None, scope: str | None = None) -> Any:
        session = self._session_factory(
            client_id=self.client_id,
            client_secret=self.signing_key.key if self.signing_key else None,
            token_endpoint_auth_method=self.auth_method,
            revocation_endpoint_auth_method=self.auth_method,
            redirect_uri=redirect_uri,
            scope=scope,
            code_challenge_method="S256",
        )
        if self.signing_key:
            session.register_client_auth_method(_SmartPrivateKeyJWT(self.signing_key))
        return session

    def authorization_url(
        self,
        config: SmartConfiguration,
        *,
        redirect_uri: str,
        scope: str,
        state: str,
        code_verifier: str,
        nonce: str,
        launch: str | None,
    ) -> str:
        extra = {"aud": config.iss, "nonce": nonce}
        if launch:
            extra["launch"] = launch
        with self._session(redirect_uri=redirect_uri, scope=scope) as session:
            url, _ = session.create_authorization_url(
                config.authorization_endpoint, state=state, code_verifier=code_verifier, **extra
            )
        return str(url)

    def exchange_code(
        self, *, token_endpoint: str, code: str, redirect_uri: str, code_verifier: str
    ) -> GrantedTokens:
        with self._session(redirect_uri=redirect_uri) as session:
            body = self._call(
                lambda: session.fetch_token(
                    token_endpoint,
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=code_verifier,
                    timeout=self.timeout,
                )
            )
        return GrantedTokens.from_response(dict(body))

    def refresh(self, *, token_endpoint: str, refresh_token: str) -> GrantedTokens:
        with self._session() as session:
            body = self._call(
                lambda: session.refresh_token(
                    token_endpoint, refresh_token=refresh_token, timeout=self.timeout
                )
            )
        return GrantedTokens.from_response(dict(body))

    def revoke(self, *, revocation_endpoint: str, token: str, token_type_hint: str) -> bool:
        """Give a token back to the EHR (RFC 7009). Best effort: False when it did not work."""
        timeout = min(REVOCATION_TIMEOUT_SECONDS, self.timeout[1])
        try:
            with self._session() as session:
                response = session.revoke_token(
                    revocation_endpoint,
                    token=token,
                    token_type_hint=token_type_hint,
                    timeout=(min(1.0, timeout), timeout),
                )
        except requests.RequestException as error:
            log.warning("token revocation failed: %s", type(error).__name__)
            return False
        if response.status_code != 200:
            log.warning("token revocation refused: HTTP %s", response.status_code)
            return False
        return True

    @staticmethod
    def _call(request: Any) -> Any:
        try:
            return request()
        except OAuthError as error:
            code = str(error.error or "error")
            log.warning("token endpoint refused the request: %s", code)
            raise OAuthFailure(f"the EHR answered {code}", error_code=code) from None
        except requests.Timeout:
            raise OAuthFailure("the EHR's token service did not answer in time") from None
        except requests.HTTPError as error:
            status = error.response.status_code if error.response is not None else "error"
            raise OAuthFailure(f"the EHR's token service answered HTTP {status}") from None
        except requests.RequestException:
            raise OAuthFailure("the EHR's token service could not be reached") from None
        except ValueError:
            raise OAuthFailure(
                "the EHR's token service sent something that is not a token"
            ) from None


def validate_id_token(
    id_token: str, key_set: KeySet, *, issuer: str, client_id: str, nonce: str | None
) -> dict[str, Any]:
    """The id_token's claims, once its signature, `iss`, `aud`, `exp`, `iat`, `sub` and the
    nonce the app sent check out (OpenID Connect Core 3.1.3.7; `sub`, `iat` required by s2)."""
    required: dict[str, Any] = {
        "iss": {"essential": True, "value": issuer},
        "aud": {"essential": True, "value": client_id},
        "exp": {"essential": True},
        "iat": {"essential": True},
        "sub": {"essential": True},
    }
    if nonce is not None:  # sent in the authorize request, so it must come back
        required["nonce"] = {"essential": True, "value": nonce}
    try:
        token = jwt.decode(id_token, key_set, algorithms=ID_TOKEN_ALGORITHMS)
        jwt.JWTClaimsRegistry(leeway=CLOCK_LEEWAY_SECONDS, **required).validate(token.claims)
    except ClaimError as error:  # names the claim (one of those above), never its value
        raise OAuthFailure(f"the id_token did not verify ({error.description})") from None
    except JoseError as error:
        raise OAuthFailure(f"the id_token did not verify ({error.error})") from None
    except ValueError:
        raise OAuthFailure("the id_token is not a signed JWT") from None
    return dict(token.claims)


def unverified_issuer(id_token: str) -> str | None:
    """The `iss` an id_token names, before it is verified: where to look for its keys."""
    try:
        payload = jws.extract_compact(id_token.encode("ascii")).payload
        claims = json.loads(payload)
    except (JoseError, ValueError):  # not a compact JWS, or its payload is not JSON
        return None
    issuer = claims.get("iss") if isinstance(claims, dict) else None
    return issuer if isinstance(issuer, str) else None


def import_key_set(document: Any) -> KeySet:
    try:
        return KeySet.import_key_set(document)
    except (JoseError, ValueError, TypeError, KeyError):
        raise OAuthFailure("the EHR's signing keys could not be read") from None
