"""FHIR URLs as they go on the wire, and as they are compared.

Search values are percent-encoded as form encoding does (`:` as `%3A`, `/` as `%2F`, `|` as
`%7C`), the way the official CDS Hooks sandbox sends them. Left as they are, the `//` of a
code system (`code=http://loinc.org|2243-4`) is collapsed to `/` by proxies that clean up
paths (smart-launcher-v2's FHIR proxy does it to the whole URL), and the search then answers
an empty 200: "none on record" where there were results.

Base URLs compare as RFC 3986 (6.2.2.1) says: scheme and host without case, port and path
exactly, surrounding space and a trailing slash ignored.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit, urlunsplit

# What form encoding would encode and a path clean-up can corrupt; the rest of a value (`,`,
# FHIR's OR separator, and any %XX already there) is left byte for byte, so that a value is
# never encoded twice and a server's own next link keeps its meaning under any decoder.
_ENCODED = {":": "%3A", "/": "%2F", "|": "%7C"}
_TO_ENCODE = re.compile("[:/|]")


def encode_value(value: str) -> str:
    """One search value with `:`, `/` and `|` percent-encoded."""
    return _TO_ENCODE.sub(lambda match: _ENCODED[match[0]], value)


def encode_search(url: str) -> str:
    """A relative or absolute read or search URL with `:`, `/` and `|` percent-encoded in
    its parameter values (`code=http%3A%2F%2Floinc.org%7C2243-4`). Names (`code:text`), the
    path, and everything else are left as they are; idempotent. Prefetch tokens such as
    `{{context.patientId}}` hold none of these characters and pass through unchanged."""
    head, mark, query = url.partition("?")
    if not mark or not _TO_ENCODE.search(query):
        return url
    parameters = []
    for parameter in query.split("&"):
        name, equals, value = parameter.partition("=")
        parameters.append(f"{name}{equals}{encode_value(value)}")
    return f"{head}?{'&'.join(parameters)}"


def canonical_base_url(url: str) -> str:
    """A base URL as compared and as used: no surrounding space or trailing slash, scheme and
    host in lower case (`HTTP://EHR.example/fhir/` is `http://ehr.example/fhir`)."""
    parts = urlsplit(url.strip())
    userinfo, at, host_and_port = parts.netloc.rpartition("@")
    netloc = f"{userinfo}{at}{host_and_port.lower()}"
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme.lower(), netloc, path, parts.query, parts.fragment))


def is_absolute_http_url(url: str) -> bool:
    """http or https (in any case), with a host."""
    parts = urlsplit(url.strip())
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


_DOT_SEGMENT = re.compile(r"(^|/)\.{1,2}(/|$)")


def is_under_base(url: str, base: str) -> bool:
    """Whether an absolute URL is the FHIR base `base` or below it: same scheme, host and port,
    and a path that starts with the base's path, with no `.` or `..` segment (encoded or not)
    that could climb out of it. A token for `https://ehr/fhir` is for `https://ehr/fhir/...`,
    not `https://ehr/admin` nor `https://ehr/fhir-other`."""
    parts = urlsplit(url)
    root = urlsplit(canonical_base_url(base))
    if (parts.scheme.lower(), parts.netloc.lower()) != (root.scheme, root.netloc.lower()):
        return False
    if _DOT_SEGMENT.search(unquote(parts.path)):
        return False
    return parts.path == root.path or parts.path.startswith(root.path + "/")


def origin_of(url: str) -> str:
    """`scheme://host:port` of a URL, as written."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
