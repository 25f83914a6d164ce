"""Where an EHR's SMART authorization server is, and what it can do.

SMART App Launch 2.x: `{iss}/.well-known/smart-configuration`; servers older than that
publish their OAuth URIs in the CapabilityStatement (`{iss}/metadata`,
`rest.security.extension` "oauth-uris"), and are taken to speak SMART v1 scopes.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

import requests

from smartapp.config import normalise_issuer

log = logging.getLogger(__name__)

OAUTH_URIS_EXTENSION = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


class DiscoveryError(Exception):
    """The EHR's authorization server could not be found; `reason` is safe to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SmartConfiguration:
    iss: str
    authorization_endpoint: str
    token_endpoint: str
    source: Literal["smart-configuration", "capability-statement"]
    issuer: str | None = None  # OpenID Connect issuer: the id_token's `iss`
    jwks_uri: str | None = None  # the issuer's keys, for the id_token signature
    capabilities: frozenset[str] = frozenset()
    code_challenge_methods: tuple[str, ...] = ()
    token_endpoint_auth_methods: tuple[str, ...] = ()
    revocation_endpoint: str | None = None  # RFC 7009: where sign-out gives the tokens back

    @property
    def speaks_v2_scopes(self) -> bool:
        """SMART v2 scopes (`patient/Observation.rs`) unless the server advertises only v1.

        A smart-configuration that names neither is taken to be v2 (the current IG); a server
        known only from its CapabilityStatement predates SMART 2 and gets v1 scopes."""
        if "permission-v2" in self.capabilities:
            return True
        if "permission-v1" in self.capabilities:
            return False
        return self.source == "smart-configuration"

    @property
    def refuses_s256(self) -> bool:
        """True when the server lists its PKCE methods and S256 is not among them."""
        return bool(self.code_challenge_methods) and "S256" not in self.code_challenge_methods


def _endpoint(value: Any, iss: str, what: str) -> str:
    """An endpoint URL as absolute: one written relative (`/auth/token`, `auth/token`) is
    resolved against the FHIR base URL the document came from (RFC 3986, 5.2)."""
    if not isinstance(value, str) or not value.strip():
        raise DiscoveryError(f"the EHR did not publish its {what}")
    value = urljoin(normalise_issuer(iss) + "/", value.strip())
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise DiscoveryError(f"the EHR's {what} is not an absolute URL")
    if urlsplit(iss).scheme == "https" and parts.scheme != "https":
        raise DiscoveryError(f"the EHR's {what} is not https")
    return value


def _optional_endpoint(value: Any, iss: str, what: str) -> str | None:
    """An endpoint the app can do without: left out, and logged, when it cannot be used."""
    if value is None:
        return None
    try:
        return _endpoint(value, iss, what)
    except DiscoveryError as error:
        log.info("discovery: %s; not used", error.reason)
        return None


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(item for item in value if isinstance(item, str)) if isinstance(value, list) else ()


def from_smart_configuration(iss: str, body: Any) -> SmartConfiguration:
    if not isinstance(body, dict):
        raise DiscoveryError("the EHR's smart-configuration is not a JSON object")
    issuer = body.get("issuer") if isinstance(body.get("issuer"), str) else None
    jwks_uri = body.get("jwks_uri") if isinstance(body.get("jwks_uri"), str) else None
    return SmartConfiguration(
        iss=iss,
        authorization_endpoint=_endpoint(
            body.get("authorization_endpoint"), iss, "authorization endpoint"
        ),
        token_endpoint=_endpoint(body.get("token_endpoint"), iss, "token endpoint"),
        source="smart-configuration",
        issuer=issuer,
        jwks_uri=jwks_uri,
        capabilities=frozenset(_strings(body.get("capabilities"))),
        code_challenge_methods=_strings(body.get("code_challenge_methods_supported")),
        token_endpoint_auth_methods=_strings(body.get("token_endpoint_auth_methods_supported")),
        revocation_endpoint=_optional_endpoint(
            body.get("revocation_endpoint"), iss, "revocation endpoint"
        ),
    )


