"""parse_dosage: FHIR R4 Dosage (structured, then text) to a weekly dose in mg."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from clinical.dosage import Dose, parse_dosage

UCUM = "http://unitsofmeasure.org"
GTS = "http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation"
ORDERED = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/dose-rate-type",
            "code": "ordered",
            "display": "Ordered",
        }
    ]
}
ORAL = {"coding": [{"system": "http://snomed.info/sct", "code": "26643006", "display": "Oral"}]}


def quantity(value: float, unit: str = "mg", code: str | None = None) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": code or unit}


def dosage(
    dose: dict[str, Any] | None = None,
    *,
    repeat: dict[str, Any] | None = None,
    code: dict[str, Any] | None = None,
    dose_range: dict[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A US Core / mCODE style Dosage: ordered doseAndRate, oral route, timing."""
    entry: dict[str, Any] = {"route": ORAL, **fields}
    timing: dict[str, Any] = {}
    if repeat is not None:
        timing["repeat"] = repeat
    if code is not None:
        timing["code"] = code
    if timing:
        entry["timing"] = timing
    if dose is not None:
        entry["doseAndRate"] = [{"type": ORDERED, "doseQuantity": dose}]
    if dose_range is not None:
        entry["doseAndRate"] = [{"type": ORDERED, "doseRange": dose_range}]
    return entry


DAILY = {"frequency": 1, "period": 1, "periodUnit": "d"}
TWICE_WEEKLY = {"frequency": 2, "period": 1, "periodUnit": "wk"}


def gts(code: str) -> dict[str, Any]:
    return {"coding": [{"system": GTS, "code": code}]}


# --- structured ----------------------------------------------------------------------------------

