"""Weekly dose in mg from a FHIR R4 Dosage list: the structured fields first, then the free text.

Pure and never raising: whatever is not understood is left out, and the Dose says what is known.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, NamedTuple

from clinical.fhirdates import DAYS_PER_MONTH, DAYS_PER_YEAR


@dataclass(frozen=True, slots=True)
class Dose:
    """A medication's dose as a weekly total, with what it was worked out from."""

    weekly_mg: float | None  # None when it cannot be worked out
    per_dose_mg: float | None
    doses_per_week: float | None
    description: str  # "0.5 mg twice weekly"; "" when nothing is known
    parsed_from: str  # "structured", "text" or "none"


NO_DOSE: Final = Dose(None, None, None, "", "none")

# FHIR R4 Timing datatype (hl7.org/fhir/R4/datatypes.html#Timing): periodUnit is UCUM s|min|h|d|wk|mo|a;
# a month and a year are taken as their mean calendar lengths.
_DAYS_PER_PERIOD_UNIT: Final[dict[str, float]] = {
    "s": 1 / 86400,
    "min": 1 / 1440,
    "h": 1 / 24,
    "d": 1.0,
    "wk": 7.0,
    "mo": DAYS_PER_MONTH,
    "a": DAYS_PER_YEAR,
}

# HL7 v3 GTSAbbreviation code system (terminology.hl7.org/CodeSystem/v3-GTSAbbreviation), as bound
# by the R4 timing-abbreviation value set: doses per week for each code.
_GTS_SYSTEMS: Final = (
    "http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation",
    "urn:oid:2.16.840.1.113883.5.1022",
)
_DOSES_PER_WEEK_BY_GTS: Final[dict[str, float]] = {
    "QD": 7.0,
    "AM": 7.0,
    "PM": 7.0,
    "BED": 7.0,
    "BID": 14.0,
    "TID": 21.0,
    "QID": 28.0,
    "QOD": 3.5,
    "WK": 1.0,
    "MO": 7 / DAYS_PER_MONTH,
    "Q1H": 168.0,
    "Q2H": 84.0,
    "Q3H": 56.0,
    "Q4H": 42.0,
    "Q6H": 28.0,
    "Q8H": 21.0,
}

_MG_PER_MASS_UNIT: Final[dict[str, float]] = {
    "mg": 1.0,
    "milligram": 1.0,
    "milligrams": 1.0,
    "mcg": 0.001,
    "ug": 0.001,
    "µg": 0.001,
    "μg": 0.001,
    "microgram": 0.001,
    "micrograms": 0.001,
    "g": 1000.0,
    "gm": 1000.0,
    "gram": 1000.0,
    "grams": 1000.0,
}

# Units of presentation, converted with the product's strength (mg per unit); value: the word shown.
_MICRO: Final = str.maketrans({"\u00b5": "u", "\u03bc": "u"})  # micro sign, Greek mu
_DOSE_FORM_UNITS: Final[dict[str, str]] = {
    "tablet": "tablet",
    "tablets": "tablet",
    "tab": "tablet",
    "tabs": "tablet",
    "{tbl}": "tablet",
    "{tablet}": "tablet",
    "{tablets}": "tablet",
    "{tab}": "tablet",
    # the CDS Hooks sandbox writes its draft doses as UCUM {pill} with no unit
    "{pill}": "tablet",
    "{pills}": "tablet",
    "pill": "tablet",
    "pills": "tablet",
    "385055001": "tablet",  # SNOMED CT Tablet (basic dose form)
    "732936001": "tablet",  # SNOMED CT Tablet (unit of presentation)
    "capsule": "capsule",
    "capsules": "capsule",
    "cap": "capsule",
    "caps": "capsule",
    "{capsule}": "capsule",
    "{capsules}": "capsule",
    "{cap}": "capsule",
    "385049006": "capsule",  # SNOMED CT Capsule (basic dose form)
    "732937005": "capsule",  # SNOMED CT Capsule (unit of presentation)
    "1": "unit",  # UCUM unity
}

_WEEK_DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_NAMES: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

# --- free text -----------------------------------------------------------------------------------

_NUMBER_WORDS: Final[dict[str, float]] = {
    "a": 1.0,
    "an": 1.0,
    "one": 1.0,
    "single": 1.0,
    "two": 2.0,
    "other": 2.0,
    "second": 2.0,
    "three": 3.0,
    "third": 3.0,
    "four": 4.0,
    "fourth": 4.0,
    "five": 5.0,
    "fifth": 5.0,
    "six": 6.0,
    "sixth": 6.0,
    "seven": 7.0,
    "seventh": 7.0,
    "eight": 8.0,
    "eighth": 8.0,
    "nine": 9.0,
    "ten": 10.0,
    "eleven": 11.0,
    "twelve": 12.0,
    "half": 0.5,
    "a half": 0.5,
    "one half": 0.5,
    "quarter": 0.25,
    "a quarter": 0.25,
    "one quarter": 0.25,
}

