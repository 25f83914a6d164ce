"""FHIR date, dateTime and instant strings to aware datetimes (UTC when no zone is given)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any


def parse_fhir_datetime(value: Any) -> datetime | None:
    """A FHIR date/dateTime/instant ("2024", "2024-05", "2024-05-03", "2024-05-03T10:00:00Z")
    as an aware datetime; partial dates fall on their first day. None when it is not one."""
    if not isinstance(value, str) or len(value) < 4:
        return None
    try:
        if len(value) == 4:
            parsed = datetime(int(value), 1, 1)
        elif len(value) == 7:
            parsed = datetime(int(value[:4]), int(value[5:7]), 1)
        else:
            parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_fhir_date(value: Any) -> date | None:
    parsed = parse_fhir_datetime(value)
    return parsed.date() if parsed else None


def as_aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def age_in_years(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