STRUCTURED_CASES = [
    pytest.param(
        [
            {
                "sequence": 1,
                "text": "Take 1 tablet (1 mg total) by mouth daily.",
                "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                "route": ORAL,
                "doseAndRate": [
                    {
                        "type": ORDERED,
                        "doseQuantity": {"value": 1, "unit": "mg", "system": UCUM, "code": "mg"},
                    }
                ],
            }
        ],
        None,
        7.0,
        "1 mg once daily",
        id="us-core-1mg-daily-is-7",
    ),
    pytest.param(
        [dosage(quantity(0.5), repeat=TWICE_WEEKLY)],
        None,
        1.0,
        "0.5 mg twice weekly",
        id="half-mg-twice-a-week-is-1",
    ),
    pytest.param(
        [dosage(quantity(1, "tablet", "{tbl}"), repeat=DAILY)],
        1.0,
        7.0,
        "1 tablet (1 mg) once daily",
        id="one-tablet-daily-with-1mg-strength-is-7",
    ),
    pytest.param(
        [dosage(quantity(0.5, "TAB", "{tbl}"), repeat=TWICE_WEEKLY)],
        1.0,
        1.0,
        "0.5 tablet (0.5 mg) twice weekly",
        id="half-tablet-twice-weekly-is-1",
    ),
    pytest.param(
        [dosage(quantity(0.5, "1"), repeat=TWICE_WEEKLY)],
        1.0,
        1.0,
        "0.5 unit (0.5 mg) twice weekly",
        id="ucum-unity-uses-strength",
    ),
    pytest.param(
        [dosage(quantity(0.5), repeat={"dayOfWeek": ["mon", "thu"]})],
        None,
        1.0,
        "0.5 mg twice weekly (Mon, Thu)",
        id="day-of-week-mon-thu-is-two-doses",
    ),
    pytest.param(
        [dosage(quantity(0.5), repeat={**DAILY, "dayOfWeek": ["mon", "thu"]})],
        None,
        1.0,
        "0.5 mg twice weekly (Mon, Thu)",
        id="daily-on-mon-and-thu-is-two-doses",
    ),
    pytest.param(
        [dosage(quantity(0.25), repeat={"dayOfWeek": ["mon", "wed", "fri", "mon"]})],
        None,
        0.75,
        "0.25 mg three times weekly (Mon, Wed, Fri)",
        id="repeated-day-counts-once",
    ),
    pytest.param(
        [dosage(quantity(0.5), repeat={"frequency": 1, "period": 3.5, "periodUnit": "d"})],
        None,
        1.0,
        "0.5 mg twice weekly",
        id="every-3.5-days-is-two-doses",
    ),
    pytest.param(
        [dosage(quantity(0.5), repeat={"frequency": 1, "period": 3, "periodUnit": "d"})],
        None,
        0.5 * 7 / 3,
        "0.5 mg every 3 days",
        id="every-3-days",
    ),
    pytest.param(
        [dosage(quantity(1), repeat={"frequency": 1, "period": 2, "periodUnit": "d"})],
        None,
        3.5,
        "1 mg every other day",
        id="every-other-day",
    ),
    pytest.param(
        [dosage(quantity(1), repeat={"frequency": 1, "period": 12, "periodUnit": "h"})],
        None,
        14.0,
        "1 mg twice daily",
        id="every-12-hours",
    ),
    pytest.param(
        [dosage(quantity(1), repeat={"frequency": 1, "period": 1, "periodUnit": "mo"})],
        None,
        7 / 30.4375,
        "1 mg once monthly",
        id="monthly-uses-mean-month",
    ),
    pytest.param(
        [
            dosage(
                quantity(1),
                repeat={"period": 1, "periodUnit": "d", "timeOfDay": ["08:00:00", "20:00:00"]},
            )
        ],
        None,
        14.0,
        "1 mg twice daily",
        id="two-times-of-day-without-frequency-is-twice-daily",
    ),
    pytest.param(
        [dosage(quantity(1), repeat={"when": ["MORN"]})],
        None,
        7.0,
        "1 mg once daily",
        id="when-morning-is-daily",
    ),
    pytest.param(
        [dosage(quantity(1), code=gts("BID"))],
        None,
        14.0,
        "1 mg twice daily",
        id="gts-bid",
    ),
    pytest.param(
        [dosage(quantity(1), code=gts("QOD"))],
        None,
        3.5,
        "1 mg every other day",
        id="gts-qod",
    ),
    pytest.param(
        [dosage(quantity(1), code=gts("WK"))],
        None,
        1.0,
        "1 mg once weekly",
        id="gts-wk",
    ),
    pytest.param(
        [dosage(quantity(1), code={"coding": [{"code": "qd"}]})],
        None,
        7.0,
        "1 mg once daily",
        id="gts-code-without-system-any-case",
    ),
    pytest.param(
        [dosage(quantity(0.5), repeat=TWICE_WEEKLY, code=gts("QD"))],
        None,
        1.0,
        "0.5 mg twice weekly",
        id="repeat-wins-over-code",
    ),
    pytest.param(
        [dosage(quantity(500, "ug"), repeat=TWICE_WEEKLY)],
        None,
        1.0,
        "0.5 mg twice weekly",
        id="micrograms-are-divided-by-1000",
    ),
    pytest.param(
        [dosage(quantity(500, "mcg", "ug"), repeat=TWICE_WEEKLY)],
        None,
        1.0,
        "0.5 mg twice weekly",
        id="mcg-unit-ug-code",
    ),
    pytest.param(
        [dosage(quantity(1, "milligram", "mg"), repeat=DAILY)],
        None,
        7.0,
        "1 mg once daily",
        id="milligram-spelt-out",
    ),
    pytest.param(
        [dosage(quantity(1.2, "g"), repeat=DAILY)],
        None,
        8400.0,
        "1200 mg once daily",
        id="grams-are-multiplied-by-1000",
    ),
    pytest.param(
        [
            dosage(
                dose_range={"low": quantity(0.5), "high": quantity(1)},
                repeat=TWICE_WEEKLY,
            )
        ],
        None,
        1.0,
        "0.5-1 mg twice weekly",
        id="dose-range-uses-low",
    ),
    pytest.param(
        [dosage(dose_range={"high": quantity(1)}, repeat=TWICE_WEEKLY)],
        None,
        2.0,
        "up to 1 mg twice weekly",
        id="dose-range-without-low-uses-high",
    ),
    pytest.param(
        [
            dosage(quantity(1), repeat={**DAILY, "when": ["MORN"]}),
            dosage(quantity(0.5), repeat={**DAILY, "when": ["EVE"]}),
        ],
        None,
        10.5,
        "1 mg once daily + 0.5 mg once daily",
        id="concurrent-dosages-are-summed",
    ),
    pytest.param(
        [
            dosage(quantity(1), repeat=DAILY, sequence=2),
            dosage(quantity(0.5), repeat=TWICE_WEEKLY, sequence=1),
        ],
        None,
        1.0,
        "0.5 mg twice weekly",
        id="lowest-sequence-is-current",
    ),
    pytest.param(
        [
            dosage(quantity(0.5), repeat=TWICE_WEEKLY, sequence=1),
            dosage(
                quantity(0.25), repeat={"frequency": 1, "period": 1, "periodUnit": "wk"}, sequence=1
            ),
            dosage(quantity(1), repeat=DAILY, sequence=2),
        ],
        None,
        1.25,
        "0.5 mg twice weekly + 0.25 mg once weekly",
        id="same-sequence-is-summed",
    ),
    pytest.param(
        [
            dosage(quantity(1), repeat=DAILY, asNeededBoolean=True),
        ],
        None,
        7.0,
        "1 mg once daily as needed",
        id="as-needed-is-parsed-and-said",
    ),
    pytest.param(
        [
            {
                "doseAndRate": [
                    {"type": {"coding": [{"code": "calculated"}]}, "doseQuantity": quantity(2)},
                    {"type": ORDERED, "doseQuantity": quantity(1)},
                ],
                "timing": {"repeat": DAILY},
            }
        ],
        None,
        7.0,
        "1 mg once daily",
        id="ordered-dose-preferred-over-calculated",
    ),
    pytest.param(
        {"doseQuantity": quantity(1), "timing": {"repeat": DAILY}},
        None,
        7.0,
        "1 mg once daily",
        id="single-stu3-style-dosage-dict",
    ),
    pytest.param(
        [
            dosage(quantity(0.5), repeat={"frequency": 2, "period": 1, "periodUnit": "wk"}),
            7,
            "x",
            None,
        ],
        None,
        1.0,
        "0.5 mg twice weekly",
        id="junk-list-items-are-skipped",
    ),
]


