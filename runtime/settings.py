"""Product settings: defaults, an optional TOML file, then environment variables (strongest).

Environment variables are prefixed `ANASTROZOLE_CDS_` (`ANASTROZOLE_CDS_PUBLIC_BASE_URL`);
lists and tables are JSON (`ANASTROZOLE_CDS_ISSUERS='[{"iss": ...}]'`), and a table's keys
can also be set one by one with `__` (`ANASTROZOLE_CDS_CLINICAL__DEXA_INTERVAL=365`,
`ANASTROZOLE_CDS_CLINICAL__DISABLED_RULES='["dexa-due"]'`).
The TOML file is `--config PATH` or `ANASTROZOLE_CDS_CONFIG`; its `[smart]` table holds the
SMART app's settings, which that face reads and checks (smartapp/config.py). Every setting is
described in docs/cds-hooks.md.
"""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import fields
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

from clinical.rules import RULE_IDS
from clinical.settings import Settings as ClinicalSettings
from ehr.urls import canonical_base_url
from runtime.card_settings import CardSettingError, read_card_settings

ENV_PREFIX = "ANASTROZOLE_CDS_"
CONFIG_ENV = f"{ENV_PREFIX}CONFIG"


def normalise_base_url(url: str) -> str:
    """A base URL without surrounding space or a trailing slash, its scheme and host in lower
    case (RFC 3986, 6.2.2.1); FHIR, service and key set URLs are compared this way."""
    return canonical_base_url(url)


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
    # The JWT `tenant` claims (CDS Hooks 2.0: the organisation calling) this issuer may send;
    # when listed, a token with another tenant, or none, is refused. Feedback is stored, and
    # calls are counted in /metrics, by tenant.
    tenants: tuple[str, ...] = ()

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
    # `serve` upgrades the schema before its workers start; off: it refuses to start until
    # `anastrozole-cds db upgrade` has been run (docs/operations.md, "The schema").
    store_upgrade_on_start: bool = True

    # Trust
    issuers: tuple[IssuerConfig, ...] = ()
    # Hosts that FHIR servers, JWKS and SMART issuers may be reached on over plain http
    # (development only: a token or key set sent in clear can be read or changed on the way).
    # Loopback never leaves the machine; every other host needs https.
    plain_http_hosts: tuple[str, ...] = ("127.0.0.1", "::1", "localhost")
    allowed_fhir_servers: tuple[str, ...] = ()  # any trusted issuer may name these
    insecure_skip_jwt_verification: bool = False  # development only; logged loudly
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)
    jwt_max_lifetime_seconds: int = Field(default=3600, ge=60)
    jwks_cache_seconds: int = Field(default=3600, ge=0)
    # A JWKS URL that failed is not fetched again for this long: calls are refused at once
    # meanwhile, instead of each fetching it (and waiting) again.
    jwks_failure_cache_seconds: float = Field(default=30.0, ge=0, le=3600)
    discovery_requires_jwt: bool = False

    # Fetching from the EHR's FHIR server
    fhir_deadline_seconds: float = Field(default=2.5, gt=0, le=30)
    fhir_connect_timeout_seconds: float = Field(default=1.0, gt=0)
    fhir_read_timeout_seconds: float = Field(default=2.0, gt=0)
    fhir_max_pages: int = Field(default=5, ge=1)
    # All that one call (or one SMART page) reads from the FHIR server: past it the queries
    # stop and the data is marked incomplete on the cards (a server sending 15 MB pages took
    # a worker from 74 MB to 740 MB for one call).
    fhir_max_bytes_per_call: int = Field(default=8 * 1024 * 1024, ge=64 * 1024)
    # 24: the 20 prefetch queries all go out at once, one FHIR round trip (docs/performance.md)
    fhir_max_parallel: int = Field(default=24, ge=1, le=32)

    # HTTP
    max_request_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    # `serve`: a request (head and body) must have arrived within this time (else 408), and a
    # worker holds at most this many bytes of requests still arriving (else 503): a slow
    # client costs a socket, never a thread (docs/operations.md, "The front").
    request_read_seconds: float = Field(default=10.0, gt=0, le=300)
    request_buffer_bytes: int = Field(default=64 * 1024 * 1024, ge=1024 * 1024)
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
    # The SMART app's settings from the TOML file, as written: the SMART app reads and checks
    # them (its ANASTROZOLE_CDS_SMART_* variables win).
    smart: dict[str, Any] = Field(default_factory=dict)
    # Which cards each hook shows and how long an answered card stays away
    # (runtime/card_settings.py; docs/cds-hooks.md, "Alert burden").
    cards: dict[str, Any] = Field(default_factory=dict)

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
        for name, url in self._urls_reached():
            problem = self.plain_http_problem(url)
            if problem:
                raise SettingError(name, problem)
        self.clinical_settings()  # unknown or malformed clinical keys fail at start-up
        try:
            read_card_settings(self.cards)
        except CardSettingError as error:
            raise SettingError(error.name, error.problem) from None
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

    def _urls_reached(self) -> list[tuple[str, str]]:
        """The URLs the service sends tokens to or takes keys from, by setting name."""
        urls = [("allowed_fhir_servers", url) for url in self.allowed_fhir_servers]
        for n, issuer in enumerate(self.issuers):
            urls += [(f"issuers.{n}.fhir_servers", url) for url in issuer.fhir_servers]
            urls += [(f"issuers.{n}.allowed_jku", url) for url in issuer.allowed_jku]
            if issuer.jwks_url:
                urls.append((f"issuers.{n}.jwks_url", issuer.jwks_url))
        return urls

    def plain_http_problem(self, url: str) -> str | None:
        """Why `url` may not be used: plain http to a host not in plain_http_hosts."""
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower()
        if parts.scheme.lower() != "http" or host in {h.lower() for h in self.plain_http_hosts}:
            return None
        return (
            f"{url} is plain http: use https, or add {host} to plain_http_hosts "
            "(development only: tokens would cross the network in clear)"
        )

    # -- derived values ---------------------------------------------------------------------

    def now(self) -> datetime:
        """The moment findings are judged at: the clock, unless evaluation_time is set."""
        return self.evaluation_time or datetime.now(UTC)

    def clinical_settings(self) -> ClinicalSettings:
        """The `[clinical]` table over the defaults; SettingError names a key that is wrong."""
        settings = ClinicalSettings()
        known = [f.name for f in fields(settings)]
        for key, value in self.clinical.items():
            name = f"clinical.{key}"
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise SettingError(name, f"unknown clinical setting{hint}")
            if isinstance(value, str) and value.lstrip().startswith("["):
                value = _json_list(name, value)  # a list from an environment variable
            if key == "disabled_rules":
                value = _rule_ids(name, value)
            try:
                settings = settings.with_overrides({key: value})
            except (ValueError, TypeError) as error:
                raise SettingError(name, f"cannot use {value!r}: {error}") from None
        return settings

    def check_issuer_key_files(self) -> None:
        """Raise ConfigError when an issuer's jwks_file is missing or not a JWKS: every call of
        that EHR would be refused, and the 401 does not name the file."""
        for issuer in self.issuers:
            if issuer.jwks_file is None:
                continue
            where = f"issuer {issuer.iss!r}: jwks_file {issuer.jwks_file}"
            try:
                document = json.loads(issuer.jwks_file.read_bytes())
            except FileNotFoundError:
                raise ConfigError(f"{where} does not exist") from None
            except OSError as error:
                raise ConfigError(f"{where} cannot be read ({error.strerror})") from None
            except ValueError:
                raise ConfigError(f"{where} is not JSON") from None
            if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
                raise ConfigError(f'{where} is not a JWKS (a JSON object with a "keys" list)')

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


