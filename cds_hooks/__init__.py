"""The CDS Hooks 2.0 service: discovery, patient-view and order hooks, feedback.

`init_app(app, settings, store)` registers the blueprint; see docs/cds-hooks.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

    from runtime.settings import ProductSettings
    from runtime.store import Store

__all__ = ["init_app"]


def init_app(app: Flask, settings: ProductSettings, store: Store, **options: Any) -> None:
    """Register the CDS Hooks blueprint and what its views need (`cds_hooks.views.init_app`).
    Imported here, not above: the command line loads this package without the web app."""
    from cds_hooks.views import init_app as register

    register(app, settings, store, **options)