_LONGEST_SIG: Final = 2000  # characters read: a sig is short, and the hot path stays bounded
_TEXT_TRANSLATION: Final = str.maketrans(
    {"½": " 1/2", "¼": " 1/4", "¾": " 3/4", "µ": "u", "μ": "u", "–": "-", "—": "-"}
)
_DIGIT_COMMA = re.compile(r"(?<!\d)(\d+),(\d+)")
# Epic writes "2 (two) times a week", "1 (one) tablet".
_NUMBER_IN_WORDS = re.compile(
    r"(\d)\s*\((?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|half)\)"
)
_ONCE_TWICE = re.compile(r"\b(once|twice|thrice)\b")
_ONCE_TWICE_AS_TIMES: Final = {"once": "1 times", "twice": "2 times", "thrice": "3 times"}

_DECIMAL = r"\d+(?:\.\d+)?|\.\d+"
_PLAIN_DECIMAL = re.compile(_DECIMAL)
_LARGEST_INT: Final = 10**300  # float() of a larger int raises OverflowError
# "0. 5 mg" (a stray space in "0.5") is not read as 5 mg: a number after "digit. " is left out.
_NOT_AFTER_A_POINT = r"(?<!\d\.\s)(?<!\d\.)"
_MASS = re.compile(
    rf"(?<![\w./]){_NOT_AFTER_A_POINT}"
    # "0.5-1 mg", "0.5 to 1 mg": a range, read as its low end (as a doseRange is)
    rf"(?:(?P<low>{_DECIMAL})\s*(?:-|to)\s*)?"
    rf"(?P<num>\d+/\d+|{_DECIMAL})\s*"
    r"(?P<unit>mg|mgs|milligrams?|mcg|ug|micrograms?|gm|g|grams?)(?![a-z])"
    # a concentration or a weight-based dose is not an amount
    r"(?!\s*/\s*(?:ml|l|cc|kg|m2|tab|cap))"
)
# "1 mg tablet", "1 MG PO TABS", "of 1 mg", "anastrozole 1 mg, 1/2 tab": the product's strength,
# not the dose (when the text also gives a tablet count; else the strength alone is the dose).
_MASS_IS_STRENGTH_AFTER = re.compile(
    r"\s*(?:oral\s+|po\s+)?(?:tablets?|tabs?|capsules?|caps?|pills?)\b"
)
_MASS_IS_STRENGTH_BEFORE = re.compile(
    r"(?:\bof\s+(?:an?\s+|the\s+)?"
    r"|\b(?:anastrozole|arimidex|letrozole|femara|exemestane|aromasin)\s*(?:\([a-z ]+\)\s*)?)$"
)
_STRENGTH_LOOK_BACK: Final = 32  # characters before a mass searched for "of a", a drug name
_COUNT = re.compile(
    rf"(?<![\w./]){_NOT_AFTER_A_POINT}(?P<num>\d+\s+\d+/\d+|\d+/\d+|\d+(?:\.\d+)?|\.\d+"
    r"|one\s*-?\s*half|a\s+half|half|one\s*-?\s*quarter|a\s+quarter|quarter"
    r"|one|two|three|four|an?)"
    # "1-2 tablets": a range, read as its low end
    r"(?:\s*(?:-|to)\s*(?P<high>\d+(?:\.\d+)?)(?=\s*(?:tablets?|tabs?|capsules?|caps?|pills?)\b))?"
    # "half of a 1 mg tablet", "1/2 of 1 mg tab": the mg is the tablet's strength
    r"\s*-?\s*(?:of\s+(?:(?:an?|one|the)\s+)?(?:(?:\d+(?:\.\d+)?|\.\d+)\s*(?:mg|mcg)\s+)?"
    r"|an?\s+)?(?P<form>tablets?|tabs?|capsules?|caps?|pills?)\b"
)
# a compounded liquid: "0.5 mL of 1 mg/mL"
_VOLUME = re.compile(
    rf"(?<![\w./])(?P<num>{_DECIMAL})\s*(?:ml|milliliters?|millilitres?|cc)\b(?!\s*/)"
)
_CONCENTRATION = re.compile(
    rf"(?<![\w./])(?P<num>{_DECIMAL})\s*(?P<unit>mg|mcg|ug)\s*/\s*(?:1\s*)?(?:ml|milliliter|millilitre)\b"
)
_VERB = re.compile(r"\b(?:take|takes|give|use|administer|chew|dissolve|swallow)\b")
_AS_NEEDED = re.compile(r"\bp\.?r\.?n\b|\b(?:as|if|when)\s+(?:needed|required)\b")