class SettingError(ValueError):
    """One setting is wrong; `name` is its dotted name (`clinical.dexa_interval`)."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem


def _json_list(name: str, value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        raise SettingError(name, f"not a JSON list: {value!r}") from None


def _rule_ids(name: str, value: Any) -> list[str]:
    """Rule ids to switch off: a list, or from an environment variable "a, b"."""
    if isinstance(value, str):
        value = [rule.strip() for rule in value.split(",") if rule.strip()]
    if not isinstance(value, list) or not all(isinstance(rule, str) for rule in value):
        raise SettingError(name, 'must be a list of rule ids, e.g. ["dexa-due"]')
    unknown = [rule for rule in value if rule not in RULE_IDS]
    if unknown:
        raise SettingError(
            name,
            f"unknown rule id {', '.join(map(repr, unknown))}; the rule ids are: "
            + ", ".join(RULE_IDS),
        )
    return value


_EVERY_ADDRESS = ("", "0.0.0.0", "::", "[::]")  # a wildcard bind names no URL


def served_at(settings: ProductSettings, host: str, port: int) -> ProductSettings:
    """The settings of a server listening on host:port: without public_base_url, it is taken
    from that address (`serve` on 127.0.0.1:8080 is http://127.0.0.1:8080), unless the address
    is a wildcard, which names no URL."""
    if settings.public_base_url or host in _EVERY_ADDRESS:
        return settings
    netloc = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return settings.model_copy(update={"public_base_url": f"http://{netloc}:{port}"})


def read_settings(
    config_file: Path | str | None = None,
    *,
    face_tables: Mapping[str, Iterable[str]] | None = None,
    **overrides: Any,
) -> ProductSettings:
    """Settings from defaults, the TOML file (argument or ANASTROZOLE_CDS_CONFIG) and the
    environment; keyword overrides win over everything (tests use them). `face_tables`: the
    tables a face reads itself (`smart`) and their keys, so that a key of one written at the
    top level is named as belonging there. The faces check their own tables."""
    path = config_file or os.environ.get(CONFIG_ENV)
    toml_path = Path(path) if path else None
    try:
        if toml_path is not None:
            if not toml_path.is_file():
                raise ConfigError(f"configuration file not found: {toml_path}")

            class _FromFile(ProductSettings):
                model_config = SettingsConfigDict(toml_file=toml_path)

            return _FromFile(**overrides)
        return ProductSettings(**overrides)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(
            f"invalid configuration: {toml_path} is not valid TOML: {error}"
        ) from None
    except ValueError as error:  # pydantic's ValidationError is a ValueError
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(_describe(error, toml_path, face_tables or {})) from None


def _describe(
    error: ValueError, toml_path: Path | None, face_tables: Mapping[str, Iterable[str]]
) -> str:
    """One clause per wrong setting: its name, where it was set, and what is wrong."""
    errors = getattr(error, "errors", None)
    if not callable(errors):
        return f"invalid configuration: {error}"
    lines = []
    for item in errors(include_input=False, include_url=False):
        location = [str(part) for part in item.get("loc", ())]
        cause = item.get("ctx", {}).get("error")
        if isinstance(cause, SettingError):
            name, problem = cause.name, cause.problem
        elif location:
            name, problem = ".".join(location), str(cause) if cause else item["msg"]
        else:  # a whole-settings check; a SMART setting's message names it already
            lines.append(str(cause) if cause else item["msg"])
            continue
        if item["type"] == "extra_forbidden":
            problem = _unknown_setting(location, face_tables)
        lines.append(f"{name}{_set_in(name, toml_path)}: {problem}")
    return "invalid configuration: " + "; ".join(lines)


def _set_in(name: str, toml_path: Path | None) -> str:
    """Where a setting came from: its environment variable (the strongest), else the file.
    `clinical.dexa_interval` is ANASTROZOLE_CDS_CLINICAL__DEXA_INTERVAL or the whole table's."""
    variables = {
        f"{ENV_PREFIX}{name.replace('.', '__')}".upper(),
        f"{ENV_PREFIX}{name.split('.')[0]}".upper(),
    }
    for variable in os.environ:
        if variable.upper() in variables:
            return f" (environment variable {variable})"
    return f" (in {toml_path})" if toml_path else ""


def _unknown_setting(location: list[str], face_tables: Mapping[str, Iterable[str]]) -> str:
    key = location[-1]
    if len(location) == 1:
        if key in {f.name for f in fields(ClinicalSettings)}:
            return "unknown setting: it belongs in the [clinical] table"
        for table, keys in face_tables.items():
            if key in keys:
                return f"unknown setting: it belongs in the [{table}] table"
        known = list(ProductSettings.model_fields)
    else:
        known = list(IssuerConfig.model_fields) if location[0] == "issuers" else []
    close = difflib.get_close_matches(key, known, n=1)
    return "unknown setting" + (f" (did you mean {close[0]}?)" if close else "")
