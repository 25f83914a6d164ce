"""The EHR's look (SMART `smart_style_url`), applied as a few CSS custom properties.

The token response names a JSON document of style parameters. The app fetches it on the
server, and only from the EHR the session belongs to (a token response must not make the
app call other hosts: SSRF), with no credentials, no redirects, a short timeout and a size
cap. Every value must match an allow-list (never escaped: refused), and a colour is used
only when text keeps WCAG AA contrast with it. The result is a tiny stylesheet, cached per
URL, that the page links after app.css. See docs/smart-app.md, "EHR styling".
"""

from __future__ import annotations

import colorsys
import ipaddress
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.auth import AuthBase

from smartapp.discovery import Discovery, DiscoveryError
from smartapp.tokens import SmartSession

log = logging.getLogger(__name__)

MAX_DOCUMENT_BYTES = 64 * 1024
CONNECT_TIMEOUT_SECONDS = 1.0
READ_TIMEOUT_SECONDS = 2.0
CACHE_SECONDS = 600.0
FAILURE_CACHE_SECONDS = 60.0  # a style server that is down does not slow every page
CACHE_ENTRIES = 256
CSS_HEADER = "/* The EHR's style, checked value by value (smartapp/ehr_style.py). */\n"
MIN_CONTRAST = 4.5  # WCAG 2.x AA, normal text
MIN_FONT_PX, MAX_FONT_PX = 12.0, 24.0  # readable, and the page still fits its iframe

# The style keys of SMART App Launch 2.x and what each holds.
STYLE_KINDS = {
    "color_background": "color",
    "color_error": "color",
    "color_highlight": "color",
    "color_modal_backdrop": "color",  # the page has no modal: checked, not used
    "color_success": "color",
    "color_text": "color",
    "dim_border_radius": "dimension",
    "dim_font_size": "dimension",
    "dim_spacing_size": "dimension",  # the page's spacing is fixed: checked, not used
    "font_family_body": "font",
    "font_family_heading": "font",
}
# Accent colours and the app's variables they set: each carries white text (header, badges)
# or is text on the white panels.
ACCENTS = {
    "color_highlight": ("--brand", "--info"),
    "color_error": ("--critical",),
    "color_success": ("--ok",),
}
# app.css defaults that EHR colours are checked against.
WHITE = "#ffffff"
DEFAULT_INK = "#111827"
DEFAULT_CANVAS = "#f3f5f8"
MUTED = "#4b5563"  # secondary text, on the canvas too (the footer)

_COLOR = re.compile(
    r"#(?:[0-9a-f]{3,4}|[0-9a-f]{6}|[0-9a-f]{8})"
    r"|(?:rgba?|hsla?)\([0-9., %]{1,60}\)"
    r"|[a-z]{1,30}",
    re.IGNORECASE | re.ASCII,
)
_DIMENSION = re.compile(r"(\d{1,4}(?:\.\d{1,4})?|\.\d{1,4})(px|em|rem|%)", re.ASCII)
_FONT_NAME = r"\s*(?:'[A-Za-z0-9 -]+'|\"[A-Za-z0-9 -]+\"|[A-Za-z0-9 -]+)\s*"
_FONT_LIST = re.compile(rf"{_FONT_NAME}(?:,{_FONT_NAME})*", re.ASCII)
_FONT_REFUSED = (";", "{", "}", "\\", "<", "(", "/", "url", "expression")


# -- values ----------------------------------------------------------------------------------------


def clean_value(key: str, value: Any) -> str | None:
    """The value if it is a safe CSS value of its key's kind, else None. Allow-lists only."""
    kind = STYLE_KINDS.get(key)
    if kind is None or not isinstance(value, str):
        return None
    value = value.strip()
    if kind == "color":
        return value if _COLOR.fullmatch(value) else None
    if kind == "dimension":
        return value if _DIMENSION.fullmatch(value) else None
    value = value.removesuffix(";").strip()  # the SMART example ends a font list with one
    if len(value) > 300 or any(part in value.lower() for part in _FONT_REFUSED):
        return None
    return value if _FONT_LIST.fullmatch(value) else None