_NUM = (
    r"\d+(?:\.\d+)?(?:st|nd|rd|th)?|\.\d+|one|two|three|four|five|six|seven|eight|nine|ten"
    r"|eleven|twelve|other|second|third|fourth|fifth|sixth|seventh|eighth"
)
_TIMES = r"(?<![\w.]){n}\s*(?:x|times?)\s*(?:a|per|/|each|every|in\s+a)?\s*"
_DAY_WORD = (
    r"mondays|monday|mon|tuesdays|tuesday|tues|tue|wednesdays|wednesday|weds|wed"
    r"|thursdays|thursday|thurs|thur|thu|fridays|friday|fri|saturdays|saturday|sat"
    r"|sundays|sunday|sun"
)
# "sat" and "sun" are English words: they start a schedule only when written in full.
_DAY_TRIGGER = (
    r"\b(?:mondays|monday|mon|tuesdays|tuesday|tues|tue|wednesdays|wednesday|weds|wed"
    r"|thursdays|thursday|thurs|thur|thu|fridays|friday|fri|saturdays|saturday"
    r"|sundays|sunday)\b|\bm\s*[/,-]?\s*w\s*[/,-]?\s*f\b|\btu?\s*[/&]\s*th\b|\btth\b"
)

# (kind, pattern); a pattern holds at most one {n}. The leftmost match in the text wins.
_FREQUENCY_RULES: Final[tuple[tuple[str, str], ...]] = (
    ("ambiguous", r"\bbi-?\s?(?:weekly|monthly)\b"),
    ("2", r"\bsemi-?\s?weekly\b|\bb\.?i\.?w\b"),
    ("3", r"\bt\.?i\.?w\b"),
    ("0.5", r"\bfortnightly\b"),
    ("3.5", r"\b[qe]\.?o\.?d\b|\balternat(?:e|ing)\s+days?\b"),
    ("every_days", r"\b(?:every|each|q)\s*{n}\s*-?\s*(?:d|dys?|days?)\b"),
    ("every_days", r"\be\s*{n}\s*d\b"),
    ("every_hours", r"\b(?:every|q)\s*{n}\s*-?\s*(?:h|hrs?|hours?)\b"),
    ("every_weeks", r"\b(?:every|q)\s*{n}\s*-?\s*(?:w|wks?|weeks?)\b"),
    ("every_months", r"\b(?:every|q)\s*{n}\s*-?\s*(?:mo|mos|months?)\b"),
    ("per_day", _TIMES + r"(?:day|daily|d)\b"),
    ("per_week", _TIMES + r"(?:week|weekly|wk)\b"),
    ("per_month", _TIMES + r"(?:month|monthly|mo)\b"),
    ("per_day", r"(?<![\w.]){n}\s*(?:/|per)\s*(?:day|d)\b"),
    ("per_week", r"(?<![\w.]){n}\s*(?:/|per)\s*(?:week|wk)\b"),
    ("per_day", r"\bx\s*{n}\s*(?:/|per|a|each|every)\s*(?:day|d)\b"),
    ("per_week", r"\bx\s*{n}\s*(?:/|per|a|each|every)\s*(?:week|wk)\b"),
    ("per_week", r"(?<![\w.]){n}\s*days?\s*(?:a|per|/|each|every|in\s+a)\s*(?:week|wk)\b"),
    ("14", r"\bb\.?i\.?d\b|\bbd\b"),
    ("21", r"\bt\.?i\.?d\b|\btds\b"),
    ("28", r"\bq\.?i\.?d\b|\bqds\b"),
    ("days_of_week", _DAY_TRIGGER),
    (
        "1",
        r"\bweekly\b|\b(?:every|each|per|a)\s+(?:week|wk)\b|/\s*(?:week|wk)\b|\bq\s*(?:week|wk|w)\b",
    ),
    ("monthly", r"\bmonthly\b|\b(?:every|each|per|a)\s+month\b|/\s*month\b|\bq\s*month\b"),
    ("7", r"\bdaily\b|\b(?:every|each|per|a)\s+day\b|/\s*(?:day|d)\b|\bq\.?d\b|\bqday\b|\bod\b"),
)
# Every rule starts a word (or at "/"); the guard lets the engine skip other positions at once.
_FREQUENCY = re.compile(
    r"(?:(?<!\w)(?=\w)|(?=/))(?:"
    + "|".join(
        f"(?P<k{index}>{pattern.replace('{n}', f'(?P<n{index}>{_NUM})')})"
        for index, (_, pattern) in enumerate(_FREQUENCY_RULES)
    )
    + ")"
)
# Once a day implied by the time of day, when nothing says how often.
_DAILY_BY_TIME_OF_DAY = re.compile(
    r"\b(?:every|each|in\s+the)\s+(?:morning|evening|night)\b|\bnightly\b"
    r"|\bat\s+(?:bedtime|night)\b|\bq\.?\s?(?:am|pm|hs)\b|\bhs\b|\bmane\b|\bnocte\b"
)
_LISTED = re.compile(r"(?:[/,&+]|\band)\s*$")
_DAY_TOKEN = re.compile(
    rf"\b(?P<first>{_DAY_WORD})\b(?:\s*(?:-|to|through|thru)\s*(?P<last>{_DAY_WORD})\b)?"
    r"|\b(?P<mwf>m\s*[/,-]?\s*w\s*[/,-]?\s*f)\b|\b(?P<tth>tu?\s*[/&]\s*th|tth)\b"
)


