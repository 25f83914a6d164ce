"""What the two faces run on, below them both: settings, the store (SQLite or PostgreSQL),
the plumbing of /metrics, and logging. Imports neither face (docs/architecture.md)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("anastrozole-cds")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"