@pytest.mark.parametrize(("dosages", "strength", "weekly", "description"), STRUCTURED_CASES)
def test_structured_dosage_gives_weekly_mg(
    dosages: object, strength: float | None, weekly: float, description: str
) -> None:
    dose = parse_dosage(dosages, strength)
    assert dose.weekly_mg == pytest.approx(weekly)
    assert dose.description == description
    assert dose.parsed_from == "structured"


def test_twice_weekly_half_milligram_is_one_milligram_per_week() -> None:
    dose = parse_dosage([dosage(quantity(0.5), repeat=TWICE_WEEKLY)])
    assert dose == Dose(1.0, 0.5, 2.0, "0.5 mg twice weekly", "structured")


def test_structured_dose_with_schedule_only_in_text_is_completed_from_text() -> None:
    dose = parse_dosage([dosage(quantity(0.5), text="0.5 mg twice weekly")])
    assert dose.weekly_mg == pytest.approx(1.0)
    assert dose.parsed_from == "text"


def test_timing_code_text_alone_is_read_as_text() -> None:
    dose = parse_dosage([dosage(quantity(1), code={"text": "BID"})])
    assert dose.weekly_mg == pytest.approx(14.0)
    assert dose.parsed_from == "text"


def test_tablets_in_structure_take_mg_from_text_when_strength_unknown() -> None:
    entry = dosage(quantity(1, "tablet"), repeat=DAILY, text="Take 1 tablet (1 mg total) daily")
    assert parse_dosage([entry]).weekly_mg == pytest.approx(7.0)


def test_tablets_without_strength_keep_doses_per_week() -> None:
    dose = parse_dosage([dosage(quantity(1, "tablet", "{tbl}"), repeat=DAILY)])
    assert dose.weekly_mg is None
    assert dose.per_dose_mg is None
    assert dose.doses_per_week == pytest.approx(7.0)
    assert dose.description == "1 tablet once daily"


