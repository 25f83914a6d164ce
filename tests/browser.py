"""Headless Chromium from Debian's package, as every browser test here starts it (never a
browser downloaded by a test tool: the machine has no internet)."""

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