def from_capability_statement(iss: str, body: Any) -> SmartConfiguration:
    uris: dict[str, str] = {}
    rests = body.get("rest") if isinstance(body, dict) else None
    for rest in rests if isinstance(rests, list) else ():
        security = rest.get("security") if isinstance(rest, dict) else None
        extensions = security.get("extension") if isinstance(security, dict) else None
        for extension in extensions if isinstance(extensions, list) else ():
            if not isinstance(extension, dict) or extension.get("url") != OAUTH_URIS_EXTENSION:
                continue
            for inner in extension.get("extension") or ():
                if isinstance(inner, dict) and isinstance(inner.get("valueUri"), str):
                    uris[str(inner.get("url"))] = inner["valueUri"]
    if not uris:
        raise DiscoveryError("the EHR publishes no SMART authorization endpoints")
    return SmartConfiguration(
        iss=iss,
        authorization_endpoint=_endpoint(uris.get("authorize"), iss, "authorization endpoint"),
        token_endpoint=_endpoint(uris.get("token"), iss, "token endpoint"),
        source="capability-statement",
    )


class Discovery:
    """Finds and caches each issuer's SMART configuration for a few minutes."""

    def __init__(
        self, *, timeout_seconds: float, cache_seconds: int, session: requests.Session | None = None
    ) -> None:
        self.timeout = (min(2.0, timeout_seconds), timeout_seconds)
        self.cache_seconds = cache_seconds
        self.session = session or requests.Session()
        self._cache: dict[str, tuple[float, SmartConfiguration]] = {}
        self._lock = threading.Lock()

    def configuration(self, iss: str) -> SmartConfiguration:
        """The issuer's configuration, cached by the issuer as compared (`.../fhir/` and
        `HTTPS://EHR...` are one server), with `iss` as this launch sent it: it is the `aud`."""
        key = normalise_issuer(iss)
        with self._lock:
            cached = self._cache.get(key)
        if cached and time.monotonic() - cached[0] < self.cache_seconds:
            return replace(cached[1], iss=iss)
        config = self._discover(iss)
        with self._lock:
            self._cache[key] = (time.monotonic(), config)
        return config

    def _discover(self, iss: str) -> SmartConfiguration:
        base = iss.rstrip("/")  # the launch's iss is kept as sent (it is the `aud`)
        body = self._get_json(f"{base}/.well-known/smart-configuration")
        if body is not None:
            return from_smart_configuration(iss, body)
        log.info("no smart-configuration at the issuer; reading its CapabilityStatement")
        statement = self._get_json(f"{base}/metadata", fhir=True)
        if statement is None:
            raise DiscoveryError("the EHR's FHIR server did not describe its sign-in service")
        return from_capability_statement(iss, statement)

    def openid_jwks_uri(self, issuer: str) -> str:
        """Where an OpenID issuer keeps its signing keys: `jwks_uri` of its OpenID
        configuration, which must name that same issuer (OpenID Connect Discovery 4.3)."""
        document = self._get_json(f"{issuer.rstrip('/')}/.well-known/openid-configuration")
        if not isinstance(document, dict):
            raise DiscoveryError("the EHR does not say where its signing keys are")
        if document.get("issuer") != issuer:
            raise DiscoveryError("the EHR's OpenID configuration names another issuer")
        return _endpoint(document.get("jwks_uri"), issuer, "signing keys URL")

    def get_json(self, url: str) -> Any:
        """A JSON document (a key set, an OpenID configuration), or None."""
        return self._get_json(url)

    def _get_json(self, url: str, *, fhir: bool = False) -> Any:
        accept = "application/fhir+json, application/json" if fhir else "application/json"
        try:
            response = self.session.get(
                url, headers={"Accept": accept}, timeout=self.timeout, allow_redirects=False
            )
        except requests.Timeout:
            raise DiscoveryError("the EHR did not answer in time") from None
        except requests.RequestException:
            raise DiscoveryError("the EHR could not be reached") from None
        if response.status_code != 200:
            log.info("discovery: HTTP %s from the issuer", response.status_code)
            return None
        try:
            return response.json()
        except ValueError:
            return None
