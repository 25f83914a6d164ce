"""SMART app settings: environment variables prefixed `ANASTROZOLE_CDS_SMART_`, or the
`[smart]` table of the product's TOML file (the environment wins).

    ANASTROZOLE_CDS_SMART_ALLOWED_ISSUERS='["https://ehr.example.org/fhir/r4"]'
    ANASTROZOLE_CDS_SMART_CLIENT_ID=anastrozole-monitor
    ANASTROZOLE_CDS_SMART_CLIENT_AUTH=private_key_jwt
    ANASTROZOLE_CDS_SMART_PRIVATE_KEY_FILE=/etc/anastrozole-cds/smart-client-key.json

Lists are JSON. Every setting is described in docs/smart-app.md. The safe default is to
trust no EHR: with no allowed issuer every launch is refused.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from ehr.urls import canonical_base_url, is_absolute_http_url

ENV_PREFIX = "ANASTROZOLE_CDS_SMART_"


def normalise_issuer(url: str) -> str:
    """A FHIR base URL as issuers are compared: no surrounding space, no trailing slash, the
    scheme and host in lower case (RFC 3986, 6.2.2.1: `HTTPS://EHR.example/fhir/` is
    `https://ehr.example/fhir`)."""
    return canonical_base_url(url)


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _http_url(url: str, what: str) -> str:
    if not is_absolute_http_url(url):
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
        Literal[
            "MedicationStatement",
            "ServiceRequest",
            "ImagingStudy",
            "MedicationAdministration",
            "List",
            "DocumentReference",
        ],
        ...,
    ] = ()

    # The refresh token the app asks for (SMART App Launch 2.x, "Scopes for requesting a
    # refresh token"): online_access, usable while the clinician is signed in to the EHR, fits
    # an app opened from the chart whose sessions end after session_hours; offline_access
    # (usable after sign-out) for EHRs that give refresh tokens only for it.
    refresh_scope: Literal["online_access", "offline_access"] = "online_access"

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
                f"client_auth private_key_jwt needs private_key_file "
                f"({setting_name('private_key_file')}; make one with `anastrozole-cds keys generate`)"
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


class SmartSettingsError(ValueError):
    """A SMART setting cannot be used; the message names it (its variable or `[smart]` key)."""


def setting_name(field: str) -> str:
    """A setting as the admin wrote it: its environment variable when set, else `[smart] field`."""
    variable = f"{ENV_PREFIX}{field}".upper()
    if any(name.upper() == variable for name in os.environ):
        return variable
    return f"[smart] {field}"


def load_smart_settings(table: Mapping[str, Any] | None = None) -> SmartSettings:
    """The SMART settings: ANASTROZOLE_CDS_SMART_* variables, then `table` (the TOML file's
    `[smart]`), then the defaults. SmartSettingsError, naming the setting, when one is wrong."""
    from_file = dict(table or {})

    class _WithFileTable(SmartSettings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return init_settings, env_settings, InitSettingsSource(settings_cls, from_file)

    try:
        return _WithFileTable()
    except SettingsError as error:  # a variable that is not JSON where JSON is needed
        field = re.search(r'field "(\w+)"', str(error))
        name = setting_name(field.group(1)) if field else f"an {ENV_PREFIX}* variable"
        raise SmartSettingsError(
            f"{name}: not a JSON list (write it as '[\"https://ehr.example.org/fhir\"]')"
        ) from None
    except ValidationError as error:
        raise SmartSettingsError(_describe(error)) from None


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors(include_input=False, include_url=False):
        location = item.get("loc", ())
        cause = item.get("ctx", {}).get("error")
        problem = str(cause) if cause is not None else item["msg"]
        if item["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(location[0]), SmartSettings.model_fields, n=1)
            problem = "unknown setting" + (f" (did you mean {close[0]}?)" if close else "")
        name = setting_name(str(location[0])) if location else "SMART settings"
        problems.append(f"{name}: {problem}")
    return "; ".join(problems)