class _Amount(NamedTuple):
    mg: float | None  # per dose; None when the unit cannot be turned into mg
    label: str  # "0.5 mg", "1 tablet (1 mg)", "2 mL"


class _Schedule(NamedTuple):
    doses_per_week: float | None  # None when the text names a schedule that cannot be read
    label: str  # "twice weekly (Mon, Thu)"


class _EntryDose(NamedTuple):
    amount: _Amount | None
    schedule: _Schedule | None
    as_needed: bool
    from_text: bool


def parse_dosage(dosage: object, strength_mg: float | None = None) -> Dose:
    """Weekly mg from a dosageInstruction/dosage list; strength_mg converts tablets to mg."""
    strength = _positive(strength_mg)
    if isinstance(dosage, dict):
        entries: list[dict[object, object]] = [dosage]
    elif isinstance(dosage, list | tuple):
        entries = [entry for entry in dosage if isinstance(entry, dict)]
    elif isinstance(dosage, str):
        entries = [{"text": dosage}]
    else:
        return NO_DOSE

    # Dosages with the same sequence (or none) run together; the first sequence is the current one.
    sequences = sorted({s for entry in entries if (s := _sequence(entry)) is not None})
    if len(sequences) <= 1:
        return _combine([_entry_dose(entry, strength) for entry in entries])
    for sequence in sequences:
        group = [entry for entry in entries if _sequence(entry) in (sequence, None)]
        dose = _combine([_entry_dose(entry, strength) for entry in group])
        if dose.parsed_from != "none":
            return dose
    return NO_DOSE


def _combine(entry_doses: list[_EntryDose]) -> Dose:
    """Concurrent dosages: the weekly doses add up; unknown if any part is unknown."""
    parts = [d for d in entry_doses if d.amount is not None or d.schedule is not None]
    if not parts:
        return NO_DOSE
    doses = [_to_dose(part) for part in parts]
    if len(doses) == 1:
        return doses[0]
    weekly: float | None = 0.0
    doses_per_week: float | None = 0.0
    for dose in doses:
        weekly = None if weekly is None or dose.weekly_mg is None else weekly + dose.weekly_mg
        doses_per_week = (
            None
            if doses_per_week is None or dose.doses_per_week is None
            else doses_per_week + dose.doses_per_week
        )
    per_dose = {dose.per_dose_mg for dose in doses}
    return Dose(
        weekly_mg=_finite(weekly),
        per_dose_mg=per_dose.pop() if len(per_dose) == 1 else None,
        doses_per_week=_finite(doses_per_week),
        description=" + ".join(dose.description for dose in doses if dose.description),
        parsed_from="text" if any(part.from_text for part in parts) else "structured",
    )


def _to_dose(part: _EntryDose) -> Dose:
    per_dose = part.amount.mg if part.amount is not None else None
    doses_per_week = part.schedule.doses_per_week if part.schedule is not None else None
    weekly = None if per_dose is None or doses_per_week is None else per_dose * doses_per_week
    description = part.amount.label if part.amount is not None else ""
    if part.schedule is not None:
        description = f"{description} {part.schedule.label}" if description else part.schedule.label
    if part.as_needed:
        description = f"{description} as needed" if description else "as needed"
    return Dose(
        weekly_mg=_finite(weekly),
        per_dose_mg=per_dose,
        doses_per_week=doses_per_week,
        description=description,
        parsed_from="text" if part.from_text else "structured",
    )


