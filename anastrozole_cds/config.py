"""Product settings: defaults, an optional TOML file, then environment variables (strongest).

Environment variables are prefixed `ANASTROZOLE_CDS_` (`ANASTROZOLE_CDS_PUBLIC_BASE_URL`);
lists and tables are JSON (`ANASTROZOLE_CDS_ISSUERS='[{"iss": ...}]'`), and a table's keys
can also be set one by one with `__` (`ANASTROZOLE_CDS_CLINICAL__DEXA_INTERVAL=365`).
The TOML file is `--config PATH` or `ANASTROZOLE_CDS_CONFIG`. Every setting is described in
docs/cds-hooks.md.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from clinical.settings import Settings as ClinicalSettings

ENV_PREFIX = "ANASTROZOLE_CDS_"
CONFIG_ENV = f"{ENV_PREFIX}CONFIG"


def normalise_base_url(url: str) -> str:
    """A base URL without a trailing slash; FHIR and service URLs are compared this way."""
    return url.strip().rstrip("/")


def _absolute_http_url(url: str, what: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{what} must be an absolute http(s) URL, got {url!r}")
    return normalise_base_url(url)


class IssuerConfig(BaseModel):
    """One EHR that may call the service: its JWT issuer, its keys and its FHIR servers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    iss: str = Field(min_length=1)
    jwks_url: str | None = None
    jwks_file: Path | None = None
    allowed_jku: tuple[str, ...] = ()  # jku header values accepted besides jwks_url
    fhir_servers: tuple[str, ...] = ()  # fhirServer values this issuer may send a token for

    @model_validator(mode="after")
    def _one_key_source(self) -> IssuerConfig:
        if (self.jwks_url is None) == (self.jwks_file is None):
            raise ValueError(f"issuer {self.iss!r}: give exactly one of jwks_url and jwks_file")
        return self

    @field_validator("jwks_url")
    @classmethod
    def _jwks_url(cls, value: str | None) -> str | None:
        return None if value is None else _absolute_http_url(value, "jwks_url")

    @field_validator("fhir_servers", "allowed_jku")
    @classmethod
    def _urls(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_absolute_http_url(value, "a FHIR server or jku") for value in values)


