"""The lazy Bundle parse gives exactly what decoding everything gives, or steps aside."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clinical import evaluate, evaluate_json
from clinical.lazy_bundle import _Judge, read_lazily
from clinical.reader import (
    LAB_OBSERVATION_FIELDS,
    LAB_REFERENCE_RANGE_FIELDS,
    MENOPAUSE_RANGE_VALUESETS,
    MENOPAUSE_REFERENCE_RANGE_FIELDS,
    build_record,
    iter_resources,
    observation_reading,
    observation_reading_of,
)
from clinical.record import LAB_VALUESETS
from clinical.valuesets import ValueSets, build, load
from sandbox.synthetic import bundle_bytes

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)
ROOT = Path(__file__).parents[2]
JSON_FILES = sorted((ROOT / "tests" / "fixtures").glob("*.json")) + sorted(
    (ROOT / "sandbox" / "patients").glob("*.json")
)
VALUESETS = load()


def _same_as_decoding_everything(data: bytes, now: datetime = NOW) -> None:
    """evaluate_json (lazy where it can be) == evaluate over orjson's full parse, and the
    record read from what the lazy parse kept is the very record read from everything."""
    findings = evaluate_json(data, now=now)
    assert findings == evaluate(orjson.loads(data), now=now)
    kept = read_lazily(data, VALUESETS)
    if kept is not None:
        assert vars(build_record(kept, now)) == vars(build_record(orjson.loads(data), now))


def test_the_fixtures_are_found() -> None:
    assert len(JSON_FILES) >= 40


@pytest.mark.parametrize("path", JSON_FILES, ids=lambda path: path.name)
@pytest.mark.parametrize("now", [NOW, datetime(2030, 1, 1, tzinfo=UTC)], ids=["now", "2030"])
def test_every_json_fixture_gives_the_same_findings(path: Path, now: datetime) -> None:
    data = path.read_bytes()
    _same_as_decoding_everything(data, now)
    _same_as_decoding_everything(orjson.dumps(orjson.loads(data)), now)  # compact
    _same_as_decoding_everything(json.dumps(orjson.loads(data), indent="\t").encode(), now)


@pytest.mark.parametrize("n", [10, 30, 100, 1_000, 3_000])
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_synthetic_patients_give_the_same_findings(n: int, seed: int) -> None:
    now = datetime(2025, 6, 1, 12, tzinfo=UTC)
    data = bundle_bytes(n, seed, now)
    kept = read_lazily(data, VALUESETS)
    assert kept is not None  # the lazy path was taken
    assert len(kept) < n if n >= 100 else len(kept) <= n  # and left vital signs undecoded
    _same_as_decoding_everything(data, now)


def _bundle(*resources: Any) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in resources],
    }


PATIENT = {"resourceType": "Patient", "id": "p", "gender": "male", "birthDate": "1970-01-01"}
ESTRADIOL = {
    "resourceType": "Observation",
    "id": "e2",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "2243-4"}]},
    "effectiveDateTime": "2026-10-01",
    "valueQuantity": {"value": 9, "unit": "pg/mL", "code": "pg/mL"},
}
ANASTROZOLE = {
    "resourceType": "MedicationRequest",
    "id": "ai",
    "status": "active",
    "medicationCodeableConcept": {
        "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "199224"}]
    },
}
FULL = _bundle(PATIENT, ESTRADIOL, ANASTROZOLE)

# Shapes the lazy parse leaves to orjson (read_lazily gives None), with the same findings.
NOT_HANDLED = {
    "a single resource": ESTRADIOL,
    "a list of resources": [PATIENT, ESTRADIOL, ANASTROZOLE],
    "a list of Bundles": [FULL, FULL],
    "prefetch values": {
        "patient": PATIENT,
        "labs": _bundle(ESTRADIOL),
        "meds": _bundle(ANASTROZOLE),
    },
    "entry is an object": {"resourceType": "Bundle", "entry": {"resource": ESTRADIOL}},
    "an entry is not an object": {**FULL, "entry": [*FULL["entry"], "stray", None, 3]},
    "Bundle type is not a string": {**FULL, "resourceType": ["Bundle"]},
    "a JSON scalar": "Bundle",
    "null": None,
}


@pytest.mark.parametrize("value", NOT_HANDLED.values(), ids=NOT_HANDLED.keys())
def test_other_shapes_fall_back_to_the_full_parse(value: Any) -> None:
    data = orjson.dumps(value)
    assert read_lazily(data, VALUESETS) is None
    _same_as_decoding_everything(data)


# Shapes the lazy parse handles, keeping what it cannot judge.
HANDLED = {
    "a nested Bundle": _bundle(PATIENT, _bundle(ESTRADIOL, _bundle(ANASTROZOLE))),
    "a resource that is not an object": {
        **FULL,
        "entry": [*FULL["entry"], {"resource": [ESTRADIOL]}],
    },
    "an entry without a resource": {
        **FULL,
        "entry": [*FULL["entry"], {"fullUrl": "x"}, {"resource": None}],
    },
    "a resource without a type": _bundle(PATIENT, {"id": "x"}, ESTRADIOL, ANASTROZOLE),
    "entry is null": {"resourceType": "Bundle", "entry": None},
    "no entry": {"resourceType": "Bundle"},
    "repeated keys": _bundle(PATIENT, ANASTROZOLE),  # see the test
}


@pytest.mark.parametrize("value", HANDLED.values(), ids=HANDLED.keys())
def test_odd_bundles_are_read_as_the_full_parse_reads_them(value: Any) -> None:
    data = orjson.dumps(value)
    assert read_lazily(data, VALUESETS) is not None
    _same_as_decoding_everything(data)


def test_the_last_of_repeated_keys_wins_as_in_orjson() -> None:
    observation = orjson.dumps(ESTRADIOL)[:-1]
    for extra in (
        b',"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]}',  # lab -> vital
        b',"resourceType":"Condition"',
        b',"valueCodeableConcept":null',
    ):
        data = b'{"resourceType":"Bundle","entry":[{"resource":' + observation + extra + b"}}]}"
        _same_as_decoding_everything(data)
    vital = b'{"resourceType":"Observation","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]}'
    relabelled = (
        vital
        + b',"code":{"coding":[{"system":"http://loinc.org","code":"2243-4"}]},"effectiveDateTime":"2026-01-01","valueQuantity":{"value":5,"unit":"pg/mL"}}'
    )
    _same_as_decoding_everything(
        b'{"resourceType":"Bundle","entry":[{"resource":' + relabelled + b"}]}"
    )


def _patient_and(entry: bytes) -> bytes:
    """A Bundle of PATIENT and one more entry, written by hand."""
    return orjson.dumps(_bundle(PATIENT))[:-2] + b"," + entry + b"]}"


def test_the_hand_written_bundles_are_json_but_for_what_is_put_in() -> None:
    unread = b'{"resource":{"resourceType":"Observation","note":"x","value":1}}'
    assert len(orjson.loads(_patient_and(unread))["entry"]) == 2


NOT_JSON = {
    "empty": b"",
    "truncated": orjson.dumps(FULL)[:-3],
    "trailing text": orjson.dumps(FULL) + b" x",
    "NaN in an unread Observation": _patient_and(
        b'{"resource":{"resourceType":"Observation","note":"x","value":NaN}}'
    ),
    "invalid UTF-8 in an unread Observation": _patient_and(
        b'{"resource":{"resourceType":"Observation","note":"\xff","value":1}}'
    ),
    "a lone surrogate in an unread Observation": _patient_and(
        b'{"resource":{"resourceType":"Observation","note":"\\ud800","value":1}}'
    ),
    "a control character in a kept resource": orjson.dumps(_bundle(PATIENT))[:-5] + b'\x01"}}]}',
    "nested too deep": b'{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Observation","x":'
    + b"[" * 2000
    + b"]" * 2000
    + b"}}]}",
    "a byte order mark": b"\xef\xbb\xbf" + orjson.dumps(FULL),
}


@pytest.mark.parametrize("data", NOT_JSON.values(), ids=NOT_JSON.keys())
def test_text_orjson_refuses_is_refused_with_a_value_error(data: bytes) -> None:
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(data)
    with pytest.raises(ValueError, match="not JSON"):
        evaluate_json(data, now=NOW)


def test_text_input_and_non_ascii_bytes_give_the_same_findings() -> None:
    patient = {**PATIENT, "name": [{"text": "José Müller"}]}
    data = orjson.dumps(_bundle(patient, ESTRADIOL, ANASTROZOLE))
    assert read_lazily(data, VALUESETS) is not None
    _same_as_decoding_everything(data)
    assert evaluate_json(data.decode(), now=NOW) == evaluate(orjson.loads(data), now=NOW)


# -- property tests: Observations (and what refers to them) written every way a reader meets

LAB_CODES = sorted({c.code for name in LAB_VALUESETS for c in VALUESETS.codes(name)})
OTHER_CODES = ["8867-4", "29463-7", "718-7", "C50.911", "E29.1", "199224", "77080", "", "x"]
SYSTEMS = [
    "http://loinc.org",
    "urn:oid:2.16.840.1.113883.6.1",  # LOINC's OID, an alias
    "http://snomed.info/sct",
    "http://hl7.org/fhir/sid/icd-10-cm",
    "http://hl7.org/fhir/sid/icd-10",
    "http://www.nlm.nih.gov/research/umls/rxnorm",
    "http://www.nlm.nih.gov/research/umls/rxnorm/",
    "https://fhir.example-ehr.org/CodeSystem/lab-order-code",
    "",
]
odd_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
)
codes = st.one_of(
    st.sampled_from(LAB_CODES + OTHER_CODES),
    st.builds(
        lambda code, pad: pad + code + pad,
        st.sampled_from(LAB_CODES),
        st.sampled_from([" ", "\t", "\n "]),
    ),
    st.builds(str.lower, st.sampled_from(["C50.911", "e29.1", "C509"])),
    odd_values,
    st.lists(st.sampled_from(LAB_CODES), max_size=1),
)
codings = st.one_of(
    st.fixed_dictionaries(
        {"system": st.one_of(st.sampled_from(SYSTEMS), odd_values), "code": codes},
        optional={"display": st.text(max_size=6)},
    ),
    odd_values,
)
concepts = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "coding": st.one_of(st.lists(codings, max_size=3), odd_values),
            "text": st.text(max_size=6),
        },
    ),
    odd_values,
    st.lists(codings, max_size=2),
)
statuses = st.one_of(
    st.sampled_from(
        ["final", "preliminary", "amended", "entered-in-error", "cancelled", "registered"]
    ),
    odd_values,
    st.lists(st.just("final"), max_size=1),
)
CONDITION_CONCEPTS = [
    {"coding": [{"system": "http://snomed.info/sct", "code": code}]}
    for code in ("76498008", "22636003", "64859006")
]
dates = st.one_of(
    st.sampled_from(["2026-10-01", "2025-03", "2024", "2026-10-01T08:00:00-04:00", "bad"]),
    odd_values,
)
quantities = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "value": st.one_of(st.floats(-1e6, 1e6), st.integers(-10, 1000), odd_values),
            "unit": st.sampled_from(["pg/mL", "pmol/L", "U/L", "ng/dL", "%", "", "furlongs"]),
            "comparator": st.sampled_from(["<", ">=", "~"]),
        },
    ),
    odd_values,
)
observations = st.fixed_dictionaries(
    {"resourceType": st.just("Observation")},
    optional={
        "id": st.sampled_from(["o1", "o2", "o3"]),
        "status": statuses,
        "code": concepts,
        "valueCodeableConcept": st.one_of(st.none(), st.sampled_from(CONDITION_CONCEPTS), concepts),
        "effectiveDateTime": dates,
        "effectivePeriod": st.one_of(
            st.fixed_dictionaries({}, optional={"start": dates}), odd_values
        ),
        "issued": dates,
        "valueQuantity": quantities,
        "valueString": st.sampled_from(["<5 pg/mL", "12", "pending"]),
        "valueInteger": st.one_of(st.integers(-10, 100), odd_values),
        "effectiveInstant": dates,
        "method": st.one_of(st.fixed_dictionaries({}, optional={"text": odd_values}), odd_values),
        "referenceRange": st.one_of(
            st.lists(
                st.fixed_dictionaries(
                    {},
                    optional={"high": quantities, "low": quantities, "text": st.text(max_size=4)},
                ),
                max_size=2,
            ),
            odd_values,
        ),
        # fields no rule reads: skipped undecoded in a lab result
        "performer": st.lists(st.fixed_dictionaries({"reference": st.just("Organization/l")})),
        "interpretation": st.one_of(st.lists(concepts, max_size=1), odd_values),
    },
)
reports = st.fixed_dictionaries(
    {"resourceType": st.just("DiagnosticReport"), "id": st.just("r")},
    optional={
        "status": statuses,
        "code": concepts,
        "effectiveDateTime": dates,
        "result": st.lists(
            st.fixed_dictionaries(
                {
                    "reference": st.sampled_from(
                        ["Observation/o1", "Observation/o2", "#c", "Observation/o3/_history/2"]
                    )
                }
            ),
            max_size=3,
        ),
        "contained": st.lists(st.builds(lambda o: {**o, "id": "c"}, observations), max_size=1),
    },
)
other_resources = st.sampled_from([PATIENT, ANASTROZOLE, ESTRADIOL, {"resourceType": "Bundle"}])
entries = st.one_of(
    st.builds(
        lambda resource: {"resource": resource}, st.one_of(observations, reports, other_resources)
    ),
    st.builds(lambda inner: {"resource": _bundle(*inner)}, st.lists(observations, max_size=2)),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(entries, max_size=8), st.sampled_from([None, 2, "\t"]))
def test_bundles_of_odd_observations_give_the_same_findings(items: list[Any], indent: Any) -> None:
    bundle = {"resourceType": "Bundle", "entry": items}
    data = json.dumps(bundle, indent=indent).encode() if indent else orjson.dumps(bundle)
    _same_as_decoding_everything(data)


@settings(max_examples=400, deadline=None)
@given(observations)
def test_an_observation_judged_unread_adds_nothing_to_the_record(
    observation: dict[str, Any],
) -> None:
    """`observation_reading` keeps in step with the reader: what it calls unread, the reader
    drops."""
    code = observation.get("code")
    codings = code.get("coding") if isinstance(code, dict) else None
    well_formed = (
        (code is None or isinstance(code, dict))
        and (codings is None or isinstance(codings, list))
        and all(isinstance(coding, dict) for coding in codings or ())
    )
    if observation.get("valueCodeableConcept") is not None or not well_formed:
        return  # the lazy parse keeps these without asking
    pairs = [(coding.get("system"), coding.get("code")) for coding in codings or ()]
    if observation_reading(VALUESETS, observation.get("status"), pairs) == "unread":
        assert vars(build_record([PATIENT, observation], NOW)) == vars(build_record([PATIENT], NOW))


def test_a_number_beyond_double_range_is_refused_only_where_it_is_decoded() -> None:
    """The one known difference (clinical/lazy_bundle.py): msgspec skips numbers unchecked."""
    vital = b'{"resourceType":"Observation","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"valueQuantity":{"value":1e400}}'
    with pytest.raises(ValueError, match="not JSON"):  # in a resource that is read
        evaluate_json(_patient_and(b'{"resource":{"resourceType":"Patient","x":1e400}}'), now=NOW)
    unread = _patient_and(b'{"resource":' + vital + b"}")
    assert evaluate_json(unread, now=NOW) == evaluate(_bundle(PATIENT), now=NOW)


def test_a_code_judged_once_is_judged_again_under_another_status() -> None:
    """Verdicts are remembered per (status, code text): the same estradiol code, entered in
    error and then final, is dropped once and kept once."""
    wrong = {**ESTRADIOL, "id": "e2-wrong", "status": "entered-in-error"}
    data = orjson.dumps(_bundle(PATIENT, wrong, ESTRADIOL))
    kept = read_lazily(data, VALUESETS)
    assert kept is not None
    assert [r.get("id") for r in kept] == ["p", "e2"]
    _same_as_decoding_everything(data)


def test_the_same_code_text_gives_the_same_verdict_for_every_result() -> None:
    """A long record repeats a handful of code texts: each result of a read code is kept, each
    result of an unread one dropped, however often the text recurs."""
    vital = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "valueQuantity": {"value": 60},
    }
    results = [
        {**resource, "id": f"{resource['code']['coding'][0]['code']}-{day}",
         "effectiveDateTime": f"2026-10-{day:02d}"}
        for day in range(1, 21)
        for resource in (ESTRADIOL, vital)
    ]  # fmt: skip
    data = orjson.dumps(_bundle(PATIENT, *results))
    kept = read_lazily(data, VALUESETS)
    assert kept is not None
    assert [r["id"] for r in kept[1:]] == [f"2243-4-{day}" for day in range(1, 21)]
    _same_as_decoding_everything(data)


def test_entries_with_no_id_are_named_by_their_urn_uuid_full_url_as_in_the_full_parse() -> None:
    """A transaction Bundle: the order names its drug, and the report its result, by the
    fullUrl of an entry that has no id."""
    medication = {
        "resourceType": "Medication",
        "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                             "code": "151124"}]},
    }  # fmt: skip
    order = {k: v for k, v in ANASTROZOLE.items() if k not in ("id", "medicationCodeableConcept")}
    order["medicationReference"] = {"reference": "urn:uuid:med-1"}
    result = {k: v for k, v in ESTRADIOL.items() if k not in ("id", "effectiveDateTime")}
    report = {
        "resourceType": "DiagnosticReport",
        "status": "final",
        "code": {"text": "Estradiol"},
        "effectiveDateTime": "2026-09-15",
        "result": [{"reference": "urn:uuid:e2-1"}],
    }
    urls = ["urn:uuid:p", "urn:uuid:med-1", "urn:uuid:rx-1", "urn:uuid:e2-1", "urn:uuid:r-1"]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": url, "resource": resource}
            for url, resource in zip(
                urls, [PATIENT, medication, order, result, report], strict=True
            )
        ],
    }
    data = orjson.dumps(bundle)
    kept = read_lazily(data, VALUESETS)
    assert kept is not None
    assert [r.get("id") for r in kept] == ["p", "med-1", "rx-1", "e2-1", "r-1"]
    record = build_record(kept, NOW)
    assert record.courses("anastrozole")
    latest = record.latest("estradiol-serum")
    assert latest is not None and latest.date.date().isoformat() == "2026-09-15"
    _same_as_decoding_everything(data)


# -- a lab result is decoded with only the fields the reader reads --------------------------------


class _Recording(dict[str, Any]):
    """A resource that notes every field read from it."""

    def __init__(self, resource: dict[str, Any], read: set[str]) -> None:
        super().__init__(resource)
        self.read = read

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key))
        return super().__contains__(key)


def _read_as_a_lab(resource: dict[str, Any]) -> bool:
    return (
        resource.get("resourceType") == "Observation"
        and observation_reading_of(VALUESETS, resource) == "lab"
    )


def _fields_the_reader_reads_from_labs(resources: list[dict[str, Any]]) -> set[str]:
    """Fields read from lab results, and from their reference ranges' entries as
    "referenceRange.<field>"."""
    read: set[str] = set()
    ranges: list[tuple[str, _Recording]] = []
    wrapped = []
    for resource in resources:
        if _read_as_a_lab(resource):
            # estradiol and FSH ranges are decoded with more fields (the postmenopausal range)
            menopause = bool(
                VALUESETS.names_for_codeable(resource.get("code")) & MENOPAUSE_RANGE_VALUESETS
            )
            prefix = "menopauseRange" if menopause else "referenceRange"
            entries = resource.get("referenceRange")
            if isinstance(entries, list):
                entries = [_Recording(e, set()) if isinstance(e, dict) else e for e in entries]
                ranges += [(prefix, e) for e in entries if isinstance(e, _Recording)]
                resource = {**resource, "referenceRange": entries}
            resource = _Recording(resource, read)
        wrapped.append(resource)
    build_record(wrapped, NOW)
    return read | {f"{prefix}.{field}" for prefix, entry in ranges for field in entry.read}


DECODED_LAB_FIELDS = (
    set(LAB_OBSERVATION_FIELDS)
    | {f"referenceRange.{field}" for field in LAB_REFERENCE_RANGE_FIELDS}
    | {f"menopauseRange.{field}" for field in MENOPAUSE_REFERENCE_RANGE_FIELDS}
)


def test_the_reader_reads_no_field_of_a_lab_result_that_is_not_decoded() -> None:
    """Over every fixture and synthetic patient: the fields read from lab results are among
    LAB_OBSERVATION_FIELDS, the only ones `read_lazily` decodes of one, and those read from
    a reference range among LAB_REFERENCE_RANGE_FIELDS. A field the reader starts reading
    must be added there, or this fails."""
    read: set[str] = set()
    for path in JSON_FILES:
        read |= _fields_the_reader_reads_from_labs(
            list(iter_resources(json.loads(path.read_text())))
        )
    for n, seed in ((100, 0), (100, 1), (1000, 2)):
        resources = list(iter_resources(orjson.loads(bundle_bytes(n, seed, NOW))))
        read |= _fields_the_reader_reads_from_labs(resources)
    assert {"code", "valueQuantity", "effectiveDateTime", "referenceRange"} <= read
    assert "referenceRange.high" in read or "menopauseRange.high" in read
    assert read <= DECODED_LAB_FIELDS


@settings(max_examples=300, deadline=None)
@given(st.lists(st.builds(lambda o: {**o, "valueCodeableConcept": None}, observations), max_size=4))
def test_odd_lab_results_are_read_from_the_decoded_fields_only(items: list[Any]) -> None:
    assert _fields_the_reader_reads_from_labs([PATIENT, *items]) <= DECODED_LAB_FIELDS


def test_a_lab_result_keeps_every_field_the_reader_reads_and_drops_the_rest() -> None:
    high = {"value": 40, "unit": "pg/mL"}
    lab = {
        **ESTRADIOL,
        "method": {"text": "LC-MS/MS"},
        "referenceRange": [
            {"low": {"value": 10, "unit": "pg/mL"}, "high": high, "text": "10-40", "age": {}}
        ],
        "performer": [{"reference": "Organization/lab"}],
        "meta": {"versionId": "3"},
        "interpretation": [{"text": "Normal"}],
    }
    kept = read_lazily(orjson.dumps(_bundle(PATIENT, lab)), VALUESETS)
    assert kept is not None
    assert kept[1] == {
        **{k: v for k, v in lab.items() if k in LAB_OBSERVATION_FIELDS},
        # a range's bounds, type and text (the lab's postmenopausal interval); not its age
        "referenceRange": [{"low": {"value": 10, "unit": "pg/mL"}, "high": high, "text": "10-40"}],
    }
    _same_as_decoding_everything(orjson.dumps(_bundle(PATIENT, lab)))


@pytest.mark.parametrize(
    "ranges",
    [{"high": {"value": 40}}, ["10-40"], [None, {"high": {"value": 40}}], [{"high": "40"}], None],
    ids=["not-a-list", "text", "null-entry", "high-text", "null"],
)
def test_a_reference_range_of_another_shape_is_read_as_the_full_parse_reads_it(
    ranges: Any,
) -> None:
    """Only lists of objects are decoded narrowly; any other shape falls back to orjson."""
    lab = {**ESTRADIOL, "referenceRange": ranges}
    data = orjson.dumps(_bundle(PATIENT, lab))
    kept = read_lazily(data, VALUESETS)
    assert kept is not None and kept[1]["referenceRange"] == ranges
    _same_as_decoding_everything(data)


def test_results_that_share_a_code_text_share_one_decoded_code() -> None:
    """A code text is decoded once and its dict shared by every result that carries it (the
    reader never changes a resource); the record is the one read from everything."""
    results = [{**ESTRADIOL, "id": f"e{day}", "effectiveDateTime": f"2026-10-{day:02d}"}
               for day in range(1, 4)]  # fmt: skip
    data = orjson.dumps(_bundle(PATIENT, *results))
    kept = read_lazily(data, VALUESETS)
    assert kept is not None
    assert kept[1]["code"] == ESTRADIOL["code"]
    assert kept[1]["code"] is kept[2]["code"] is kept[3]["code"]
    _same_as_decoding_everything(data)


def test_a_number_beyond_double_range_in_a_lab_results_code_is_refused() -> None:
    """As orjson refuses it: the code is decoded (with the verdict), so the number is seen."""
    lab = orjson.dumps(ESTRADIOL).replace(b'"coding":[', b'"x":1e400,"coding":[', 1)
    assert b"1e400" in lab
    with pytest.raises(ValueError, match="not JSON"):
        evaluate_json(_patient_and(b'{"resource":' + lab + b"}"), now=NOW)


def test_an_integer_beyond_64_bits_in_a_lab_result_is_read_exactly() -> None:
    """The second known difference (clinical/lazy_bundle.py): msgspec reads an integer beyond
    64 bits exactly, where orjson reads the nearest double. FHIR's integer is 32 bits, so only
    invalid data meets it, and a decimal gives the same number either way."""
    big = 10**25
    integer = {**ESTRADIOL, "valueInteger": big}
    integer.pop("valueQuantity", None)
    kept = read_lazily(json.dumps(_bundle(PATIENT, integer)).encode(), VALUESETS)
    assert kept is not None and kept[1]["valueInteger"] == big  # orjson: float(big)
    decimal = {**ESTRADIOL, "valueQuantity": {"value": big, "unit": "pg/mL"}}
    _same_as_decoding_everything(json.dumps(_bundle(PATIENT, decimal)).encode())


# -- verdicts remembered across reads ---------------------------------------------------------------


def _valuesets_without(name: str) -> ValueSets:
    document = json.loads(resources.files("clinical").joinpath("data/valuesets.json").read_text())
    document["valuesets"][name]["codes"] = []
    return build(document)


def test_verdicts_are_remembered_per_value_sets_never_shared_between_them() -> None:
    """The same estradiol text is a lab result under the packaged value sets and unread under
    value sets without estradiol, in reads one after the other."""
    data = orjson.dumps(_bundle(PATIENT, ESTRADIOL))
    without = _valuesets_without("estradiol-serum")
    for _ in range(2):
        assert [r.get("id") for r in read_lazily(data, VALUESETS) or ()] == ["p", "e2"]
        assert [r.get("id") for r in read_lazily(data, without) or ()] == ["p"]


def test_a_judge_forgets_everything_beyond_its_bound_and_judges_on() -> None:
    judge = _Judge(VALUESETS, max_readings=3)
    codes = [
        orjson.dumps({"coding": [{"system": "http://loinc.org", "code": f"x-{i}"}]})
        for i in range(7)
    ]
    lab = orjson.dumps(ESTRADIOL["code"])
    for raw in [*codes, lab]:
        judge.reading("final", msgspec.Raw(raw))
        assert len(judge.readings) <= 3
    assert judge.reading("final", msgspec.Raw(lab))[0] == "lab"
    assert judge.reading("final", msgspec.Raw(codes[0]))[0] == "unread"