def _entry_dose(entry: dict[object, object], strength: float | None) -> _EntryDose:
    """One Dosage: structured doseAndRate and timing, with the text filling in what they lack."""
    amount = _structured_amount(entry, strength)
    timing = entry.get("timing")
    schedule = _structured_schedule(timing) if isinstance(timing, dict) else None
    as_needed = (
        entry.get("asNeededBoolean") is True
        or entry.get("asNeeded") is True
        or isinstance(entry.get("asNeededCodeableConcept"), dict)
        or bool(isinstance(entry.get("asNeededFor"), list) and entry.get("asNeededFor"))
    )
    from_text = False
    if amount is None or amount.mg is None or schedule is None:
        text = _entry_text(entry, timing)
        if text:
            text_amount, text_schedule, text_as_needed = _parse_text(text, strength)
            if text_amount is not None and (
                amount is None or (amount.mg is None and text_amount.mg is not None)
            ):
                amount, from_text = text_amount, True
            if schedule is None and text_schedule is not None:
                schedule, from_text = text_schedule, True
            as_needed = as_needed or text_as_needed
    return _EntryDose(amount, schedule, as_needed, from_text)


# --- structured ----------------------------------------------------------------------------------


def _structured_amount(entry: dict[object, object], strength: float | None) -> _Amount | None:
    """doseAndRate[].doseQuantity or doseRange; an "ordered" dose in mg is preferred."""
    dose_and_rate = entry.get("doseAndRate")
    if isinstance(dose_and_rate, dict):
        dose_and_rate = [dose_and_rate]
    best: _Amount | None = None
    best_rank = -1
    if isinstance(dose_and_rate, list):
        for item in dose_and_rate:
            if not isinstance(item, dict):
                continue
            amount = _amount_of(item, strength)
            if amount is None:
                continue
            rank = 2 * (amount.mg is not None) + _is_ordered(item.get("type"))
            if rank > best_rank:
                best, best_rank = amount, rank
    # STU3 put dose[x] on the Dosage itself
    return best if best is not None else _amount_of(entry, strength)


def _amount_of(item: dict[object, object], strength: float | None) -> _Amount | None:
    quantity = _quantity(item.get("doseQuantity"))
    if quantity is not None:
        return _amount((quantity[0],), quantity[1], strength)
    dose_range = item.get("doseRange")
    if not isinstance(dose_range, dict):
        return None
    low = _quantity(dose_range.get("low"))
    high = _quantity(dose_range.get("high"))
    if low is not None and high is not None and low[1] == high[1]:
        return _amount((low[0], high[0]), low[1], strength)
    if low is not None:
        return _amount((low[0],), low[1], strength)
    if high is not None:
        amount = _amount((high[0],), high[1], strength)
        return _Amount(amount.mg, f"up to {amount.label}")
    return None


def _is_ordered(dose_type: object) -> bool:
    codings = dose_type.get("coding") if isinstance(dose_type, dict) else None
    return isinstance(codings, list) and any(
        isinstance(coding, dict) and coding.get("code") == "ordered" for coding in codings
    )


def _quantity(quantity: object) -> tuple[float, str] | None:
    """(value, unit): the unit is a known key of the unit tables when code or unit is one."""
    if not isinstance(quantity, dict):
        return None
    value = _positive(quantity.get("value"))  # a dose of 0 is no dose (bad data), not 0 mg
    if value is None:
        return None
    shown = ""
    for key in ("code", "unit"):
        unit = quantity.get(key)
        if isinstance(unit, str) and unit.strip():
            normalised = unit.strip().lower().translate(_MICRO)
            if normalised in _MG_PER_MASS_UNIT or normalised in _DOSE_FORM_UNITS:
                return value, normalised
            # a UCUM annotation around a known word: "{Tablet}", "{tbl}"
            inner = normalised.strip("{}")
            if normalised.startswith("{") and inner in _DOSE_FORM_UNITS:
                return value, inner
            shown = shown or unit.strip()
    return value, shown


def _amount(values: tuple[float, ...], unit: str, strength: float | None) -> _Amount:
    """An amount (or low-high range) in `unit`, in mg where the unit allows."""
    mg_per_unit = _MG_PER_MASS_UNIT.get(unit)
    if mg_per_unit is not None:
        mgs = [value * mg_per_unit for value in values]
        return _Amount(_finite(mgs[0]), "-".join(map(_fmt, mgs)) + " mg")
    numbers = "-".join(map(_fmt, values))
    form = _DOSE_FORM_UNITS.get(unit)
    if form is None:  # no unit: never assumed (Synthea writes doseQuantity {value: 1} alone)
        return _Amount(None, f"{numbers} {unit}" if unit else f"{numbers} (unit not stated)")
    label = f"{numbers} {form}{'s' if max(values) > 1 else ''}"
    if strength is None:
        return _Amount(None, label)
    mgs = [value * strength for value in values]
    return _Amount(_finite(mgs[0]), f"{label} ({'-'.join(map(_fmt, mgs))} mg)")