def test_concurrent_dosage_with_unknown_dose_makes_the_total_unknown() -> None:
    dose = parse_dosage(
        [dosage(quantity(1), repeat=DAILY), dosage(quantity(1, "tablet"), repeat=DAILY)]
    )
    assert dose.weekly_mg is None
    assert dose.doses_per_week == pytest.approx(14.0)


def test_dosage_without_sequence_runs_with_the_first_sequence() -> None:
    dose = parse_dosage(
        [
            dosage(quantity(1), repeat=DAILY, sequence=2),
            dosage(quantity(0.5), repeat=TWICE_WEEKLY, sequence=1),
            dosage(quantity(0.25), repeat={"frequency": 1, "period": 1, "periodUnit": "wk"}),
        ]
    )
    assert dose.weekly_mg == pytest.approx(1.25)


def test_first_sequence_without_any_dose_falls_to_the_next() -> None:
    dose = parse_dosage(
        [{"sequence": 1, "text": "see note"}, dosage(quantity(1), repeat=DAILY, sequence=2)]
    )
    assert dose.weekly_mg == pytest.approx(7.0)


def test_day_of_week_every_other_week_halves_the_rate() -> None:
    repeat = {"frequency": 1, "period": 2, "periodUnit": "wk", "dayOfWeek": ["mon", "thu"]}
    assert parse_dosage([dosage(quantity(0.5), repeat=repeat)]).weekly_mg == pytest.approx(0.5)


def test_numbers_are_written_without_trailing_zeros() -> None:
    dose = parse_dosage(
        [dosage(quantity(0.250), repeat={"frequency": 3, "period": 1.0, "periodUnit": "wk"})]
    )
    assert dose.description == "0.25 mg three times weekly"


# --- text ----------------------------------------------------------------------------------------

TEXT_CASES = [
    ("1 mg once daily", None, 7.0),
    ("1mg PO daily", None, 7.0),
    ("1 mg by mouth every day", None, 7.0),
    ("take 1 tablet daily", 1.0, 7.0),
    ("1 tab qd", 1.0, 7.0),
    ("0.5 mg twice weekly", None, 1.0),
    ("0.5mg 2x/week", None, 1.0),
    ("0.5 mg two times a week", None, 1.0),
    ("0.25 mg three times weekly", None, 0.75),
    ("0.5 mg Monday and Thursday", None, 1.0),
    ("0.5 mg Mon/Wed/Fri", None, 1.5),
    ("0.5 mg M/W/F", None, 1.5),
    ("0.5 mg every 3 days", None, 0.5 * 7 / 3),
    ("0.5mg E3D", None, 0.5 * 7 / 3),
    ("1 mg every other day", None, 3.5),
    ("1 mg QOD", None, 3.5),
    ("1 mg EOD", None, 3.5),
    ("1 mg every third day", None, 7 / 3),
    ("half a tablet (0.5 mg) twice a week", None, 1.0),
    ("half a tablet (0.5 mg) twice a week", 1.0, 1.0),
    ("1/2 tab twice weekly", 1.0, 1.0),
    ("½ tablet twice weekly", 1.0, 1.0),
    ("0.25 mg BIW", None, 0.5),
    ("1 mg weekly", None, 1.0),
    ("1 mg once a week", None, 1.0),
    ("0.5 mg q3.5d", None, 1.0),
    ("1 mg twice daily", None, 14.0),
    ("1 mg bid", None, 14.0),
    ("1 mg b.i.d.", None, 14.0),
    ("500 mcg twice weekly", None, 1.0),
    ("500 µg twice weekly", None, 1.0),
    ("0,5 mg twice weekly", None, 1.0),
    ("1,000 mcg daily", None, 7.0),
    ("0.5 mg 2 times per week", None, 1.0),
    ("0.5 mg x2/week", None, 1.0),
    ("0.5 mg 2 days a week", None, 1.0),
    ("0.5 mg daily x 2 weeks", None, 3.5),
    ("Take 1 tablet by mouth 1 (one) time each day.", 1.0, 7.0),
    ("Take 0.25 mg by mouth every Monday, Wednesday and Friday", None, 0.75),
    ("0.5 mg every 84 hours", None, 1.0),
    ("0.5 mg every 2 weeks", None, 0.25),
    ("1 mg q8h", None, 21.0),
    ("1 mg/day", None, 7.0),
    ("1 mg at bedtime", None, 7.0),
    ("ANASTROZOLE 1 MG ORAL TABLET: TAKE 1 TABLET BY MOUTH EVERY DAY", None, 7.0),
    ("Take 0.5 tablets (0.5 mg total) by mouth 2 (two) times a week.", None, 1.0),
    ("Anastrozole 1 mg: take 1/2 tablet twice weekly", None, 1.0),
    ("take 1/2 tab of 1mg twice weekly", None, 1.0),
    ("1 mg tab po daily", None, 7.0),
    ("0.5 mL of 1 mg/mL suspension twice weekly", None, 1.0),
    ("1 mg daily for 4 weeks, then 0.5 mg twice weekly", None, 7.0),
]


