"""The product: app factory, settings and command line over the clinical core."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("anastrozole-cds")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"