def _structured_schedule(timing: dict[object, object]) -> _Schedule | None:
    repeat = timing.get("repeat")
    if isinstance(repeat, dict):
        schedule = _repeat_schedule(repeat)
        if schedule is not None:
            return schedule
    return _code_schedule(timing.get("code"))


def _repeat_schedule(repeat: dict[object, object]) -> _Schedule | None:
    """Timing.repeat: frequency per period, on dayOfWeek days, at timeOfDay/when times."""
    frequency = _positive(repeat.get("frequency"))
    if frequency is None and repeat.get("frequency") is not None:
        return None
    period = _positive(repeat.get("period"))
    unit = repeat.get("periodUnit")
    unit_days = _DAYS_PER_PERIOD_UNIT.get(unit) if isinstance(unit, str) else None
    period_days = period * unit_days if period is not None and unit_days is not None else None
    days = _days_of_week(repeat.get("dayOfWeek"))
    times_a_day = _count_strings(repeat.get("timeOfDay")) or _count_strings(repeat.get("when"))
    per_occasion = frequency if frequency is not None else float(times_a_day or 1)

    if period_days is not None and days:
        if period_days <= 1:  # a daily (or shorter) rhythm, on the listed days only
            doses_per_week = len(days) * per_occasion / period_days
        else:
            doses_per_week = max(len(days), per_occasion) * 7 / max(period_days, 7)
    elif period_days is not None:
        doses_per_week = per_occasion * 7 / period_days
    elif days:
        doses_per_week = len(days) * per_occasion
    elif times_a_day:
        doses_per_week = per_occasion * 7
    else:
        return None
    return _schedule(doses_per_week, days)


def _code_schedule(code: object) -> _Schedule | None:
    codings = code.get("coding") if isinstance(code, dict) else None
    if not isinstance(codings, list):
        return None
    for coding in codings:
        if not isinstance(coding, dict):
            continue
        system, value = coding.get("system"), coding.get("code")
        if (system is None or system in _GTS_SYSTEMS) and isinstance(value, str):
            doses_per_week = _DOSES_PER_WEEK_BY_GTS.get(value.strip().upper())
            if doses_per_week is not None:
                return _schedule(doses_per_week, ())
    return None


def _days_of_week(days: object) -> tuple[int, ...]:
    if not isinstance(days, list):
        return ()
    found = {_WEEK_DAYS.index(d) for d in days if isinstance(d, str) and d in _WEEK_DAYS}
    return tuple(sorted(found))


def _count_strings(values: object) -> int:
    return sum(isinstance(v, str) for v in values) if isinstance(values, list) else 0


def _schedule(doses_per_week: float, days: tuple[int, ...]) -> _Schedule | None:
    if not math.isfinite(doses_per_week) or doses_per_week <= 0:
        return None
    label = _schedule_label(doses_per_week)
    if days:
        label += f" ({', '.join(_DAY_NAMES[day] for day in days)})"
    return _Schedule(doses_per_week, label)


def _sequence(entry: dict[object, object]) -> int | None:
    sequence = entry.get("sequence")
    return sequence if isinstance(sequence, int) and not isinstance(sequence, bool) else None


# --- free text -----------------------------------------------------------------------------------


def _entry_text(entry: dict[object, object], timing: object) -> str:
    code = timing.get("code") if isinstance(timing, dict) else None
    texts = (
        entry.get("text"),
        entry.get("patientInstruction"),
        code.get("text") if isinstance(code, dict) else None,
    )
    return " ; ".join(text for text in texts if isinstance(text, str) and text.strip())


def _parse_text(text: str, strength: float | None) -> tuple[_Amount | None, _Schedule | None, bool]:
    """Amount, schedule and as-needed from a sig such as "0.5 mg twice weekly"."""
    text = _normalise(text)
    return _text_amount(text, strength), _text_schedule(text), bool(_AS_NEEDED.search(text))


def _normalise(text: str) -> str:
    text = text[:_LONGEST_SIG].lower().translate(_TEXT_TRANSLATION)
    text = _DIGIT_COMMA.sub(_decimal_comma, text)
    text = _NUMBER_IN_WORDS.sub(r"\1", text)
    return _ONCE_TWICE.sub(lambda m: _ONCE_TWICE_AS_TIMES[m.group(1)], text)


