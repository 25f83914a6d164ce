"""The SMART App Launch 2.x app: launch.html, EHR and standalone launch, the dashboard.

`init_app(app, settings, store)` registers the blueprint; settings are the product's plus
`smartapp.config.SmartSettings` (ANASTROZOLE_CDS_SMART_*, or the TOML file's `[smart]`, which
this face reads: `load_settings`). `check_key_files` tries the key file and token keys first,
for `serve`'s start-up. See docs/smart-app.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from runtime.settings import ProductSettings
    from runtime.store import Store
    from smartapp.config import SmartSettings
    from smartapp.token_cipher import TokenCipher

__all__ = ["check_key_files", "init_app", "load_settings"]


def load_settings(settings: ProductSettings) -> SmartSettings:
    """The SMART app's settings: its ANASTROZOLE_CDS_SMART_* variables, then the product's
    `[smart]` table. SmartSettingsError, naming the setting, when one is wrong (an issuer on
    plain http too, unless its host is in the product's plain_http_hosts)."""
    from smartapp.config import SmartSettingsError, load_smart_settings, setting_name

    smart = load_smart_settings(settings.smart)
    for issuer in smart.allowed_issuers:  # the launch's FHIR base gets the EHR's token
        problem = settings.plain_http_problem(issuer)
        if problem:
            raise SmartSettingsError(f"{setting_name('allowed_issuers')}: {problem}")
    return smart


def check_key_files(settings: ProductSettings, smart: SmartSettings) -> None:
    """Raise SmartSettingsError, naming the setting, when the SMART app cannot start: its
    private key file or token keys cannot be used (the other settings are checked on load)."""
    from ehr.keys import KeyFileError, load_signing_key
    from smartapp.config import SmartSettingsError, setting_name
    from smartapp.token_cipher import TokenKeyError

    if smart.client_auth == "private_key_jwt" and smart.private_key_file:
        try:
            load_signing_key(smart.private_key_file)
        except KeyFileError as error:
            raise SmartSettingsError(f"{setting_name('private_key_file')}: {error}") from None
    try:
        _cipher_for(settings, smart)
    except TokenKeyError as error:  # "the token key ..." or "previous token key N ..."
        field = "previous_token_keys" if str(error).startswith("previous") else "token_key"
        raise SmartSettingsError(f"{setting_name(field)}: {error}") from None


def init_app(
    app: Flask,
    settings: ProductSettings,
    store: Store | None = None,
    *,
    smart_settings: SmartSettings | None = None,
) -> None:
    """Register the SMART app on `app`. Called again, it replaces the app's SMART settings
    (tests do this after `create_app`) without registering the blueprint twice."""
    # Imported here, not above: `anastrozole-cds keys` loads this package and needs none of
    # the app (importing it all took 2 s of every command's start).
    from ehr.client import ClientLimits
    from ehr.keys import load_signing_key
    from runtime.acknowledgements import CardEvidenceLog, patient_key_secret
    from runtime.card_settings import read_card_settings
    from smartapp.discovery import Discovery
    from smartapp.flow import SmartRuntime
    from smartapp.oauth import SmartOAuthClient
    from smartapp.tokens import TokenStore
    from smartapp.views import EXTENSION, blueprint

    smart = smart_settings or load_settings(settings)
    store = store or app.extensions.get("runtime.store") or _own_store(settings)
    signing_key = (
        load_signing_key(smart.private_key_file)
        if smart.client_auth == "private_key_jwt" and smart.private_key_file
        else None
    )
    cards = read_card_settings(settings.cards)
    acknowledgements = CardEvidenceLog(
        store, patient_key_secret(cards.patient_key, settings.instance_path), cards
    )
    app.extensions[EXTENSION] = SmartRuntime(
        product=settings,
        smart=smart,
        tokens=TokenStore(store.engine, _cipher_for(settings, smart)),
        discovery=Discovery(
            timeout_seconds=smart.http_timeout_seconds,
            cache_seconds=smart.discovery_cache_seconds,
        ),
        oauth=SmartOAuthClient(
            smart.client_id,
            signing_key=signing_key,
            timeout_seconds=smart.http_timeout_seconds,
        ),
        fhir_limits=ClientLimits(
            connect_timeout=settings.fhir_connect_timeout_seconds,
            read_timeout=max(settings.fhir_read_timeout_seconds, 5.0),
            max_pages=settings.fhir_max_pages,
            max_call_bytes=settings.fhir_max_bytes_per_call,
            max_workers=settings.fhir_max_parallel,
        ),
        clinical=settings.clinical_settings(),
        acknowledgements=acknowledgements,
    )
    if blueprint.name not in app.blueprints:
        app.register_blueprint(blueprint)


def _own_store(settings: ProductSettings) -> Store:
    """A store for an app that has none: an in-memory database is migrated here (nobody else
    can reach it); any other was migrated before start-up (runtime/schema.py)."""
    from runtime import schema
    from runtime.store import Store

    store = Store(settings.store_location())
    if store.in_memory:
        schema.upgrade(store.engine)
    return store


def _cipher_for(settings: ProductSettings, smart: SmartSettings) -> TokenCipher:
    """The cipher for the tokens at rest: the configured key, else the instance folder's."""
    from smartapp.token_cipher import KEY_FILE_NAME, TokenCipher

    return TokenCipher(
        smart.token_key.get_secret_value() if smart.token_key else None,
        [key.get_secret_value() for key in smart.previous_token_keys],
        key_file=settings.instance_path.resolve() / KEY_FILE_NAME,
    )
