"""The CDS Hooks 2.0 service: discovery, patient-view and order hooks, feedback.

`init_app(app, settings, store)` registers the blueprint; see docs/cds-hooks.md.
"""

from cds_hooks.views import blueprint, init_app

__all__ = ["blueprint", "init_app"]
