"""FHIR date, dateTime and instant strings to aware datetimes (UTC when no zone is given)."""

from __future__ import annotations

from calendar import monthrange
from datetime import UTC, date, datetime, time
from typing import Any

# A month and a year as their mean calendar lengths (Gregorian: 365.25 days a year, a twelfth of
# it a month), wherever a span is counted in months or a FHIR Timing's period is in mo or a.
DAYS_PER_YEAR = 365.25
DAYS_PER_MONTH = DAYS_PER_YEAR / 12  # 30.4375

# Before this year a date is a placeholder ("0001-01-01" for "no date"), not a date of care;
# read as absent, it also keeps date arithmetic (start - a window) in range.
_EARLIEST_YEAR = 1850


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
    if parsed.year < _EARLIEST_YEAR:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_fhir_period_end(value: Any) -> datetime | None:
    """The end of a FHIR Period: a date or partial date is the whole day, month or year, so
    it ends at that span's last instant ("2025-06" ends on 30 June, not 1 June). A dateTime
    is its own instant."""
    start = parse_fhir_datetime(value)
    if start is None or len(value) > 10:
        return start
    if len(value) == 4:
        last_day = date(start.year, 12, 31)
    elif len(value) == 7:
        last_day = date(start.year, start.month, monthrange(start.year, start.month)[1])
    else:
        last_day = start.date()
    return datetime.combine(last_day, time.max, tzinfo=UTC)


def parse_fhir_date(value: Any) -> date | None:
    parsed = parse_fhir_datetime(value)
    return parsed.date() if parsed else None


def as_aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def age_in_years(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
