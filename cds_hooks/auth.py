"""Who is calling: the CDS client's JWT (CDS Hooks 2.0, "Trusting CDS Clients"), verified.

Signature by joserfc, ES384 or RS384 only; `iss` must be a configured issuer whose key set is
pinned (a JWKS URL or file); a `jku` header is honoured only when it is listed for that
issuer, and never fetched otherwise; `aud` is this service's URL; `exp` and `iat` with a
small leeway; `jti` once only (replay cache in the store).
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

import orjson
import requests
from joserfc import jws, jwt
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    ExpiredTokenError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import KeySet

from ehr.urls import canonical_base_url
from runtime.settings import IssuerConfig, ProductSettings, normalise_base_url
from runtime.store import Store, StoreError

log = logging.getLogger(__name__)

ALLOWED_ALGORITHMS = ("ES384", "RS384")
_JWKS_FETCH_TIMEOUT = (1.0, 2.0)
_MIN_REFRESH_SECONDS = 30.0  # an unknown kid refetches a key set at most this often
# iat, exp, nbf ten years or more from now are no real token's times (the lifetime check then
# says what is wrong with those that are merely long)
_PLAUSIBLE_SECONDS = 10 * 365 * 86_400.0


# Why a JWT was refused, as a fixed class: what /metrics counts (never the token or reason).
Refusal = Literal[
    "missing_token",
    "malformed",
    "alg_not_allowed",
    "bad_header",
    "untrusted_issuer",
    "jku_not_allowed",
    "keys_unavailable",
    "unknown_kid",
    "bad_signature",
    "expired",
    "claim_missing",
    "wrong_audience",
    "lifetime_too_long",
    "claim_invalid",
    "replay",
    "replay_cache_unavailable",
    "tenant_not_allowed",
]
REFUSALS: tuple[Refusal, ...] = get_args(Refusal)


class AuthError(Exception):
    """The caller is not trusted; `reason` is safe to return to it (no token, no key), and
    `refusal` is its class."""

    def __init__(self, reason: str, refusal: Refusal, *, status: int = 401) -> None:
        if refusal not in REFUSALS:
            raise ValueError(f"not a refusal class: {refusal!r}")
        super().__init__(reason)
        self.reason = reason
        self.refusal = refusal
        self.status = status


@dataclass(frozen=True, slots=True)
class Caller:
    """A verified CDS client (or, with verification switched off, an unverified one)."""

    issuer: str | None
    fhir_servers: frozenset[str]
    verified: bool = True
    tenant: str | None = None  # the JWT's tenant claim (checked when the issuer lists them)
    tenant_listed: bool = False  # the issuer lists its tenants, and this is one of them

    @property
    def tenant_label(self) -> str:
        """The tenant as /metrics names it: only a listed one by its name (the labels stay a
        fixed set), "unlisted" for an issuer that lists none, "none" without the claim."""
        if self.tenant is None:
            return "none"
        return self.tenant if self.tenant_listed else "unlisted"

    def may_use_fhir_server(self, url: str) -> bool:
        return self.registered_fhir_server(url) is not None

    def registered_fhir_server(self, url: str) -> str | None:
        """The FHIR base URL this caller registered that `url` names, normalised: the one the
        token may be sent to (never the request's own text: `https://ehr/fhir ` is
        `https://ehr/fhir`). Compared as URLs are: scheme and host without case (RFC 3986,
        6.2.2.1), the port and path exactly, no trailing slash or surrounding space."""
        wanted = canonical_base_url(url)
        for server in self.fhir_servers:
            if canonical_base_url(server) == wanted:
                return wanted
        return None


@dataclass
class _CachedKeys:
    keys: KeySet | None  # None until a load has succeeded
    loaded_at: float = 0.0
    source_stamp: float | None = None  # file modification time
    failed_at: float | None = None  # the last load failed then (negative cache)
    loading: threading.Event | None = None  # set when the load in flight ends (single flight)


@dataclass
class KeySetCache:
    """Key sets by location (URL or file), cached; an unknown kid may trigger one refresh.

    One load at a time per location (single flight): the others use the keys held, or wait
    for that load when none are held yet. A failed load is remembered for
    `failure_seconds`: meanwhile no request fetches again, and each is answered at once
    (with the keys held before, if any). A failing JWKS URL was fetched by every request, and
    slow failures held every thread, /healthz's too (issue 18, finding 10)."""

    ttl_seconds: float
    session: requests.Session = field(default_factory=requests.Session)
    failure_seconds: float = 30.0  # jwks_failure_cache_seconds
    _cache: dict[str, _CachedKeys] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def keys(self, location: str, *, is_file: bool, refresh: bool = False) -> KeySet:
        now = time.monotonic()
        with self._lock:
            entry = self._cache.setdefault(location, _CachedKeys(None))
            if entry.keys is not None and not self._wants_load(
                entry, location, is_file, refresh, now
            ):
                return entry.keys
            if entry.failed_at is not None and now - entry.failed_at < self.failure_seconds:
                return self._held(entry)
            in_flight = entry.loading
            if in_flight is None:
                entry.loading = threading.Event()
            elif entry.keys is not None:
                return entry.keys  # another request is loading: the ones held meanwhile
        if in_flight is not None:  # the first load of this key set: wait for it
            in_flight.wait(_JWKS_FETCH_TIMEOUT[0] + _JWKS_FETCH_TIMEOUT[1])
            with self._lock:
                return self._held(entry)
        return self._load_once(entry, location, is_file)

    def _wants_load(
        self, entry: _CachedKeys, location: str, is_file: bool, refresh: bool, now: float
    ) -> bool:
        stale = now - entry.loaded_at > self.ttl_seconds
        if is_file:
            stale = stale or _mtime(location) != entry.source_stamp
        return stale or (refresh and now - entry.loaded_at > _MIN_REFRESH_SECONDS)

    def _load_once(self, entry: _CachedKeys, location: str, is_file: bool) -> KeySet:
        try:
            loaded = self._load(location, is_file=is_file)
        except AuthError:
            with self._lock:
                entry.failed_at = time.monotonic()
                self._done_loading(entry)
                return self._held(entry)
        with self._lock:
            entry.keys, entry.loaded_at, entry.source_stamp = loaded
            entry.failed_at = None
            self._done_loading(entry)
            return loaded[0]

    def _held(self, entry: _CachedKeys) -> KeySet:
        """The keys held for a location while they have not expired (an unknown kid's refresh
        failed: they are still good), or AuthError: none, or too old to trust."""
        if entry.keys is None or time.monotonic() - entry.loaded_at > self.ttl_seconds:
            raise AuthError("issuer key set unavailable", "keys_unavailable")
        return entry.keys

    @staticmethod
    def _done_loading(entry: _CachedKeys) -> None:
        if entry.loading is not None:
            entry.loading.set()
            entry.loading = None

    def _load(self, location: str, *, is_file: bool) -> tuple[KeySet, float, float | None]:
        try:
            if is_file:
                stamp = _mtime(location)
                document = orjson.loads(Path(location).read_bytes())
            else:
                stamp = None
                response = self.session.get(
                    location, timeout=_JWKS_FETCH_TIMEOUT, allow_redirects=False
                )
                if response.status_code != 200:
                    raise AuthError("issuer key set unavailable", "keys_unavailable")
                document = orjson.loads(response.content)
            keys = KeySet.import_key_set(document)
        except (
            OSError,
            orjson.JSONDecodeError,
            requests.RequestException,
            JoseError,
            ValueError,
            TypeError,
            AuthError,
        ):
            log.error(
                "JWKS for an issuer could not be loaded from %s", "a file" if is_file else "its URL"
            )
            raise AuthError("issuer key set unavailable", "keys_unavailable") from None
        return keys, time.monotonic(), stamp