def clean_style(document: Any) -> dict[str, str]:
    """The known keys whose values pass; unknown keys and invalid values are left out."""
    if not isinstance(document, dict):
        return {}
    cleaned = {key: clean_value(key, value) for key, value in document.items()}
    return {key: value for key, value in cleaned.items() if value is not None}


def _channels(color: str) -> tuple[float, float, float] | None:
    """sRGB channels 0-1 of an opaque hex, rgb() or hsl() colour; None for a keyword or a
    translucent colour, whose contrast depends on what is under it."""
    if color.startswith("#"):
        digits = color[1:]
        if len(digits) in (3, 4):
            digits = "".join(digit * 2 for digit in digits)
        values = [int(digits[i : i + 2], 16) / 255 for i in range(0, len(digits), 2)]
    elif "(" in color:
        function, _, arguments = color.lower().partition("(")
        try:
            parts = [_number(part) for part in arguments.rstrip(")").split(",")]
        except ValueError:
            return None
        if len(parts) not in (3, 4):
            return None
        rgb: tuple[float, ...]
        if function.startswith("hsl"):
            hue, saturation, lightness = parts[0][0] / 360 % 1, parts[1][0], parts[2][0]
            rgb = colorsys.hls_to_rgb(hue, lightness, saturation)
        else:
            rgb = tuple(value if percent else value / 255 for value, percent in parts[:3])
        values = [*rgb, *(value for value, _ in parts[3:])]
    else:
        return None
    if len(values) == 4 and values[3] < 1:
        return None
    if not all(0 <= value <= 1 for value in values[:3]):
        return None
    return values[0], values[1], values[2]


def _number(text: str) -> tuple[float, bool]:
    """`50%` -> (0.5, True); `0.5` -> (0.5, False). ValueError when it is no number."""
    text = text.strip()
    if text.endswith("%"):
        return float(text[:-1]) / 100, True
    return float(text), False


def _luminance(rgb: tuple[float, float, float]) -> float:
    """WCAG 2.x relative luminance."""
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def readable(color: str, *others: str) -> bool:
    """Whether `color` has WCAG AA contrast with each of `others` (False if not computable)."""
    mine = _channels(color)
    if mine is None:
        return False
    for other in others:
        theirs = _channels(other)
        if theirs is None:
            return False
        light, dark = sorted((_luminance(mine), _luminance(theirs)), reverse=True)
        if (light + 0.05) / (dark + 0.05) < MIN_CONTRAST:
            return False
    return True


def _font_px(size: str) -> float:
    number, unit = _DIMENSION.fullmatch(size).groups()  # type: ignore[union-attr]
    return float(number) * {"px": 1.0, "em": 16.0, "rem": 16.0, "%": 0.16}[unit]


def style_css(style: dict[str, str]) -> str:
    """The stylesheet for cleaned style values: overrides of app.css, or "" for none."""
    properties: dict[str, str] = {}
    text, background = style.get("color_text"), style.get("color_background")
    # Text lands on the white panels, the canvas and the EHR's background; the background
    # carries the text in effect and the muted text. Colours are used, never invented.
    if text and readable(text, WHITE, DEFAULT_CANVAS, *([background] if background else [])):
        properties["--ink"] = text
    ink = properties.get("--ink", DEFAULT_INK)
    if background and readable(background, ink, MUTED):
        properties["--canvas"] = background
    for key, variables in ACCENTS.items():
        accent = style.get(key)
        if accent and readable(accent, WHITE):
            properties.update(dict.fromkeys(variables, accent))
    if "dim_border_radius" in style:
        properties["--radius"] = style["dim_border_radius"]
    font_size = style.get("dim_font_size")
    if font_size and MIN_FONT_PX <= _font_px(font_size) <= MAX_FONT_PX:
        properties["font-size"] = font_size
    rules = []
    if properties:
        lines = "".join(f"  {name}: {value};\n" for name, value in properties.items())
        rules.append(f":root {{\n{lines}}}\n")
    if "font_family_body" in style:
        rules.append(f"body {{ font-family: {style['font_family_body']}; }}\n")
    if "font_family_heading" in style:
        rules.append(f"h1, h2, h3 {{ font-family: {style['font_family_heading']}; }}\n")
    if not rules:
        return ""
    return CSS_HEADER + "".join(rules)


# -- where the document may come from --------------------------------------------------------------