def _decimal_comma(match: re.Match[str]) -> str:
    """ "0,5" is a decimal comma; "1,000" a thousands separator."""
    whole, part = match.group(1), match.group(2)
    if len(part) == 3 and whole != "0":
        return whole + part
    return f"{whole}.{part}"


def _text_amount(text: str, strength: float | None) -> _Amount | None:
    """The mg amount after the verb; else a tablet count times the strength."""
    verb = _VERB.search(text)
    verb_at = verb.start() if verb else -1
    dose_mg: float | None = None
    dose_match: re.Match[str] | None = None
    label_strength: float | None = None
    first_mg: float | None = None
    for match in _MASS.finditer(text):
        mg = _mass_mg(match)
        if mg is None:
            continue
        first_mg = mg if first_mg is None else first_mg
        is_strength = bool(
            _MASS_IS_STRENGTH_AFTER.match(text, match.end())
            or _MASS_IS_STRENGTH_BEFORE.search(
                text, max(0, match.start() - _STRENGTH_LOOK_BACK), match.start()
            )
        )
        if is_strength or match.start() < verb_at:
            label_strength = mg if label_strength is None else label_strength
        elif dose_mg is None:
            dose_mg, dose_match = mg, match
    if dose_mg is not None:
        low_mg = _mass_mg(dose_match, "low") if dose_match is not None else None
        if low_mg is not None and low_mg < dose_mg:  # "0.5-1 mg": the low end, as for doseRange
            return _Amount(low_mg, f"{_fmt(low_mg)}-{_fmt(dose_mg)} mg")
        return _Amount(dose_mg, f"{_fmt(dose_mg)} mg")

    count = _first_count(text, verb_at)
    if count is not None:
        values, form = count
        unit_mg = strength if strength is not None else label_strength
        return _amount(values, form, unit_mg)
    volume = _first_volume(text, verb_at)
    if volume is not None:
        return volume
    if first_mg is not None:  # "1 mg tab po daily": the strength given alone is the dose
        return _Amount(first_mg, f"{_fmt(first_mg)} mg")
    return None


def _mass_mg(match: re.Match[str], group: str = "num") -> float | None:
    number = match.group(group)
    value = _text_number(number) if number else None
    if value is None:
        return None
    unit = match.group("unit")
    mg_per_unit = _MG_PER_MASS_UNIT.get(unit.rstrip("s") if unit != "mgs" else "mg")
    return _finite(value * mg_per_unit) if mg_per_unit is not None else None


def _first_volume(text: str, verb_at: int) -> _Amount | None:
    """A volume in mL, in mg when the text gives the concentration."""
    volumes = [match for match in _VOLUME.finditer(text) if match.start() > verb_at]
    volume = volumes[0] if volumes else _VOLUME.search(text)
    millilitres = _text_number(volume.group("num")) if volume is not None else None
    if millilitres is None:
        return None
    label = f"{_fmt(millilitres)} mL"
    concentration = _CONCENTRATION.search(text)
    mg_per_ml = _mass_mg(concentration) if concentration is not None else None
    if mg_per_ml is None:
        return _Amount(None, label)
    mg = _finite(millilitres * mg_per_ml)
    return _Amount(mg, f"{label} ({_fmt(mg)} mg)" if mg is not None else label)


def _first_count(text: str, verb_at: int) -> tuple[tuple[float, ...], str] | None:
    """The first tablet count (a range "1-2 tablets" as (1, 2)), preferring one after the verb."""
    counts = [
        (match.start(), value, match.group("high"), match.group("form"))
        for match in _COUNT.finditer(text)
        if (value := _text_number(match.group("num"))) is not None
    ]
    if not counts:
        return None
    after_verb = [count for count in counts if count[0] > verb_at]
    _, value, high, form = (after_verb or counts)[0]
    high_value = _text_number(high) if high else None
    values = (value, high_value) if high_value is not None and high_value > value else (value,)
    return values, "capsule" if form.startswith("cap") else "tablet"


def _text_schedule(text: str) -> _Schedule | None:
    match = _FREQUENCY.search(text)
    if match is None:
        if _DAILY_BY_TIME_OF_DAY.search(text):
            return _schedule(7.0, ())
        return None
    index = int((match.lastgroup or "k0")[1:])
    kind = _FREQUENCY_RULES[index][0]
    if kind == "ambiguous":
        return _Schedule(None, f"{match.group(0)} (ambiguous)")
    if kind == "days_of_week":
        days = _text_days(text)
        return _schedule(float(len(days)), days) if days else None
    if kind == "monthly":
        return _schedule(7 / DAYS_PER_MONTH, ())
    number = match.group(f"n{index}") if f"n{index}" in match.re.groupindex else None
    if number is None:
        return _schedule(float(kind), ())
    n = _text_number(number)
    if n is None or n <= 0:
        return None
    doses_per_week = {
        "per_day": n * 7,
        "per_week": n,
        "per_month": n * 7 / DAYS_PER_MONTH,
        "every_days": 7 / n,
        "every_hours": 168 / n,
        "every_weeks": 1 / n,
        "every_months": 7 / (DAYS_PER_MONTH * n),
    }[kind]
    return _schedule(doses_per_week, ())


