"""The CDS Hooks test fixtures (keys, settings, app, client), shared with this folder."""

from tests.cds_hooks.conftest import app, client, keys, make_settings

__all__ = ["app", "client", "keys", "make_settings"]