def _mtime(location: str) -> float | None:
    try:
        return Path(location).stat().st_mtime
    except OSError:
        return None


class JwtVerifier:
    """Checks the `Authorization: Bearer <JWT>` of a CDS Hooks call."""

    def __init__(
        self, settings: ProductSettings, store: Store, *, session: requests.Session | None = None
    ):
        self.settings = settings
        self.store = store
        self.key_sets = KeySetCache(
            float(settings.jwks_cache_seconds),
            session or requests.Session(),
            failure_seconds=float(settings.jwks_failure_cache_seconds),
        )

    def verify(self, authorization: str | None, audiences: Iterable[str]) -> Caller:
        """The caller, or AuthError with the reason. `audiences`: accepted `aud` values."""
        if self.settings.insecure_skip_jwt_verification:
            return Caller(None, self.settings.fhir_servers_for(None), verified=False)
        token = _bearer(authorization)
        header, claims = _unverified_parts(token)

        alg = header.get("alg")
        if alg not in ALLOWED_ALGORITHMS:
            raise AuthError(
                f"JWT alg {alg!r} is not allowed (ES384 or RS384 only)", "alg_not_allowed"
            )
        typ = header.get("typ")
        if typ is not None and str(typ).upper() != "JWT":
            raise AuthError("JWT typ must be 'JWT'", "bad_header")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError("JWT kid header is missing", "bad_header")
        iss = claims.get("iss")
        issuer = self.settings.issuer(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise AuthError("JWT issuer is not trusted", "untrusted_issuer")

        key_set_location, is_file = _key_location(issuer, header.get("jku"))
        key = self._key(key_set_location, is_file, kid)
        try:
            verified = jwt.decode(token, key, algorithms=[alg])
        except BadSignatureError:
            raise AuthError("JWT signature is not valid", "bad_signature") from None
        except JoseError:
            raise AuthError(
                "JWT could not be verified with the issuer's key", "bad_signature"
            ) from None

        self._check_claims(verified.claims, issuer, audiences)
        tenant = _tenant(verified.claims.get("tenant"), issuer)
        expires = datetime.fromtimestamp(
            float(verified.claims["exp"]) + self.settings.jwt_leeway_seconds, UTC
        )
        try:
            fresh = self.store.remember_jti(issuer.iss, str(verified.claims["jti"]), expires)
        except StoreError as error:  # says why: the database is down, or its schema is old
            raise AuthError(str(error), "replay_cache_unavailable", status=503) from None
        if not fresh:
            raise AuthError("JWT jti was already used (replay)", "replay")
        return Caller(
            issuer.iss,
            self.settings.fhir_servers_for(issuer.iss),
            tenant=tenant,
            tenant_listed=bool(issuer.tenants),
        )

    def _key(self, location: str, is_file: bool, kid: str) -> Any:
        for refresh in (False, True):
            keys = self.key_sets.keys(location, is_file=is_file, refresh=refresh)
            try:
                return keys.get_by_kid(kid)
            except InvalidKeyIdError:
                continue
        raise AuthError("JWT kid is not in the issuer's key set", "unknown_kid")

    def _check_claims(
        self, claims: dict[str, Any], issuer: IssuerConfig, audiences: Iterable[str]
    ) -> None:
        accepted = [normalise_base_url(aud) for aud in audiences]
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else None
        if auds is not None:  # compare without a trailing slash
            claims = {**claims, "aud": [normalise_base_url(a) for a in auds if isinstance(a, str)]}
        registry = jwt.JWTClaimsRegistry(
            leeway=self.settings.jwt_leeway_seconds,
            iss={"essential": True, "value": issuer.iss},
            aud={"essential": True, "values": accepted},
            exp={"essential": True},
            iat={"essential": True},
            jti={"essential": True},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise AuthError("JWT has expired", "expired") from None
        except MissingClaimError as error:
            raise AuthError(f"JWT claim missing: {error.claim}", "claim_missing") from None
        except ClaimError as error:
            raise AuthError(*_claim_problem(error.claim)) from None
        self._check_times(claims)

    def _check_times(self, claims: dict[str, Any]) -> None:
        """`iat`, `exp` and `nbf` as times a real token has: finite numbers, and a lifetime
        (from `iat`, and from now) within jwt_max_lifetime_seconds. `iat=-1e30` passed the
        registry's checks (it is not in the future) and made no lifetime (issue 18)."""
        longest = self.settings.jwt_max_lifetime_seconds + self.settings.jwt_leeway_seconds
        now = time.time()
        for name in ("iat", "exp", "nbf"):
            value = claims.get(name)
            if value is None and name == "nbf":
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or abs(value - now) > _PLAUSIBLE_SECONDS
            ):
                raise AuthError(f"JWT {name} is not a plausible time", "claim_invalid")
        exp, iat = float(claims["exp"]), float(claims["iat"])
        if exp - now > longest or exp - iat > longest:
            raise AuthError(
                f"JWT lifetime exceeds {self.settings.jwt_max_lifetime_seconds} seconds",
                "lifetime_too_long",
            )


TENANT_CHARS = 200  # cds_feedback.tenant


def _tenant(claim: Any, issuer: IssuerConfig) -> str | None:
    """The caller's tenant; AuthError when the issuer lists its tenants and this is not one."""
    tenant = claim if isinstance(claim, str) and claim else None
    if issuer.tenants and tenant not in issuer.tenants:
        raise AuthError("JWT tenant is not one this issuer may send", "tenant_not_allowed")
    return tenant[:TENANT_CHARS] if tenant else None


def _claim_problem(claim: str) -> tuple[str, Refusal]:
    return {
        "aud": ("JWT aud is not this service's URL", "wrong_audience"),
        "iat": ("JWT iat is in the future or not a time", "claim_invalid"),
        "iss": ("JWT issuer is not trusted", "untrusted_issuer"),
        "jti": ("JWT jti must be a string", "claim_invalid"),
        "exp": ("JWT exp is not a time", "claim_invalid"),
    }.get(claim, (f"JWT claim {claim!r} is not valid", "claim_invalid"))


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise AuthError("Authorization header with a Bearer JWT is required", "missing_token")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("Authorization header must be 'Bearer <JWT>'", "missing_token")
    return token.strip()


def _unverified_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims before verification: only to choose the issuer and key."""
    try:
        obj = jws.extract_compact(token.encode("ascii"))
        header = obj.headers()
        claims = orjson.loads(obj.payload or b"")
    except (JoseError, UnicodeEncodeError, orjson.JSONDecodeError, ValueError, binascii.Error):
        header, claims = _lenient_parts(token)
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise AuthError("JWT is malformed", "malformed")
    return header, claims


def _lenient_parts(token: str) -> tuple[Any, Any]:
    """Read an `alg: none` token too, so that it is refused for its alg, not as malformed."""
    parts = token.split(".")
    if len(parts) != 3:
        raise AuthError("JWT is malformed", "malformed")
    try:
        header, claims = (
            orjson.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))) for p in parts[:2]
        )
    except (ValueError, binascii.Error, orjson.JSONDecodeError):
        raise AuthError("JWT is malformed", "malformed") from None
    return header, claims


def _key_location(issuer: IssuerConfig, jku: Any) -> tuple[str, bool]:
    """Where this token's keys are: the issuer's pinned set, or a jku listed for it.

    An issuer pinned by a file never causes a fetch: a listed jku is accepted and the file
    used. An issuer pinned by URL fetches its URL, or a jku that is listed for it.
    """
    pinned = (
        (str(issuer.jwks_file), True)
        if issuer.jwks_file is not None
        else (str(issuer.jwks_url), False)
    )
    if jku is None:
        return pinned
    if not isinstance(jku, str):
        raise AuthError("JWT jku must be a URL", "jku_not_allowed")
    listed = {normalise_base_url(url) for url in issuer.allowed_jku}
    if issuer.jwks_url:
        listed.add(issuer.jwks_url)
    if normalise_base_url(jku) not in listed:
        raise AuthError("JWT jku is not allowed for this issuer", "jku_not_allowed")
    if issuer.jwks_file is not None:
        return pinned
    return jku.strip(), False