def _text_days(text: str) -> tuple[int, ...]:
    days: set[int] = set()
    for match in _DAY_TOKEN.finditer(text):
        if match.group("mwf"):
            days.update((0, 2, 4))
        elif match.group("tth"):
            days.update((1, 3))
        else:
            first_word, last_word = match.group("first"), match.group("last")
            if (
                first_word in ("sat", "sun")
                and not last_word
                and not _LISTED.search(text, max(0, match.start() - 6), match.start())
            ):
                continue  # "avoid sun": counted only in a list of days ("mon/thu/sun")
            first = _WEEK_DAYS.index(first_word[:3])
            last = _WEEK_DAYS.index(last_word[:3]) if last_word else first
            days.update(day % 7 for day in range(first, first + (last - first) % 7 + 1))
    return tuple(sorted(days))


def _text_number(text: str) -> float | None:
    """ "0.5", ".5", "1/2", "1 1/2", "3rd", "half", "two" as a number."""
    text = " ".join(text.replace("-", " ").split())
    word = _NUMBER_WORDS.get(text)
    if word is not None:
        return word
    text = text.rstrip("stndrh")
    whole, _, fraction = text.rpartition(" ")
    if "/" in fraction:
        numerator, _, denominator = fraction.partition("/")
        if not all(part.isdecimal() and len(part) <= 9 for part in (numerator, denominator)):
            return None
        if int(denominator) == 0:
            return None
        value = int(numerator) / int(denominator) + (float(whole) if whole.isdecimal() else 0.0)
        return _finite(value)
    try:
        return _finite(float(text))
    except ValueError:  # the regexes only pass numbers; this guards the odd stray form
        return None


# --- numbers and words ---------------------------------------------------------------------------


def _non_negative(value: object) -> float | None:
    """A finite number >= 0 from a JSON number (or a numeric string); None otherwise."""
    if isinstance(value, float):
        number = value
    elif isinstance(value, int) and not isinstance(value, bool):
        number = float(value) if -_LARGEST_INT < value < _LARGEST_INT else math.inf
    elif isinstance(value, str) and _PLAIN_DECIMAL.fullmatch(stripped := value.strip()):
        number = float(stripped)
    else:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _positive(value: object) -> float | None:
    number = _non_negative(value)
    return number if number is not None and number > 0 else None


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) and value >= 0 else None


def _whole(value: float) -> bool:
    return math.isfinite(value) and abs(value - round(value)) <= 1e-9 * max(1.0, abs(value))


def _near(value: float, target: float) -> bool:
    return abs(value - target) <= 1e-6 * target


def _times(count: int) -> str:
    return {1: "once", 2: "twice", 3: "three times", 4: "four times"}.get(count, f"{count} times")


@lru_cache(maxsize=256)
def _schedule_label(doses_per_week: float) -> str:
    """ "once daily", "twice weekly", "every 3 days", "every 8 hours", "once monthly"."""
    per_day = doses_per_week / 7
    if per_day >= 1 and _whole(per_day):
        count = round(per_day)
        if count > 4 and _whole(24 / count):
            return "every hour" if count == 24 else f"every {_fmt(24 / count)} hours"
        return f"{_times(count)} daily"
    if doses_per_week >= 1 and _whole(doses_per_week):
        return f"{_times(round(doses_per_week))} weekly"
    interval_days = 7 / doses_per_week
    if _near(interval_days, 2):
        return "every other day"
    if _near(interval_days, DAYS_PER_MONTH):
        return "once monthly"
    if _near(interval_days, DAYS_PER_YEAR):
        return "once yearly"
    if interval_days > 7 and _whole(interval_days / 7):
        return f"every {_fmt(interval_days / 7)} weeks"
    if interval_days > 1 and _whole(interval_days * 2):
        return f"every {_fmt(interval_days)} days"
    if per_day > 1 and _whole(48 / per_day):
        return f"every {_fmt(24 / per_day)} hours"
    return f"{_fmt(doses_per_week)} times per week"


def _fmt(number: float) -> str:
    """0.5 -> "0.5", 1.0 -> "1", 0.25 -> "0.25"."""
    return f"{number:.6g}"
