"""SMART app settings: environment variables prefixed `ANASTROZOLE_CDS_SMART_`.

    ANASTROZOLE_CDS_SMART_ALLOWED_ISSUERS='["https://ehr.example.org/fhir/r4"]'
    ANASTROZOLE_CDS_SMART_CLIENT_ID=anastrozole-monitor
    ANASTROZOLE_CDS_SMART_CLIENT_AUTH=private_key_jwt
    ANASTROZOLE_CDS_SMART_PRIVATE_KEY_FILE=/etc/anastrozole-cds/smart-client-key.json

Lists are JSON. Every setting is described in docs/smart-app.md. The safe default is to
trust no EHR: with no allowed issuer every launch is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "ANASTROZOLE_CDS_SMART_"


def normalise_issuer(url: str) -> str:
    """A FHIR base URL as issuers are compared: no surrounding space, no trailing slash."""
    return url.strip().rstrip("/")


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _http_url(url: str, what: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{what} must be an absolute http(s) URL, got {url!r}")
    return normalise_issuer(url)


class SmartSettings(BaseSettings):
    """What an EHR admin sets to register the SMART app."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    # Which EHRs may launch the app: their FHIR base URLs (the `iss` of a launch).
    allowed_issuers: tuple[str, ...] = ()
    # Standalone launch without `iss` goes here (must be one of allowed_issuers).
    default_issuer: str | None = None

    # How the app is registered in the EHR.
    client_id: str = Field(default="anastrozole-cds", min_length=1)
    client_auth: Literal["public", "private_key_jwt"] = "public"
    private_key_file: Path | None = None  # from `anastrozole-cds keys generate`
    redirect_url: str | None = None  # default: {public_base_url or request host}/smart/callback

    # Browser and framing.
    cookie_secure: Literal["auto", "always", "never"] = "auto"
    frame_ancestors: tuple[str, ...] | None = None  # default: 'self' and the issuers' origins
    session_hours: float = Field(default=8.0, gt=0, le=24)
    # Seals the EHR's tokens in the database (a Fernet key). Default: one made on first use in
    # the instance folder. Keys replaced lately go in previous_token_keys until sessions end.
    token_key: SecretStr | None = None
    previous_token_keys: tuple[SecretStr, ...] = ()

    # Resources read besides the SMART scopes of the list, when the EHR grants them:
    # a DXA already ordered (ServiceRequest), medications the patient reports taking
    # (MedicationStatement), DXA images (ImagingStudy). Without them the page may call a DXA
    # due that is already ordered, where the CDS card (given them by prefetch) would not.
    extra_resources: tuple[
        Literal["MedicationStatement", "ServiceRequest", "ImagingStudy"], ...
    ] = ()

    # Talking to the EHR.
    http_timeout_seconds: float = Field(default=5.0, gt=0, le=30)
    fhir_deadline_seconds: float = Field(default=10.0, gt=0, le=60)
    discovery_cache_seconds: int = Field(default=300, ge=0)

    @field_validator("allowed_issuers")
    @classmethod
    def _issuers(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_http_url(value, "an allowed issuer") for value in values)

    @field_validator("default_issuer", "redirect_url")
    @classmethod
    def _optional_url(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value, "a URL setting")

    @model_validator(mode="after")
    def _check(self) -> SmartSettings:
        if self.default_issuer and self.default_issuer not in self.allowed_issuers:
            raise ValueError("default_issuer must be one of allowed_issuers")
        if self.client_auth == "private_key_jwt" and self.private_key_file is None:
            raise ValueError(
                "client_auth private_key_jwt needs private_key_file "
                "(make one with `anastrozole-cds keys generate`)"
            )
        return self

    def allows(self, iss: str) -> bool:
        return normalise_issuer(iss) in self.allowed_issuers

    def frame_ancestor_sources(self) -> tuple[str, ...]:
        """CSP frame-ancestors: who may show the app in an iframe."""
        if self.frame_ancestors is not None:
            return self.frame_ancestors or ("'none'",)
        origins = dict.fromkeys(origin_of(iss) for iss in self.allowed_issuers)
        return ("'self'", *origins)
