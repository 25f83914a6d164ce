"""The product's top: the app factory that composes both faces, the command line, and
population runs over Bulk Data exports (docs/architecture.md)."""

from runtime import __version__

__all__ = ["__version__"]
