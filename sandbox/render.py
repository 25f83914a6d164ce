"""How `check` shows an answer: cards as a rich table, a request with its token masked."""

from __future__ import annotations

import copy
from typing import Any

from rich.table import Table

_STYLES = {"critical": "bold red", "warning": "yellow", "info": "cyan"}
_ORDER = {"critical": 0, "warning": 1, "info": 2}


def cards_table(cards: list[dict[str, Any]], *, title: str) -> Table:
    """One row per card, most severe first: indicator, summary, rule id, suggestions."""
    table = Table(title=title, show_lines=False, caption=f"{len(cards)} card(s)")
    table.add_column("Indicator")
    table.add_column("Summary")
    table.add_column("Rule")
    table.add_column("Suggestions")
    ordered = sorted(cards, key=lambda card: _ORDER.get(str(card.get("indicator")), 3))
    for card in ordered:
        indicator = str(card.get("indicator", ""))
        topic = ((card.get("source") or {}).get("topic") or {}).get("code", "")
        suggestions = "; ".join(str(s.get("label", "")) for s in card.get("suggestions") or [])
        table.add_row(
            f"[{_STYLES.get(indicator, '')}]{indicator}",
            str(card.get("summary", "")),
            str(topic),
            suggestions or "-",
        )
    return table


def masked_request(body: dict[str, Any]) -> dict[str, Any]:
    """The request body as it may be shown: the FHIR access token replaced."""
    shown = copy.deepcopy(body)
    authorization = shown.get("fhirAuthorization")
    if isinstance(authorization, dict) and "access_token" in authorization:
        authorization["access_token"] = "***"
    return shown