@pytest.mark.parametrize(("text", "strength", "weekly"), TEXT_CASES)
def test_text_sig_gives_weekly_mg(text: str, strength: float | None, weekly: float) -> None:
    dose = parse_dosage([{"text": text}], strength)
    assert dose.weekly_mg == pytest.approx(weekly)
    assert dose.parsed_from == "text"


@pytest.mark.parametrize(
    ("text", "description"),
    [
        ("0.5 mg twice weekly", "0.5 mg twice weekly"),
        ("1mg PO daily", "1 mg once daily"),
        ("0.5mg E3D", "0.5 mg every 3 days"),
        ("1 mg EOD", "1 mg every other day"),
        ("0.5 mg Monday and Thursday", "0.5 mg twice weekly (Mon, Thu)"),
        ("500 mcg twice weekly", "0.5 mg twice weekly"),
        ("1 mg daily PRN", "1 mg once daily as needed"),
        ("take 1 tablet daily", "1 tablet once daily"),
    ],
)
def test_text_description_is_normalised(text: str, description: str) -> None:
    assert parse_dosage([{"text": text}]).description == description


def test_patient_instruction_is_read_when_text_is_missing() -> None:
    dose = parse_dosage([{"patientInstruction": "Take 0.5 mg on Monday and Thursday"}])
    assert dose.weekly_mg == pytest.approx(1.0)


def test_bare_string_is_read_as_dosage_text() -> None:
    assert parse_dosage("0.5 mg twice weekly").weekly_mg == pytest.approx(1.0)


def test_text_tablets_without_strength_give_doses_but_no_mg() -> None:
    dose = parse_dosage([{"text": "1/2 tab twice weekly"}])
    assert (dose.weekly_mg, dose.per_dose_mg, dose.doses_per_week) == (None, None, 2.0)


def test_biweekly_is_ambiguous_and_not_guessed() -> None:
    dose = parse_dosage([{"text": "0.25 mg biweekly"}])
    assert dose.weekly_mg is None
    assert dose.per_dose_mg == pytest.approx(0.25)
    assert "ambiguous" in dose.description


@pytest.mark.parametrize(
    ("text", "weekly"),
    [
        ("avoid sun; 1 mg daily", 7.0),
        ("0.5 mg Mon and Thu, avoid sun", 1.0),
        ("0.5 mg mon/thu/sun", 1.5),
        ("0.5 mg Friday and Sun", 1.0),
    ],
)
def test_word_sun_counts_as_sunday_only_in_a_list_of_days(text: str, weekly: float) -> None:
    assert parse_dosage([{"text": text}]).weekly_mg == pytest.approx(weekly)


def test_weekday_range_counts_every_day_in_it() -> None:
    dose = parse_dosage([{"text": "0.5 mg Mon-Fri"}])
    assert dose.weekly_mg == pytest.approx(2.5)
    assert dose.description == "0.5 mg 5 times weekly (Mon, Tue, Wed, Thu, Fri)"