class ProductSettings(BaseSettings):
    """Everything an EHR admin can set. Defaults are safe: JWTs are verified."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    # Where the service is, as EHRs see it: JWT `aud` and card links are built from it.
    public_base_url: str | None = None
    instance_path: Path = Path("instance")
    store_url: str | None = None  # default: SQLite file in instance_path

    # Trust
    issuers: tuple[IssuerConfig, ...] = ()
    allowed_fhir_servers: tuple[str, ...] = ()  # any trusted issuer may name these
    insecure_skip_jwt_verification: bool = False  # development only; logged loudly
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)
    jwt_max_lifetime_seconds: int = Field(default=3600, ge=60)
    jwks_cache_seconds: int = Field(default=3600, ge=0)
    discovery_requires_jwt: bool = False

    # Fetching from the EHR's FHIR server
    fhir_deadline_seconds: float = Field(default=2.5, gt=0, le=30)
    fhir_connect_timeout_seconds: float = Field(default=1.0, gt=0)
    fhir_read_timeout_seconds: float = Field(default=2.0, gt=0)
    fhir_max_pages: int = Field(default=5, ge=1)
    # 16: the 13 prefetch queries all go out at once, one FHIR round trip (docs/performance.md)
    fhir_max_parallel: int = Field(default=16, ge=1, le=32)

    # HTTP
    max_request_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    cors_allowed_origins: tuple[str, ...] = ("*",)

    # Cards
    product_label: str = "Anastrozole monitoring"
    smart_launch_url: str | None = None  # default: {public_base_url}/launch.html
    suggestion_intent: Literal["order", "proposal"] = "order"
    # {{today() - N days}} in prefetch templates: a CDS Hooks 3.0-ballot / Da Vinci CRD token that
    # 2.0 does not allow ("Prefetch tokens ... MUST contain only the qualified path to a hook
    # context field or one of the following user identifiers"); opt-in for clients that have it.
    prefetch_relative_dates: bool = False

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metrics_enabled: bool = True  # GET /metrics for Prometheus: counts only, no PHI in labels
    # Tests and sandboxes with dated synthetic patients only: judge as if it were this moment.
    evaluation_time: datetime | None = None

    # Thresholds and switched-off rules: keys of clinical.settings.Settings, durations in days.
    clinical: dict[str, Any] = Field(default_factory=dict)

    @field_validator("public_base_url", "smart_launch_url")
    @classmethod
    def _optional_url(cls, value: str | None) -> str | None:
        return None if value is None else _absolute_http_url(value, "a URL setting")

    @field_validator("evaluation_time")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @field_validator("allowed_fhir_servers")
    @classmethod
    def _fhir_servers(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_absolute_http_url(value, "a FHIR server") for value in values)

    @model_validator(mode="after")
    def _check(self) -> ProductSettings:
        names = [issuer.iss for issuer in self.issuers]
        if len(names) != len(set(names)):
            raise ValueError("an issuer is listed twice")
        self.clinical_settings()  # unknown or malformed clinical keys fail at start-up
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if settings_cls.model_config.get("toml_file"):
            sources.append(TomlConfigSettingsSource(settings_cls))
        return tuple(sources)

    # -- derived values ---------------------------------------------------------------------

    def now(self) -> datetime:
        """The moment findings are judged at: the clock, unless evaluation_time is set."""
        return self.evaluation_time or datetime.now(UTC)

    def clinical_settings(self) -> ClinicalSettings:
        overrides = dict(self.clinical)
        rules = overrides.get("disabled_rules")
        if isinstance(rules, str):  # from an environment variable: "a,b"
            overrides["disabled_rules"] = [
                name.strip() for name in rules.split(",") if name.strip()
            ]
        return ClinicalSettings().with_overrides(overrides)

    def store_location(self) -> str:
        if self.store_url:
            return self.store_url
        return f"sqlite:///{(self.instance_path.resolve() / 'anastrozole-cds.sqlite3').as_posix()}"

    def check_audience_base(self) -> None:
        """Raise ConfigError when JWTs would be checked with no public_base_url: `aud` would
        then be whatever Host header the caller sends, so a token minted for any other CDS
        service of a trusted EHR would pass here (CDS Hooks 2.0: `aud` "MUST be the URL of
        the CDS Service endpoint being invoked")."""
        if self.issuers and not self.insecure_skip_jwt_verification and not self.public_base_url:
            raise ConfigError(
                "public_base_url is not set: JWT aud is checked against it. Set it to the URL "
                "EHRs call this service at (e.g. https://cds.example.org)"
            )

    def issuer(self, iss: str) -> IssuerConfig | None:
        for issuer in self.issuers:
            if issuer.iss == iss:
                return issuer
        return None

    def fhir_servers_for(self, iss: str | None) -> frozenset[str]:
        """FHIR servers that a caller may send a token for (every listed one when unverified)."""
        allowed = set(self.allowed_fhir_servers)
        for issuer in self.issuers:
            if iss is None or issuer.iss == iss:
                allowed.update(issuer.fhir_servers)
        return frozenset(allowed)


class ConfigError(ValueError):
    """The configuration cannot be used; the message says why, without secrets."""


_EVERY_ADDRESS = ("", "0.0.0.0", "::", "[::]")  # a wildcard bind names no URL


def served_at(settings: ProductSettings, host: str, port: int) -> ProductSettings:
    """The settings of a server listening on host:port: without public_base_url, it is taken
    from that address (`serve` on 127.0.0.1:8080 is http://127.0.0.1:8080), unless the address
    is a wildcard, which names no URL."""
    if settings.public_base_url or host in _EVERY_ADDRESS:
        return settings
    netloc = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return settings.model_copy(update={"public_base_url": f"http://{netloc}:{port}"})


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> ProductSettings:
    """Settings from defaults, the TOML file (argument or ANASTROZOLE_CDS_CONFIG) and the
    environment; keyword overrides win over everything (tests use them)."""
    path = config_file or os.environ.get(CONFIG_ENV)
    try:
        if path:
            toml_path = Path(path)
            if not toml_path.is_file():
                raise ConfigError(f"configuration file not found: {toml_path}")

            class _FromFile(ProductSettings):
                model_config = SettingsConfigDict(toml_file=toml_path)

            return _FromFile(**overrides)
        return ProductSettings(**overrides)
    except ValueError as error:  # pydantic's ValidationError and tomllib's errors are ValueErrors
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(_describe(error)) from None


def _describe(error: ValueError) -> str:
    errors = getattr(error, "errors", None)
    if callable(errors):
        lines = []
        for item in errors(include_input=False, include_url=False):
            where = ".".join(str(part) for part in item.get("loc", ())) or "settings"
            lines.append(f"{where}: {item.get('msg')}")
        return "invalid configuration: " + "; ".join(lines)
    return f"invalid configuration: {error}"
