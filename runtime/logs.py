"""Logging for every part of the product: one stderr handler with secrets redacted, and the
product's loggers at the configured level. Logger names are the module names
(`cds_hooks.views`, `smartapp.flow`, ...), listed in docs/architecture.md."""

from __future__ import annotations

import logging
import re
import sys

# The top-level packages whose loggers take the configured level.
PRODUCT_LOGGERS = (
    "anastrozole_cds",
    "runtime",
    "cds_hooks",
    "smartapp",
    "sandbox",
    "ehr",
    "clinical",
)

_SECRETS = (
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9\-._~+/]{8,}=*"), r"\1[redacted]"),
    (re.compile(r"eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*"), "[redacted-jwt]"),
    (re.compile(r"(?i)(access_token[\"']?\s*[:=]\s*[\"']?)[^\"'\s,}]+"), r"\1[redacted]"),
    # Fernet keys (the SMART app's token_key): 32 bytes, URL-safe base64 with its one "="
    (re.compile(r"(?<![\w-])[A-Za-z0-9_\-]{43}=(?![\w=-])"), "[redacted-key]"),
)


class RedactSecrets(logging.Filter):
    """A last line of defence: bearer tokens and JWTs never reach a log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = message
        for pattern, replacement in _SECRETS:
            redacted = pattern.sub(replacement, redacted)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def configure_logging(level: str = "INFO") -> None:
    """A stderr handler on the root logger, with secrets redacted, unless logging is already
    set up (by an embedding server or a test runner); product loggers at `level`."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.addFilter(RedactSecrets())
        root.addHandler(handler)
    for name in PRODUCT_LOGGERS:
        logging.getLogger(name).setLevel(level)
    # urllib3 logs every URL it requests at DEBUG, and FHIR query strings name the patient
    logging.getLogger("urllib3").setLevel(logging.WARNING)
