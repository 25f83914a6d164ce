"""SMART Backend Services: an access token for a system (no user), by the OAuth 2.0
client_credentials grant with a private_key_jwt client assertion (SMART App Launch 2.x,
"Backend Services"; RFC 7523).

The token endpoint is read from the server's `.well-known/smart-configuration`. The
assertion is signed with the first key of a `keys generate` file (ES384 or RS384, the two
that SMART servers must accept): header `alg`, `kid`, `typ: JWT`; claims `iss` = `sub` = the
client id, `aud` = the token endpoint, `exp` at most five minutes ahead, a fresh `jti`. A
token is renewed shortly before it expires (`expires_in`), and at once when a server
answers 401 to it (`renew`). Errors are `AuthError`, one line, never a token or a key.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import requests
from joserfc import jwt

from ehr.keys import SigningKey

ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME: Final = 300  # SMART Backend Services: exp no more than 5 minutes ahead
RENEW_BEFORE: Final = 30  # seconds before expiry a token is renewed
SCOPE_V2: Final = "system/*.rs"  # SMART v2 scopes: read and search every type
SCOPE_V1: Final = "system/*.read"  # the v1 form, for servers that speak only v1
TIMEOUT: Final = (10, 60)  # connect, read (seconds)


class AuthError(Exception):
    """Authorisation failed; the message says why in one line (no token, no key)."""


@dataclass(frozen=True, slots=True)
class SmartConfiguration:
    """What a server's .well-known/smart-configuration says a backend client needs."""

    token_endpoint: str
    capabilities: frozenset[str]
    scopes_supported: frozenset[str]

    def scope(self) -> str:
        """`system/*.rs`, unless the server says it speaks SMART v1 scopes only: the
        capability `permission-v1` without `permission-v2`, or v1 scopes and no v2 ones
        listed (SMART App Launch 2.x, "Scopes": v2 servers should accept v1 too)."""
        if "permission-v2" in self.capabilities:
            return SCOPE_V2
        if "permission-v1" in self.capabilities:
            return SCOPE_V1
        if SCOPE_V1 in self.scopes_supported and SCOPE_V2 not in self.scopes_supported:
            return SCOPE_V1
        return SCOPE_V2


def discover(session: requests.Session, fhir_base: str) -> SmartConfiguration:
    """The server's SMART configuration, from `[base]/.well-known/smart-configuration`."""
    url = f"{fhir_base.rstrip('/')}/.well-known/smart-configuration"
    try:
        response = session.get(url, headers={"Accept": "application/json"}, timeout=TIMEOUT)
    except requests.RequestException as error:
        raise AuthError(f"cannot reach {url}: {type(error).__name__}") from None
    if response.status_code != 200:
        raise AuthError(
            f"{url} answered HTTP {response.status_code}: the server does not say where its "
            "token endpoint is (give --token-url)"
        )
    document = _json_object(response, url)
    endpoint = document.get("token_endpoint")
    if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
        raise AuthError(f"{url} names no token_endpoint (give --token-url)")
    return SmartConfiguration(
        endpoint, _strings(document.get("capabilities")), _strings(document.get("scopes_supported"))
    )


class BackendServicesAuth:
    """Access tokens for one client at one token endpoint, renewed as they expire."""

    def __init__(
        self,
        session: requests.Session,
        token_url: str,
        client_id: str,
        key: SigningKey,
        scope: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.session = session
        self.token_url = token_url
        self.client_id = client_id
        self.key = key
        self.scope = scope
        self.clock = clock
        self.granted_scope = ""
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never shows the token
        return f"BackendServicesAuth(client_id={self.client_id!r}, token_url={self.token_url!r})"

    def token(self) -> str:
        """A token valid for at least RENEW_BEFORE seconds more."""
        with self._lock:
            if self._token is None or self.clock() >= self._expires_at - RENEW_BEFORE:
                self._request_token()
            assert self._token is not None
            return self._token

    def renew(self, rejected: str) -> str:
        """A new token, after a server refused `rejected` (401): renewed once however many
        downloads saw it refused at the same time."""
        with self._lock:
            if self._token is None or self._token == rejected:
                self._request_token()
            assert self._token is not None
            return self._token

    def assertion(self) -> str:
        """The signed client assertion (RFC 7523 section 3; SMART Backend Services)."""
        now = int(self.clock())
        header = {"alg": self.key.alg, "kid": self.key.kid, "typ": "JWT"}
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.token_url,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
            "jti": secrets.token_urlsafe(24),
        }
        return jwt.encode(header, claims, self.key.key, algorithms=[self.key.alg])

    def _request_token(self) -> None:
        form = {
            "grant_type": "client_credentials",
            "scope": self.scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.assertion(),
        }
        try:
            response = self.session.post(
                self.token_url, data=form, headers={"Accept": "application/json"}, timeout=TIMEOUT
            )
        except requests.RequestException as error:
            raise AuthError(
                f"cannot reach the token endpoint {self.token_url}: {type(error).__name__}"
            ) from None
        if response.status_code != 200:
            raise AuthError(f"the token endpoint refused the client: {_oauth_error(response)}")
        answer = _json_object(response, self.token_url)
        token = answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise AuthError("the token endpoint's answer has no access_token")
        if str(answer.get("token_type", "")).lower() != "bearer":  # "bearer" or "Bearer"
            raise AuthError(
                f"the token endpoint gave a {answer.get('token_type')!r} token, not a bearer token"
            )
        lifetime = answer.get("expires_in")
        if not isinstance(lifetime, int | float) or isinstance(lifetime, bool) or lifetime <= 0:
            lifetime = ASSERTION_LIFETIME  # required by SMART; assume the shortest usual
        self._token = token
        self._expires_at = self.clock() + float(lifetime)
        self.granted_scope = str(answer.get("scope") or self.scope)


def _oauth_error(response: requests.Response) -> str:
    """`error: error_description` of an OAuth error answer (RFC 6749 5.2), else the status."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        description = body.get("error_description")
        return body["error"] + (f": {description}" if isinstance(description, str) else "")
    return f"HTTP {response.status_code}"


def _json_object(response: requests.Response, url: str) -> dict[str, Any]:
    try:
        document = response.json()
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise AuthError(f"{url} did not answer a JSON object")
    return document


def _strings(value: Any) -> frozenset[str]:
    return (
        frozenset(v for v in value if isinstance(v, str))
        if isinstance(value, list)
        else frozenset()
    )