def _host(url: str) -> tuple[str, int] | None:
    """(host, port) of an http(s) URL without credentials in it; None otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.username is not None or parts.password is not None:
        return None  # requests would send them as Basic credentials
    return parts.hostname.lower(), port


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def may_fetch(url: str, ehr_urls: Iterable[str]) -> bool:
    """https (or http to a loopback host, as in the sandbox) on the host and port of one of
    the EHR's own URLs. `ehr_urls` is read lazily: it stops at the first match."""
    host = _host(url)
    if host is None or (urlsplit(url).scheme == "http" and not _loopback(host[0])):
        return False
    return any(_host(known) == host for known in ehr_urls)


def ehr_urls(session: SmartSession, discovery: Discovery) -> Iterator[str]:
    """The URLs the app knows for the session's EHR: its FHIR base, its token endpoint, and
    (only asked for when those do not match) its authorization endpoint."""
    yield session.iss
    yield session.token_endpoint
    try:
        yield discovery.configuration(session.iss).authorization_endpoint
    except DiscoveryError:
        return


def without_query(url: str) -> str:
    """A URL as it may be logged: no credentials, query or fragment."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{netloc}{parts.path}"


# -- fetching and caching --------------------------------------------------------------------------


class _NoCredentials(AuthBase):
    """Sends the request without Authorization or Cookie, whatever the session or a .netrc
    holds: the style server gets nothing of the user's."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers.pop("Authorization", None)
        request.headers.pop("Cookie", None)
        return request


class FetchFailed(Exception):
    """The style document could not be used; `reason` is safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EhrStyles:
    """Style documents fetched and turned into CSS, cached per URL. One per app; thread-safe
    (two threads may fetch the same URL at once; both get the same answer)."""

    def __init__(
        self,
        *,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = CACHE_ENTRIES,
    ) -> None:
        self.session = session or requests.Session()
        self.clock = clock
        self.max_entries = max_entries
        self._cache: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._lock = threading.Lock()

    def css(self, url: str, ehr_urls: Iterable[str]) -> str:
        """The CSS for the document at `url`, or "" when it is not allowed or not usable."""
        if not may_fetch(url, ehr_urls):
            log.warning("EHR style not fetched: %s is not the EHR's host", without_query(url))
            return ""
        now = self.clock()
        with self._lock:
            cached = self._cache.get(url)
            if cached and cached[0] > now:
                self._cache.move_to_end(url)
                return cached[1]
        try:
            css, lifetime = style_css(clean_style(self._fetch(url))), CACHE_SECONDS
        except FetchFailed as failure:
            log.warning("EHR style not used (%s): %s", failure.reason, without_query(url))
            css, lifetime = "", FAILURE_CACHE_SECONDS
        with self._lock:
            self._cache[url] = (now + lifetime, css)
            self._cache.move_to_end(url)
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
        return css

    def _fetch(self, url: str) -> Any:
        deadline = self.clock() + CONNECT_TIMEOUT_SECONDS + READ_TIMEOUT_SECONDS
        try:
            with self.session.get(
                url,
                headers={"Accept": "application/json"},
                timeout=(CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS),
                allow_redirects=False,
                stream=True,
                auth=_NoCredentials(),
            ) as response:
                if response.status_code != 200:  # a redirect too: it is not followed
                    raise FetchFailed(f"HTTP {response.status_code}")
                if int(response.headers.get("Content-Length") or 0) > MAX_DOCUMENT_BYTES:
                    raise FetchFailed("too large")
                body = b""
                for chunk in response.iter_content(chunk_size=8192):
                    body += chunk
                    if len(body) > MAX_DOCUMENT_BYTES:
                        raise FetchFailed("too large")
                    if self.clock() > deadline:  # a server that answers drop by drop
                        raise FetchFailed("too slow")
        except requests.Timeout:
            raise FetchFailed("no answer in time") from None
        except requests.RequestException as error:
            raise FetchFailed(type(error).__name__) from None
        except ValueError:  # a malformed Content-Length
            raise FetchFailed("malformed response") from None
        try:
            document = json.loads(body)
        except ValueError:
            raise FetchFailed("not JSON") from None
        if not isinstance(document, dict):
            raise FetchFailed("not a JSON object")
        return document
