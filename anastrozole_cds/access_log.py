"""The access log without the SMART app's secrets (issue 18: it recorded them).

A launch and its callback carry secrets in their query (`code`, `state`, the EHR's `launch`
value), and a dashboard's path names its session handle (`/smart/app/<handle>`): with the
browser's cookie, which the log does not hold, a handle opens a session. So the access log
shows every query value as `[redacted]` except those that are not secret (`iss`, `error`),
and a session handle as `[handle]`, in the request line, the path, the query and the Referer.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

REDACTED = "[redacted]"
# Values that help an admin and hold no secret: the EHR's FHIR base, an OAuth error code.
SHOWN_PARAMETERS = frozenset({"iss", "error"})
_HANDLE = re.compile(r"(/smart/app/)[^/?#\s]+")


def redacted_query(query: str) -> str:
    """The query with every value but the shown ones replaced."""
    if not query:
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    return "&".join(
        f"{quote(name, safe='')}={quote(value, safe=':/') if name in SHOWN_PARAMETERS else REDACTED}"
        for name, value in pairs
    )


def redacted_target(target: str) -> str:
    """A request target or URL (path and query) as the access log may show it."""
    parts = urlsplit(target)
    path = _HANDLE.sub(r"\1[handle]", parts.path)
    return urlunsplit((parts.scheme, parts.netloc, path, redacted_query(parts.query), ""))


def redacted_atoms(atoms: dict[str, Any], environ: dict[str, Any]) -> dict[str, Any]:
    """gunicorn's access-log atoms (a fresh dict per request) with the request line, path,
    query and Referer redacted, and the raw forms should a log format name them."""
    atoms["r"] = (
        f"{environ.get('REQUEST_METHOD', '-')} {redacted_target(environ.get('RAW_URI', ''))} "
        f"{environ.get('SERVER_PROTOCOL', '-')}"
    )
    atoms["U"] = _HANDLE.sub(r"\1[handle]", environ.get("PATH_INFO") or "")
    atoms["q"] = redacted_query(environ.get("QUERY_STRING") or "")
    referer = environ.get("HTTP_REFERER")
    if referer:
        atoms["f"] = atoms["{referer}i"] = redacted_target(referer)
    for key in _RAW_FORMS:
        if key in atoms:
            atoms[key] = REDACTED
    return atoms


_RAW_FORMS = ("{raw_uri}e", "{query_string}e", "{path_info}e", "{request_uri}e")