# --- nothing usable ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dosages", "strength"),
    [
        pytest.param([], None, id="empty-list"),
        pytest.param(None, None, id="none"),
        pytest.param(42, None, id="number"),
        pytest.param([{}], None, id="empty-dosage"),
        pytest.param([1, "x", None, [], {"text": 3}], None, id="junk"),
        pytest.param([{"text": "as directed"}], None, id="as-directed"),
        pytest.param(
            [{"text": "Take as directed by your physician"}], 1.0, id="as-directed-with-strength"
        ),
    ],
)
def test_nothing_usable_gives_the_empty_dose(dosages: object, strength: float | None) -> None:
    assert parse_dosage(dosages, strength) == Dose(None, None, None, "", "none")


@pytest.mark.parametrize(
    "dosages",
    [
        pytest.param(
            [dosage(quantity(1, "tablet", "{tbl}"), repeat=DAILY)], id="structured-tablets"
        ),
        pytest.param([{"text": "take 1 tablet daily"}], id="text-tablets"),
        pytest.param([dosage(quantity(2.5, "mL"), repeat=DAILY)], id="structured-ml"),
        pytest.param([{"text": "2.5 mL daily"}], id="text-ml"),
        pytest.param([dosage(quantity(1), repeat={"frequency": 1})], id="frequency-without-period"),
        pytest.param(
            [dosage(quantity(1), repeat={"frequency": 0, "period": 1, "periodUnit": "d"})],
            id="zero-frequency",
        ),
        pytest.param(
            [dosage(quantity(1), repeat={"period": 1, "periodUnit": "fortnight"})],
            id="unknown-period-unit",
        ),
        pytest.param([dosage(quantity(-1), repeat=DAILY)], id="negative-dose"),
        pytest.param(
            [
                dosage(
                    quantity(1), code={"coding": [{"system": "http://example.org", "code": "BID"}]}
                )
            ],
            id="code-from-other-system",
        ),
        pytest.param([{"text": "0.5 mg"}], id="no-schedule"),
        pytest.param([{"text": "twice weekly"}], id="no-amount"),
    ],
)
def test_dose_that_cannot_be_worked_out_gives_no_weekly_mg(dosages: object) -> None:
    assert parse_dosage(dosages).weekly_mg is None


def test_ml_dose_is_not_multiplied_by_a_tablet_strength() -> None:
    dose = parse_dosage([dosage(quantity(2.5, "mL"), repeat=DAILY)], strength_mg=1.0)
    assert dose.weekly_mg is None
    assert dose.description == "2.5 mL once daily"


# --- properties ----------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=25,
)
numbers = st.integers(-(10**20), 10**20) | st.floats() | st.text(max_size=6) | json_values
sig_words = st.lists(
    st.sampled_from(
        [
            "0.5",
            "1",
            "1/2",
            ".25",
            "0,5",
            "1,000",
            "half",
            "a",
            "of",
            "(",
            ")",
            "mg",
            "mcg",
            "ml",
            "mg/ml",
            "tab",
            "tablet",
            "take",
            "twice",
            "once",
            "2x",
            "/",
            "week",
            "weekly",
            "daily",
            "day",
            "days",
            "every",
            "other",
            "3",
            "q3.5d",
            "e3d",
            "qod",
            "bid",
            "biw",
            "mon",
            "thu",
            "sun",
            "-",
            "fri",
            "to",
            "times",
            "per",
            "prn",
            "x",
            "hours",
            "q",
            "0",
            "99999999999999999999",
            "1e309",
            "m/w/f",
            "tth",
            "biweekly",
            "monthly",
        ]
    ),
    max_size=12,
).map(" ".join)
quantities = st.fixed_dictionaries(
    {},
    optional={
        "value": numbers,
        "unit": st.sampled_from(["mg", "ug", "mcg", "g", "tablet", "TAB", "mL", "1", ""])
        | json_values,
        "code": st.sampled_from(["mg", "ug", "{tbl}", "1", "mL"]) | json_values,
    },
)
repeats = st.fixed_dictionaries(
    {},
    optional={
        "frequency": numbers,
        "period": numbers,
        "periodUnit": st.sampled_from(["s", "min", "h", "d", "wk", "mo", "a", "x"]) | json_values,
        "dayOfWeek": st.lists(st.sampled_from(["mon", "tue", "thu", "xyz"])) | json_values,
        "timeOfDay": st.lists(st.text(max_size=8), max_size=3) | json_values,
        "when": st.lists(st.sampled_from(["MORN", "EVE", "HS"]), max_size=3) | json_values,
    },
)
dosage_dicts = st.fixed_dictionaries(
    {},
    optional={
        "sequence": st.integers(-3, 3) | json_values,
        "text": sig_words | st.text(max_size=40) | json_values,
        "patientInstruction": sig_words | json_values,
        "asNeededBoolean": st.booleans() | json_values,
        "timing": st.fixed_dictionaries(
            {},
            optional={
                "repeat": repeats | json_values,
                "code": st.fixed_dictionaries(
                    {},
                    optional={
                        "coding": st.lists(
                            st.fixed_dictionaries(
                                {},
                                optional={
                                    "system": st.just(GTS) | json_values,
                                    "code": st.sampled_from(["BID", "QD", "WK", "MO"])
                                    | json_values,
                                },
                            ),
                            max_size=2,
                        )
                        | json_values,
                        "text": sig_words | json_values,
                    },
                )
                | json_values,
            },
        )
        | json_values,
        "doseAndRate": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "type": st.just(ORDERED) | json_values,
                    "doseQuantity": quantities | json_values,
                    "doseRange": st.fixed_dictionaries(
                        {}, optional={"low": quantities, "high": quantities}
                    )
                    | json_values,
                },
            ),
            max_size=3,
        )
        | json_values,
    },
)
strengths = st.none() | st.floats() | st.integers(-5, 5)


