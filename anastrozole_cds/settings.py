"""The product's settings, checked whole: what `runtime.settings` reads, and each face's own
table (the SMART app's `[smart]`), so that a mistake anywhere stops start-up with one line
naming the setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import smartapp
from runtime.settings import ConfigError, ProductSettings, read_settings
from smartapp.config import SmartSettings, SmartSettingsError

# The tables a face reads itself, and their keys (to name one written at the top level).
FACE_TABLES = {"smart": tuple(SmartSettings.model_fields)}


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> ProductSettings:
    """Settings from defaults, the TOML file (argument or ANASTROZOLE_CDS_CONFIG) and the
    environment, keyword overrides over everything; ConfigError naming a wrong setting."""
    settings = read_settings(config_file, face_tables=FACE_TABLES, **overrides)
    check_faces(settings)
    return settings


def check_faces(settings: ProductSettings, *, key_files: bool = False) -> None:
    """ConfigError when a face cannot use its settings; with `key_files`, the files they
    name are opened too (the SMART app's private key and token keys: `serve` checks them
    once before the workers start)."""
    try:
        smart = smartapp.load_settings(settings)
        if key_files:
            smartapp.check_key_files(settings, smart)
    except SmartSettingsError as error:
        raise ConfigError(f"invalid configuration: {error}") from None


__all__ = ["ConfigError", "ProductSettings", "check_faces", "load_settings"]