def assert_well_formed(dose: Dose) -> None:
    assert dose.parsed_from in {"structured", "text", "none"}
    for value in (dose.weekly_mg, dose.per_dose_mg, dose.doses_per_week):
        assert value is None or (math.isfinite(value) and value >= 0)
    if dose.weekly_mg is not None:
        assert dose.per_dose_mg is not None or dose.doses_per_week is not None


@settings(max_examples=300)
@given(json_values, strengths)
def test_arbitrary_json_never_raises(value: object, strength: Any) -> None:
    assert_well_formed(parse_dosage(value, strength))


@settings(max_examples=300)
@given(st.lists(dosage_dicts | json_values, max_size=4), strengths)
@example([{"doseAndRate": [{"doseQuantity": {"value": "0\x1f", "unit": "mg"}}]}], None)
@example([{"doseAndRate": [{"doseQuantity": {"value": 10**400, "unit": "mg"}}]}], 10**400)
def test_dosage_shaped_dicts_never_raise(dosages: list[object], strength: Any) -> None:
    assert_well_formed(parse_dosage(dosages, strength))


@settings(max_examples=300)
@given(st.text() | sig_words, strengths)
def test_arbitrary_text_never_raises(text: str, strength: Any) -> None:
    assert_well_formed(parse_dosage([{"text": text}], strength))
    assert_well_formed(parse_dosage(text, strength))


@given(
    st.floats(0.001, 100),
    st.integers(1, 10),
    st.floats(0.05, 60),
    st.sampled_from([("d", 1.0), ("h", 1 / 24), ("wk", 7.0), ("mo", 30.4375)]),
)
def test_structured_weekly_is_dose_times_frequency_per_period(
    dose_mg: float, frequency: int, period: float, unit: tuple[str, float]
) -> None:
    period_unit, days_per_unit = unit
    repeat = {"frequency": frequency, "period": period, "periodUnit": period_unit}
    dose = parse_dosage([dosage(quantity(dose_mg), repeat=repeat)])
    expected = dose_mg * frequency * 7 / (period * days_per_unit)
    assert dose.weekly_mg == pytest.approx(expected, rel=1e-9)
    assert dose.parsed_from == "structured"


@given(st.floats(0.001, 100), st.integers(1, 10), st.floats(0.05, 60))
def test_tablet_dose_scales_with_strength(tablets: float, frequency: int, strength: float) -> None:
    repeat = {"frequency": frequency, "period": 1, "periodUnit": "wk"}
    dose = parse_dosage([dosage(quantity(tablets, "tablet", "{tbl}"), repeat=repeat)], strength)
    assert dose.weekly_mg == pytest.approx(tablets * strength * frequency, rel=1e-9)
