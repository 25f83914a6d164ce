"""FHIR R4 JSON (plain dicts) -> PatientRecord: only what the rules read, read tolerantly.

Real EHR data is messy: a resource that cannot be read is left out and the record says so
(`data_gaps`); nothing here raises on bad input.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from functools import cache
from typing import Any, Literal

from clinical.dosage import NO_DOSE, parse_dosage
from clinical.fhirdates import (
    DAYS_PER_MONTH,
    DAYS_PER_YEAR,
    as_aware,
    parse_fhir_date,
    parse_fhir_datetime,
    parse_fhir_period_end,
)
from clinical.record import (
    CONDITION_VALUESETS,
    DEXA,
    DRUG_CLASSES,
    DRUG_VALUESETS,
    LAB_VALUESETS,
    ORDERABLE_VALUESETS,
    ConditionEntry,
    Event,
    LabResult,
    MedicationCourse,
    PatientRecord,
    SexForClinicalUse,
    later,
    newest_first,
    sent_text,
)
from clinical.units import KIND_OF_VALUESET, UNIT_OF_CODE, canonical_unit, normalise
from clinical.valuesets import ValueSets, load

SPCU_URL = "http://hl7.org/fhir/StructureDefinition/patient-sexParameterForClinicalUse"
_SPCU_SEX = {"female-typical": "female", "male-typical": "male"}
_DICOM_BONE_DENSITOMETRY = (
    "BMD"  # DICOM modality code for bone mineral densitometry (weak evidence)
)

# Observation.status: which results count, and which are preferred on the same day.
_IGNORED_STATUS = frozenset({"entered-in-error", "cancelled", "registered"})
_IGNORED_MED_STATUS = frozenset({"entered-in-error", "cancelled", "not-taken", "not-done"})
# MedicationRequest.intent: only an order is therapy; a proposal, plan or option is not yet
# (FHIR R4 medicationrequest-intent). No intent (required in FHIR, missing in some exports)
# is read as an order rather than dropped.
_THERAPY_INTENTS = frozenset(
    {"order", "original-order", "reflex-order", "filler-order", "instance-order", None}
)
# A statement saying the drug was stopped, finished or not taken (FHIR R4
# medication-statement-status): it ends an older order of the drug that is still "active".
_STOPPED_STATEMENT_STATUS = frozenset({"stopped", "completed", "not-taken"})
# A List entry says a medication was stopped by `deleted` or by a flag in these words.
_STOPPED_WORDS = re.compile(
    r"\b(?:stop\w*|discontinu\w*|ceased?|cancell?ed|deleted|removed|inactivated)\b", re.IGNORECASE
)
_UNCONFIRMED = frozenset({"provisional", "differential", "unconfirmed"})
_ACTIVE_CLINICAL = frozenset({"active", "recurrence", "relapse"})
_DISCOUNTED_VERIFICATION = frozenset({"entered-in-error", "refuted"})
_ORDER_STATUS = frozenset({"active", "on-hold", "draft"})

# What a reader raises on a resource malformed beyond what it tolerates.
_UNREADABLE = (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError)

_VALUE_STRING = re.compile(
    r"^\s*(<=|>=|<|>|less than|below|under|greater than|above|over)?\s*(\d+(?:[.,]\d+)?)\s*(.*?)\s*$",
    re.IGNORECASE,
)
_COMPARATOR_WORDS = {
    "less than": "<",
    "below": "<",
    "under": "<",
    "greater than": ">",
    "above": ">",
    "over": ">",
}
# An abnormal flag some labs append to a result written as text ("12.0 pg/mL (L)", "55 H",
# "3 pg/mL *"): not part of the unit.
_RESULT_FLAG = re.compile(r"(?:\s+\(?(?:HH|LL|H|L|A)\)?|\s*\*+)$")
# Products given in clinic at long intervals: a completed order of one is a dose given, and
# the patient is on it until the next (`MedicationCourse.covered_until`).
_LONG_ACTING = frozenset({"gnrh-agonists", "bone-protective-therapy"})
# A dose's labelled interval, by a name in the product text and its mg (None: any other
# strength, the shortest interval, so that a dose is never taken to last longer than it does).
_DOSING_INTERVAL_DAYS: tuple[tuple[str, float | None, int], ...] = (
    ("denosumab", None, 183),  # Prolia PI 2.1: 60 mg every 6 months
    # Reclast PI 2.2: 5 mg once a year (ASCO-CCO 2017, adjuvant: 4 mg every 6 months)
    ("zoledronic", None, 365),
    ("goserelin", 10.8, 84),  # Zoladex 10.8 mg PI: every 12 weeks
    ("goserelin", None, 28),  # Zoladex 3.6 mg PI: every 28 days
    ("leuprolide", 45, 183),  # Lupron Depot / Eligard PI: 45 mg every 6 months
    ("leuprolide", 30, 122),  # 30 mg every 4 months
    ("leuprolide", 22.5, 91),  # 22.5 mg every 3 months
    ("leuprolide", 11.25, 91),  # Lupron Depot-3 Month 11.25 mg
    ("leuprolide", None, 28),  # 3.75 / 7.5 mg monthly
    ("triptorelin", 22.5, 168),  # Trelstar PI: 22.5 mg every 24 weeks
    ("triptorelin", 11.25, 84),  # 11.25 mg every 12 weeks
    ("triptorelin", None, 28),  # 3.75 mg every 4 weeks
)
_N_MONTH = re.compile(r"\b(\d+)-month\b")
_LONGEST_INTERVAL_DAYS = 36_525.0
_PERIOD_DAYS = {"h": 1 / 24, "d": 1.0, "wk": 7.0, "mo": DAYS_PER_MONTH, "a": DAYS_PER_YEAR}
# A result, report, document or order dated after "now" is not one yet (a typing error, or a
# clock or time zone off): left out and said, rather than taken as the newest. Times are
# compared as aware instants; a date without a time is that day (its midnight, UTC), so
# today's date is never "after now". A few minutes' leeway absorbs clocks set apart.
_FUTURE_LEEWAY = timedelta(minutes=5)
# A DXA named only in words (Epic sends procedure and document types in local codes only).
_DXA_WORDS = re.compile(
    r"\b(?:dxa|dexa|bone\s+(?:mineral\s+)?densit\w*|densitometr\w*)\b", re.IGNORECASE
)
# Code systems whose every drug has a code: a code of one of them that no value set holds is
# simply not one of our drugs. Any other system (a national or local code) is read by its name.
_KNOWN_DRUG_SYSTEMS = frozenset(
    {
        "http://www.nlm.nih.gov/research/umls/rxnorm",
        "http://snomed.info/sct",
        "http://www.whocc.no/atc",
    }
)
# Receptor results and the last menstrual period: read whole by the reader (not as lab values).
WHOLE_OBSERVATION_VALUESETS = frozenset(
    {"estrogen-receptor-test", "progesterone-receptor-test", "last-menstrual-period"}
)
_RECEPTOR_TESTS = frozenset({"estrogen-receptor-test", "progesterone-receptor-test"})
_ANSWERS = frozenset({"positive-answer", "negative-answer"})
# ASCO/CAP 2020 (Allison, JCO 38:1346): ER or PR in >= 1% of tumour cells is positive.
_RECEPTOR_POSITIVE_PERCENT = 1.0
_MASS_SPECTROMETRY = re.compile(
    r"mass\s*spec|lc[\s/-]*ms|ms\s*/\s*ms|gc[\s/-]*ms|tandem", re.IGNORECASE
)
# LOINC 72873-3: estradiol "by High sensitivity method".
_SENSITIVE_CODES = frozenset({"72873-3"})
_STRENGTH_MG = re.compile(r"(\d+(?:\.\d+)?)\s*MG(?![A-Z/])", re.IGNORECASE)


_NONE: frozenset[str] = frozenset()
_DXA_REPORTS = frozenset({"dxa-report"})
_MENOPAUSE_PROCEDURES = frozenset({"postmenopausal", "bilateral-oophorectomy"})
_PROCEDURE_VALUESETS = frozenset({DEXA}) | _MENOPAUSE_PROCEDURES
# statuses of a medication that is, or may be, taken now (an unreadable one is said)
_CURRENT_OR_GIVEN = frozenset({"active", "on-hold", "draft", "intended", "in-progress", ""})
_MENOPAUSE_KINDS = frozenset({"estradiol", "fsh"})
_SENSITIVE_SUFFIXES = tuple(f" {code}" for code in sorted(_SENSITIVE_CODES))


@cache
def _kind_of(groups: frozenset[str]) -> str | None:
    """The quantity kind (estradiol, enzyme...) whose unit a value set's results are read in."""
    return next((KIND_OF_VALUESET[g] for g in sorted(groups) if g in KIND_OF_VALUESET), None)


# ---------------------------------------------------------------------------------------------
# Reading resources


def iter_resources(source: Any) -> Iterator[dict[str, Any]]:
    """Resources from a Bundle, a list of resources/Bundles, or CDS Hooks prefetch values."""
    if isinstance(source, list):
        for item in source:
            # A resource, the usual item, is yielded here rather than by a generator of its own.
            resource_type = item.get("resourceType") if isinstance(item, dict) else None
            if isinstance(resource_type, str) and resource_type != "Bundle":
                yield item
            else:
                yield from iter_resources(item)
        return
    if not isinstance(source, dict):
        return
    resource_type = source.get("resourceType")
    if resource_type != "Bundle":
        if isinstance(resource_type, str):
            yield source
        return
    entries = source.get("entry")
    if not isinstance(entries, list):
        return
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict):
            if resource.get("resourceType") == "Bundle":
                yield from iter_resources(resource)
            elif isinstance(resource.get("resourceType"), str):
                yield (
                    resource if "id" in resource else with_entry_id(resource, entry.get("fullUrl"))
                )


def with_entry_id(resource: dict[str, Any], full_url: Any) -> dict[str, Any]:
    """A Bundle entry's resource; one with no id and a "urn:uuid:X" fullUrl (a transaction
    Bundle's new resources) as a copy with the id X, so that references to that fullUrl
    (`local_reference`) and the evidence name it."""
    if (
        "id" not in resource
        and isinstance(full_url, str)
        and full_url.startswith("urn:uuid:")
        and full_url != "urn:uuid:"
    ):
        return {**resource, "id": full_url.removeprefix("urn:uuid:")}
    return resource


class MixedPatientsError(ValueError):
    """The resources are about more than one patient: a caller error, as text that is not
    JSON is. Evaluate one patient at a time (`population` for an export of many)."""

    def __init__(self, patients: list[str]) -> None:
        self.patients = patients
        super().__init__(
            f"the resources are about {len(patients)} patients ({', '.join(patients)}): "
            "evaluate one patient at a time"
        )


class _Reader:
    def __init__(self, now: datetime, valuesets: ValueSets) -> None:
        self.now = now
        self.latest_date = now + _FUTURE_LEEWAY
        self.vs = valuesets
        self.record = PatientRecord(as_of=now)
        self.by_ref: dict[str, dict[str, Any]] = {}
        # (ingredients, date, ref said, target) of a later List or statement saying stopped
        self.stops: list[tuple[frozenset[str], datetime, str, str]] = []
        self.report_dates: dict[str, datetime] = {}
        self.seen_labs: set[tuple[str, str, datetime]] = set()
        # Memos for one read: the results of a draw share their time, and a handful of codes
        # recur across thousands of results, so each is parsed or labelled once.
        self.datetimes: dict[str, datetime | None] = {}
        self.intersections: dict[tuple[frozenset[str], frozenset[str]], frozenset[str]] = {}
        self.labels: dict[tuple[str, str], str] = {}
        self.matches: dict[int, tuple[Any, frozenset[str], tuple[frozenset[str], str, str]]] = {}

    def gap(self, text: str) -> None:
        if text not in self.record.data_gaps:
            self.record.data_gaps.append(text)

    # -- codes ---------------------------------------------------------------------------------

    def groups(self, concept: Any, wanted: frozenset[str]) -> frozenset[str]:
        names = self.vs.names_for_codeable(concept)
        return self.within(names, wanted) if names else names

    def within(self, names: frozenset[str], wanted: frozenset[str]) -> frozenset[str]:
        """`names & wanted`, computed once per pair: the same frozenset object then comes back
        for every result of a code, so its hash (and `_kind_of`'s cache) is reused."""
        key = (names, wanted)
        found = self.intersections.get(key)
        if found is None:
            found = self.intersections[key] = names & wanted
        return found

    def matched(self, concept: Any, wanted: frozenset[str]) -> tuple[frozenset[str], str, str]:
        """The wanted value sets a concept is in, with ("ICD-10-CM C50.911", display) for the
        evidence, from one pass over its codings. Remembered per concept object: resources
        from `lazy_bundle` share one decoded code per distinct code text."""
        memo = self.matches.get(id(concept))  # the memo holds the concept: ids stay unique
        if memo is not None and memo[1] is wanted:
            return memo[2]
        found = self._matched(concept, wanted)
        self.matches[id(concept)] = (concept, wanted, found)
        return found

    def _matched(self, concept: Any, wanted: frozenset[str]) -> tuple[frozenset[str], str, str]:
        names, coding = self.vs.match(concept)
        if not names:
            return names, "", ""
        names = self.within(names, wanted)
        if not names or coding is None:
            return names, "", ""
        label = self.label(coding["system"], coding["code"])
        text = concept.get("text") if isinstance(concept, dict) else None
        return names, label, str(coding.get("display") or text or label)

    def label(self, system: str, code: str) -> str:
        """ "LOINC 2243-4" for a coding that matched (so both are strings), made once per code."""
        key = (system, code)
        label = self.labels.get(key)
        if label is None:
            label = self.labels[key] = f"{_SYSTEM_LABEL.get(system, '')} {code}".strip()
        return label

    def datetime_of(self, value: Any) -> datetime | None:
        """`parse_fhir_datetime`, once per distinct string."""
        if not isinstance(value, str):
            return None
        try:
            return self.datetimes[value]
        except KeyError:
            parsed = self.datetimes[value] = parse_fhir_datetime(value)
            return parsed

    def effective(self, resource: dict[str, Any]) -> datetime | None:
        """When an Observation or DiagnosticReport was true: effective[x], else issued."""
        when = self.datetime_of(resource.get("effectiveDateTime"))
        if when is not None:
            return when
        period = resource.get("effectivePeriod")
        if isinstance(period, dict):
            when = self.datetime_of(period.get("start")) or self.datetime_of(period.get("end"))
            if when is not None:
                return when
        return self.datetime_of(resource.get("effectiveInstant")) or self.datetime_of(
            resource.get("issued")
        )

    def first_coding(self, concept: Any, groups: frozenset[str]) -> tuple[str, str]:
        """("ICD-10-CM C50.911", display) for the coding that matched, for the evidence."""
        if isinstance(concept, dict):
            for coding in concept.get("coding") or ():
                if isinstance(coding, dict) and (
                    self.vs.names_for_code(coding.get("system"), coding.get("code")) & groups
                ):
                    label = self.label(coding["system"], coding["code"])
                    return label, str(coding.get("display") or concept.get("text") or label)
            return "", str(concept.get("text") or "")
        return "", ""

    # -- dispatch ------------------------------------------------------------------------------

    def read(self, resources: Iterable[dict[str, Any]]) -> PatientRecord:
        by_type: dict[str, list[dict[str, Any]]] = {}
        for resource in resources:
            resource_type = resource["resourceType"]
            group = by_type.get(resource_type)
            if group is None:
                by_type[resource_type] = [resource]
            else:
                group.append(resource)
        check_one_patient(by_type)
        for resource_type in _REFERENCED_TYPES:  # targets of medicationReference, reasonReference
            for resource in by_type.get(resource_type, ()):
                if isinstance(resource.get("id"), str):
                    self.by_ref[f"{resource_type}/{resource['id']}"] = resource
        patients = by_type.get("Patient")
        if patients and len(patients) > 1:  # the Patient with an id is the one read
            patients.sort(key=lambda patient: not isinstance(patient.get("id"), str))
        for resource_type, reader in _READERS:
            for resource in by_type.get(resource_type, ()):
                try:
                    reader(self, resource)
                except _UNREADABLE:
                    # Malformed beyond what the readers tolerate: leave it out, and say so.
                    self.gap(f"{resource_type}/{_id_of(resource)} could not be read")
        self.apply_stops()
        for results in self.record.labs.values():
            results.sort(key=newest_first, reverse=True)
        # By reference, not by the order the resources came in: the same chart then gives the
        # same findings whichever course a rule reads first.
        record = self.record
        record.medications.sort(key=lambda course: course.ref)
        if len(record.data_gaps) > 1:
            record.data_gaps.sort()
        for gaps in record.gaps_by_valueset.values():
            gaps.sort()
        record.unread_medications.sort()
        return record

    # -- Patient -------------------------------------------------------------------------------

    def patient(self, resource: dict[str, Any]) -> None:
        if self.record.patient_ref:
            return
        self.record.patient_ref = f"Patient/{resource.get('id', '')}"
        self.record.birth_date = parse_fhir_date(resource.get("birthDate"))
        self.record.patient_name = _human_name(resource.get("name"))
        self.record.sex = self.sex_for_clinical_use(resource)
        self.record.deceased = self.deceased(resource)

    def deceased(self, patient: dict[str, Any]) -> str:
        """How the record says the patient died, or "": deceasedBoolean true, or a
        deceasedDateTime on or before now (one that cannot be read still says so)."""
        if patient.get("deceasedBoolean") is True:
            return "deceasedBoolean true"
        when = patient.get("deceasedDateTime")
        if when is None or when == "":
            return ""
        died = parse_fhir_datetime(when)
        if died is not None and died > self.latest_date:
            return ""  # judged as of a moment before the death
        return f"deceasedDateTime {when}" if isinstance(when, str) else "deceasedDateTime"

    def sex_for_clinical_use(self, patient: dict[str, Any]) -> SexForClinicalUse:
        """HL7 Sex Parameter for Clinical Use: a current female-typical or male-typical value
        wins over Patient.gender, which for many transgender patients says gender identity
        (Gender Harmony); a parameter with a period counts only while it is current.
        Undetermined only when the current parameter is specified or unknown, when current
        ones disagree, or with none when gender is unknown, other or missing. Never guessed."""
        gender = patient.get("gender")
        recorded = gender if gender in ("male", "female") else None
        parameters: set[str] = set()
        for extension in patient.get("extension") or ():
            if isinstance(extension, dict) and extension.get("url") == SPCU_URL:
                code = self.spcu_code(extension)
                if code:
                    parameters.add(code)
        if not parameters:
            if recorded:
                return SexForClinicalUse(recorded, f"Patient.gender {recorded}")
            return SexForClinicalUse(None, f"Patient.gender is {gender or 'missing'}")
        if len(parameters) > 1:
            return SexForClinicalUse(
                None,
                "current sex parameters for clinical use disagree ("
                + ", ".join(sorted(parameters))
                + ")",
                recorded_parameter=", ".join(sorted(parameters)),
            )
        code = parameters.pop()
        sex = _SPCU_SEX.get(code)
        if sex is None:
            return SexForClinicalUse(
                None, f"the sex parameter for clinical use is {code}", recorded_parameter=code
            )
        basis = f"sex parameter for clinical use {code}"
        if recorded and recorded != sex:
            basis += f" (Patient.gender {gender}: the parameter decides)"
        return SexForClinicalUse(sex, basis, recorded_parameter=code)

    def spcu_code(self, extension: dict[str, Any]) -> str | None:
        """The value of a sex-parameter extension that is in force now, else None."""
        value: str | None = None
        for part in extension.get("extension") or ():
            if not isinstance(part, dict):
                continue
            if part.get("url") == "value":
                concept = part.get("valueCodeableConcept") or {}
                for coding in concept.get("coding") or ():
                    if isinstance(coding, dict) and coding.get("code"):
                        value = str(coding["code"])
            elif part.get("url") == "period":
                period = part.get("valuePeriod") or {}
                start = parse_fhir_datetime(period.get("start"))
                end = parse_fhir_period_end(period.get("end"))
                if (start and start > self.now) or (end and end < self.now):
                    return None
        return value

    # -- Labs ----------------------------------------------------------------------------------

    def after_now(self, when: datetime | None) -> bool:
        return when is not None and when > self.latest_date

    def future_gap(
        self, what: str, ref: str, when: datetime, groups: frozenset[str] = _NONE
    ) -> None:
        gap = f"{what} ({ref}) is dated {when.date().isoformat()}, after today, and was left out"
        if groups:
            self.lab_gap(groups, gap)
        else:
            self.gap(gap)

    def diagnostic_report(self, resource: dict[str, Any]) -> None:
        status = resource.get("status")
        if status in _IGNORED_STATUS:
            return
        ref = f"DiagnosticReport/{resource.get('id', '')}"
        when = self.effective(resource)
        code = resource.get("code")
        groups = self.groups(code, ORDERABLE_VALUESETS | _DXA_REPORTS)
        if self.after_now(when) and when is not None:
            # the report and the results it holds are left out (results it references are
            # left out by their own date, or by the report's when they have none)
            self.future_gap(
                f"Report {_concept_text(code) or 'without a name'}",
                ref,
                when,
                groups & LAB_VALUESETS,
            )
            for result in resource.get("result") or ():
                target = result.get("reference") if isinstance(result, dict) else None
                if isinstance(target, str) and not target.startswith("#"):
                    self.report_dates[local_reference(target, "Observation")] = when
            return
        contained = {
            f"#{c.get('id')}": c for c in resource.get("contained") or () if isinstance(c, dict)
        }
        for result in resource.get("result") or ():
            target = result.get("reference") if isinstance(result, dict) else None
            if not isinstance(target, str):
                continue
            if target in contained:
                self.observation(contained[target], default_date=when, ref=ref)
            elif when is not None:
                self.report_dates[local_reference(target, "Observation")] = when
        if when is None:
            return
        dxa = bool(groups & _DXA_REPORTS) or (not groups and self.named_dxa(code))
        if not groups and not dxa:
            return
        code_label, name = self.first_coding(code, groups)
        if dxa:
            self.record.dexa.append(
                Event(frozenset({DEXA}), name or "DXA report", when, str(status), ref)
            )
        lab_groups = groups & LAB_VALUESETS
        if lab_groups:
            self.add_lab(
                lab_groups,
                LabResult(
                    code_label,
                    name,
                    when,
                    str(status or ""),
                    None,
                    "",
                    None,
                    (None, None, "report"),
                    None,
                    "",
                    ref,
                ),
                ref,
            )

    def named_dxa(self, concept: Any) -> bool:
        """A concept with no code we know that names a DXA in its text or a display."""
        if not isinstance(concept, dict):
            return False
        texts = [concept.get("text")] + [
            coding.get("display")
            for coding in concept.get("coding") or ()
            if isinstance(coding, dict)
        ]
        return any(isinstance(text, str) and _DXA_WORDS.search(text) for text in texts)

    def observation(
        self,
        resource: dict[str, Any],
        default_date: datetime | None = None,
        ref: str | None = None,
    ) -> None:
        status = resource.get("status")
        if status in _IGNORED_STATUS:
            return
        groups, code_label, name = self.matched(resource.get("code"), LAB_VALUESETS)
        if not groups:
            self.observation_not_lab(resource, default_date, ref)
            return
        ref = ref or _ref(resource)
        when = self.effective(resource) or default_date or self.report_dates.get(ref)
        if when is None:
            self.gap(f"{ref} has no date and was left out")
            return
        if when > self.latest_date:
            self.future_gap(name or code_label, ref, when, groups)
            return
        result = self.lab_value(resource, groups, code_label, name, when, str(status or ""), ref)
        self.add_lab(groups, result, ref)
        if "dxa-bmd-observations" in groups or "dxa-tscore" in groups:
            self.record.dexa.append(Event(groups, name, when, str(status or ""), ref))
        components = resource.get("component")
        if components:
            self.components(components, when, str(status or ""), ref)

    def observation_not_lab(
        self, resource: dict[str, Any], default_date: datetime | None, ref: str | None
    ) -> None:
        """An Observation that is not a lab result: a receptor status, the last menstrual
        period, or a coded finding ("menopausal status: postmenopausal state")."""
        ref = ref or _ref(resource)
        code = resource.get("code")
        special = self.groups(code, WHOLE_OBSERVATION_VALUESETS)
        when = self.effective(resource) or default_date
        if special and self.after_now(when) and when is not None:
            self.future_gap(_concept_text(code) or "Observation", ref, when)
            return
        if special & _RECEPTOR_TESTS:
            self.receptor_status(resource, special, when, ref)
            return
        if "last-menstrual-period" in special:
            self.last_menstrual_period(resource, special, when, ref)
            return
        concept = resource.get("valueCodeableConcept")
        if concept is not None:
            concept_groups = self.groups(concept, CONDITION_VALUESETS)
            if concept_groups:  # e.g. "menopausal status: postmenopausal state"
                self.condition_like(resource, concept_groups, ref)

    def receptor_status(
        self, resource: dict[str, Any], tests: frozenset[str], when: datetime | None, ref: str
    ) -> None:
        """An ER or PR result as the receptor status it shows: by its answer (LOINC LA6576-8
        or SNOMED CT 10828004 positive; LA6577-6 or 260385009 negative), a coded finding, the
        words, or the percent of cells stained (ASCO/CAP 2020: >= 1% positive). Synthea's
        "negative" state carries a SNOMED CT code under the LOINC system: the value is read,
        not that code."""
        positive: bool | None = None
        concept = resource.get("valueCodeableConcept")
        answer = self.groups(concept, _ANSWERS | CONDITION_VALUESETS) if concept else _NONE
        if answer & {"positive-answer", "hormone-receptor-positive"}:
            positive = True
        elif answer & {"negative-answer", "hormone-receptor-negative"}:
            positive = False
        else:
            words = _concept_text(concept) if concept else resource.get("valueString")
            if isinstance(words, str):
                lowered = words.lower()
                if "negative" in lowered:
                    positive = False
                elif "positive" in lowered:
                    positive = True
            quantity = resource.get("valueQuantity")
            if positive is None and isinstance(quantity, dict):
                value = quantity.get("value")
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    positive = value >= _RECEPTOR_POSITIVE_PERCENT
        if positive is None:
            return
        estrogen = "estrogen-receptor-test" in tests
        if positive:
            group = "hormone-receptor-positive"
        elif estrogen:
            group = "hormone-receptor-negative"
        else:
            return  # PR negative alone says nothing of the ER
        test = "Estrogen receptor" if estrogen else "Progesterone receptor"
        label, _ = self.first_coding(resource.get("code"), tests)
        self.record.conditions.append(
            ConditionEntry(
                frozenset({group}),
                label,
                f"{test} {'positive' if positive else 'negative'}",
                True,
                "result",
                when,
                ref,
            )
        )

    def last_menstrual_period(
        self, resource: dict[str, Any], groups: frozenset[str], when: datetime | None, ref: str
    ) -> None:
        lmp = self.datetime_of(resource.get("valueDateTime")) or self.datetime_of(
            resource.get("valueString")
        )
        if lmp is None:
            return
        if self.after_now(lmp):
            self.future_gap("Last menstrual period", ref, lmp)
            return
        self.record.last_menstrual_periods.append(
            Event(groups, "Last menstrual period", lmp, str(resource.get("status") or ""), ref)
        )

    def components(self, components: Any, when: datetime, status: str, ref: str) -> None:
        """Results sent as components of one Observation (a DXA study's T-score per site),
        with the Observation's date, status and reference."""
        for component in components if isinstance(components, list) else ():
            if not isinstance(component, dict):
                continue
            groups, code_label, name = self.matched(component.get("code"), LAB_VALUESETS)
            if groups:
                result = self.lab_value(component, groups, code_label, name, when, status, ref)
                self.add_lab(groups, result, ref)

    def lab_gap(self, groups: frozenset[str], gap: str) -> None:
        """A result left out, said in the record's gaps and in those of its value sets."""
        self.gap(gap)
        for group in groups:
            self.record.gaps_by_valueset.setdefault(group, []).append(gap)

    def add_lab(self, groups: frozenset[str], result: LabResult, ref: str) -> None:
        key = (ref, result.code, result.date)
        if key in self.seen_labs:
            return
        self.seen_labs.add(key)
        labs = self.record.labs
        for group in groups:
            labs.setdefault(group, []).append(result)

    def lab_value(
        self,
        resource: dict[str, Any],
        groups: frozenset[str],
        code_label: str,
        name: str,
        when: datetime,
        status: str,
        ref: str,
    ) -> LabResult:
        comparator: str | None = None
        number: float | None = None
        unit = ""
        quantity = resource.get("valueQuantity")
        if isinstance(quantity, dict):
            raw = quantity.get("value")
            # A tuple, not `int | float`: isinstance is cheaper with one, on the hot path.
            if isinstance(raw, (int, float)) and not isinstance(raw, bool):
                number = float(raw)
                if number - number != 0:  # inf or nan (1e999 read by a lenient parser)
                    number = None
            unit = str(quantity.get("code") or quantity.get("unit") or "")
            comparator = quantity.get("comparator")
            if comparator not in ("<", "<=", ">", ">="):
                comparator = None
        elif isinstance(resource.get("valueString"), str):
            match = _VALUE_STRING.match(resource["valueString"])
            if match:
                comparator = match.group(1)
                if comparator is not None:
                    comparator = _COMPARATOR_WORDS.get(comparator.lower(), comparator)
                number = float(match.group(2).replace(",", "."))
                unit = _RESULT_FLAG.sub("", match.group(3))
        elif isinstance(resource.get("valueInteger"), int):
            number = float(resource["valueInteger"])
        method_text = _method_text(resource.get("method"))
        kind = _kind_of(groups)
        sent = (
            comparator,
            number,
            unit if number is not None else str(resource.get("valueString") or ""),
        )
        if kind is not None and number is None:
            # "Not detected", "<LOQ", a result with no value: done, but nothing to compare.
            said = f" {sent[2]!r}" if sent[2] else ""
            self.lab_gap(
                groups,
                f"{name or code_label}{said} on {when.date().isoformat()} ({ref}) has no value "
                "the rules can compare",
            )
        if kind is None or number is None:
            return LabResult(
                code_label,
                name,
                when,
                status,
                number,
                unit,
                comparator,
                sent,
                None,
                method_text,
                ref,
            )
        ranges = resource.get("referenceRange")
        high = _reference_high(ranges) if ranges else None
        unit_from_code = False
        if not unit and kind == "estradiol":  # "<5" with no unit: the code says which unit
            unit = UNIT_OF_CODE.get(code_label.rpartition(" ")[2], "")
            unit_from_code = bool(unit)
        converted = normalise(kind, number, unit)
        if converted is None:
            gap = (
                f"{name or code_label} {sent_text(sent)} on {when.date().isoformat()} ({ref}) "
                f"was left out: unit {unit or '(none)'!r} is not one the rules can compare"
            )
            self.lab_gap(groups, gap)
            return LabResult(
                code_label,
                name,
                when,
                status,
                None,
                unit,
                comparator,
                sent,
                None,
                method_text,
                ref,
                True,
            )
        high_value = normalise(kind, high[0], high[1] or unit) if high else None
        menopause = (
            _postmenopausal_range(ranges, kind, unit)
            if ranges and kind in _MENOPAUSE_KINDS
            else None
        )
        assay = 0
        if method_text or code_label.endswith(_SENSITIVE_SUFFIXES):
            assay = _assay_rank(method_text, code_label)
        return LabResult(
            code_label,
            name,
            when,
            status,
            converted,
            canonical_unit(kind),
            comparator,
            sent,
            high_value,
            method_text,
            ref,
            False,
            unit_from_code,
            menopause,
            assay,
        )

    # -- Conditions ----------------------------------------------------------------------------

    def condition(self, resource: dict[str, Any]) -> None:
        verification = _status_code(resource.get("verificationStatus"))
        if verification in _DISCOUNTED_VERIFICATION:
            return
        code = resource.get("code")
        groups = self.groups(code, CONDITION_VALUESETS)
        if not groups:
            return
        clinical_status = _status_code(resource.get("clinicalStatus"))
        active = clinical_status in _ACTIVE_CLINICAL or (
            clinical_status is None and not resource.get("abatementDateTime")
        )
        code_label, name = self.first_coding(code, groups)
        recorded = parse_fhir_datetime(
            resource.get("onsetDateTime") or resource.get("recordedDate")
        )
        confirmed = verification not in _UNCONFIRMED
        status_text = clinical_status or "unstated"
        if not confirmed:
            status_text = f"{status_text}, {verification}"
        self.record.conditions.append(
            ConditionEntry(
                groups,
                code_label,
                name,
                active,
                status_text,
                recorded,
                f"Condition/{resource.get('id', '')}",
                confirmed,
            )
        )

    def condition_like(self, resource: dict[str, Any], groups: frozenset[str], ref: str) -> None:
        if resource.get("status") in _IGNORED_STATUS:
            return
        code_label, name = self.first_coding(resource.get("valueCodeableConcept"), groups)
        self.record.conditions.append(
            ConditionEntry(
                groups, code_label, name, True, "observed", self.effective(resource), ref
            )
        )

    # -- Medications ---------------------------------------------------------------------------

    def medication(self, resource: dict[str, Any]) -> None:
        status = str(resource.get("status") or "")
        resource_type = str(resource.get("resourceType"))
        ref = f"{resource_type}/{resource.get('id', '')}"
        is_statement = resource_type == "MedicationStatement"
        is_request = resource_type == "MedicationRequest"
        if is_request and resource.get("intent") not in _THERAPY_INTENTS:
            return  # a proposal, plan or option: not therapy (yet)
        # doNotPerform: an order that the drug NOT be given (FHIR R4 MedicationRequest).
        if resource.get("doNotPerform") is True:
            return
        if is_statement and status in _STOPPED_STATEMENT_STATUS:
            self.stopped_statement(resource, status, ref)
            if status == "not-taken":
                return
        elif status in _IGNORED_MED_STATUS:
            return
        concept, medication = self.medication_concept(resource)
        groups, name, matched_by = self.drug_groups(concept, medication)
        if not groups:
            if matched_by == "unread" and status in _CURRENT_OR_GIVEN:
                self.unread_medication(ref, concept)
            return
        if is_request and status != "draft":
            authored = parse_fhir_datetime(resource.get("authoredOn"))
            if self.after_now(authored) and authored is not None:
                self.future_gap(f"Order of {name or 'a medication'}", ref, authored)
                return
        dosage = resource.get("dosageInstruction" if is_request else "dosage")
        # Only an aromatase inhibitor's dose is read by the rules; others are not parsed. An
        # administration records one dose given, not a regimen.
        dose = (
            parse_dosage(dosage, _strength_mg(name, medication, concept))
            if "aromatase-inhibitors" in groups and resource_type != "MedicationAdministration"
            else NO_DOSE
        )
        start, end = self.course_period(resource, resource_type, status)
        covered_until = (
            _covered_until(start, end, is_statement, None if not is_request else dosage, name)
            if status == "completed" and groups & _LONG_ACTING
            else None
        )
        reasons, reason_text, reason_refs = self.reasons(resource)
        self.record.medications.append(
            MedicationCourse(
                groups,
                name,
                status,
                start,
                end,
                dose,
                reasons,
                reason_text,
                matched_by,
                ref,
                reason_refs,
                covered_until,
            )
        )

    def drug_groups(
        self, concept: Any, medication: dict[str, Any] | None
    ) -> tuple[frozenset[str], str, str]:
        """(drug value sets, name, "code" | "text" | "unread" | "other"): by any coding of the
        concept or of the Medication's ingredients, else by the drug names in its text and
        its codings' displays (a national or local code). "unread": coded only in systems we
        cannot read, with no name; "other": a drug we can read that is none of ours."""
        name = _concept_text(concept)
        groups = self.groups(concept, DRUG_VALUESETS)
        if groups:
            return groups, name, "code"
        if medication is not None:
            for ingredient in medication.get("ingredient") or ():
                item = (
                    ingredient.get("itemCodeableConcept") if isinstance(ingredient, dict) else None
                )
                groups |= self.groups(item, DRUG_VALUESETS)
            if groups:
                return groups, name or _concept_text_of_ingredients(medication), "code"
        texts = _names_of(concept)
        for text in texts:
            groups = self.vs.names_for_product(text) & DRUG_VALUESETS
            if groups:
                return groups, name or text, "text"
        if texts or _has_known_drug_code(concept):
            return _NONE, name, "other"
        return _NONE, name, "unread"

    def unread_medication(self, ref: str, concept: Any) -> None:
        codes = [
            f"{coding.get('system') or 'no system'}|{coding.get('code')}"
            for coding in (concept.get("coding") or () if isinstance(concept, dict) else ())
            if isinstance(coding, dict) and coding.get("code")
        ]
        coded = f"coded only as {', '.join(codes[:3])}" if codes else "with no code"
        self.record.unread_medications.append(
            f"{ref}: a current medication {coded} and no name could not be read; if it is an "
            "aromatase inhibitor, tamoxifen, an estrogen or a GnRH agonist, the checks that "
            "need it did not see it"
        )

    def stopped_statement(self, resource: dict[str, Any], status: str, ref: str) -> None:
        """A statement that the drug was stopped, finished or not taken, as of its date: it
        ends an older order of the drug still marked active."""
        period = resource.get("effectivePeriod")
        when = (
            (parse_fhir_period_end(period.get("end")) if isinstance(period, dict) else None)
            or parse_fhir_datetime(resource.get("dateAsserted"))
            or parse_fhir_datetime(resource.get("effectiveDateTime"))
            or (parse_fhir_datetime(period.get("start")) if isinstance(period, dict) else None)
        )
        if when is None or self.after_now(when):
            return
        concept, medication = self.medication_concept(resource)
        groups, _, _ = self.drug_groups(concept, medication)
        if groups:
            self.stops.append((groups - DRUG_CLASSES, when, f"{ref} ({status})", ""))

    def medication_list(self, resource: dict[str, Any]) -> None:
        """A List (a medication list, a reconciliation) whose entries say a drug was stopped:
        `deleted`, or a flag saying stopped or discontinued, dated by the entry or the List."""
        if resource.get("status") == "entered-in-error":
            return
        listed = parse_fhir_datetime(resource.get("date"))
        ref = _ref(resource)
        for entry in resource.get("entry") or ():
            if not isinstance(entry, dict):
                continue
            flag = _concept_words(entry.get("flag"))
            if entry.get("deleted") is not True and not _STOPPED_WORDS.search(flag):
                continue
            when = parse_fhir_datetime(entry.get("date")) or listed
            item = entry.get("item")
            target = item.get("reference") if isinstance(item, dict) else None
            if when is None or self.after_now(when) or not isinstance(item, dict):
                continue
            said = f"{ref} ({flag or 'deleted'})"
            groups = _NONE
            local = ""
            if isinstance(target, str):
                local = local_reference(target, "MedicationRequest")
                listed_resource = self.by_ref.get(local)
                if listed_resource is not None:
                    concept, medication = self.medication_concept(listed_resource)
                    groups = self.drug_groups(concept, medication)[0]
            if not groups and isinstance(item.get("display"), str):
                groups = self.vs.names_for_product(item["display"]) & DRUG_VALUESETS
            if groups or local:
                self.stops.append((groups - DRUG_CLASSES, when, said, local))

    def apply_stops(self) -> None:
        """An order or statement still "active" that a later List or statement shows as
        stopped is history, not current therapy: a chart keeps the old order open for years
        while the medication list says otherwise."""
        if not self.stops:
            return
        courses = self.record.medications
        for index, course in enumerate(courses):
            if course.is_draft or course.status not in ("active", "on-hold", "intended"):
                continue
            ingredients = course.ingredients
            for drugs, when, said, target in sorted(self.stops, key=lambda stop: stop[1]):
                named = target == course.ref or (
                    bool(drugs & ingredients) and course.start is not None and course.start < when
                )
                if named and course.ref not in said:
                    courses[index] = replace(
                        course,
                        status="stopped",
                        end=when,
                        covered_until=None,
                        stopped_by=f"stopped on {when.date().isoformat()} by {said}",
                    )
                    break

    def medication_concept(self, resource: dict[str, Any]) -> tuple[Any, dict[str, Any] | None]:
        concept = resource.get("medicationCodeableConcept")
        if concept is not None:
            return concept, None
        reference = resource.get("medicationReference")
        target = reference.get("reference") if isinstance(reference, dict) else None
        medication: dict[str, Any] | None = None
        if isinstance(target, str):
            if target.startswith("#"):
                medication = next(
                    (
                        c
                        for c in resource.get("contained") or ()
                        if isinstance(c, dict) and f"#{c.get('id')}" == target
                    ),
                    None,
                )
            else:
                medication = self.by_ref.get(local_reference(target, "Medication"))
        if medication is not None:
            return medication.get("code"), medication
        display = reference.get("display") if isinstance(reference, dict) else None
        return {"text": display} if display else None, None

    def course_period(
        self, resource: dict[str, Any], resource_type: str, status: str
    ) -> tuple[datetime | None, datetime | None]:
        if resource_type != "MedicationRequest":  # a statement or an administration
            period = resource.get("effectivePeriod")
            if isinstance(period, dict):
                return parse_fhir_datetime(period.get("start")), parse_fhir_period_end(
                    period.get("end")
                )
            return parse_fhir_datetime(resource.get("effectiveDateTime")), None
        validity = (resource.get("dispenseRequest") or {}).get("validityPeriod") or {}
        bounds: dict[str, Any] = {}
        for dosage in resource.get("dosageInstruction") or ():
            if isinstance(dosage, dict):
                bounds = ((dosage.get("timing") or {}).get("repeat") or {}).get(
                    "boundsPeriod"
                ) or {}
                break
        end = parse_fhir_period_end(bounds.get("end")) or parse_fhir_period_end(validity.get("end"))
        planned = parse_fhir_datetime(bounds.get("start")) or parse_fhir_datetime(
            validity.get("start")
        )
        if status == "draft":
            # a draft (order hooks) is judged on its own dates: from its planned start, else now
            return (planned if planned is not None and planned > self.now else self.now), end
        start = planned or parse_fhir_datetime(resource.get("authoredOn"))
        return start, end

    def reasons(self, resource: dict[str, Any]) -> tuple[frozenset[str], str, tuple[str, ...]]:
        groups: frozenset[str] = frozenset()
        texts: list[str] = []
        refs: list[str] = []
        for concept in resource.get("reasonCode") or ():
            found = self.groups(concept, CONDITION_VALUESETS)
            groups |= found
            label, name = self.first_coding(concept, found)
            if name or label:
                texts.append(f"{name} ({label})" if label and found else name or label)
        for reference in resource.get("reasonReference") or ():
            target = reference.get("reference") if isinstance(reference, dict) else None
            condition = (
                self.by_ref.get(local_reference(target, "Condition"))
                if isinstance(target, str)
                else None
            )
            if condition is not None:
                found = self.groups(condition.get("code"), CONDITION_VALUESETS)
                groups |= found
                label, name = self.first_coding(condition.get("code"), found)
                texts.append(f"{name} ({label})" if label else name)
                if found:
                    refs.append(str(target))
        return groups, "; ".join(t for t in texts if t), tuple(refs)

    # -- Procedures, imaging, orders -----------------------------------------------------------

    def procedure(self, resource: dict[str, Any]) -> None:
        status = resource.get("status")
        if status not in (None, "completed"):
            return
        code = resource.get("code")
        groups = self.groups(code, _PROCEDURE_VALUESETS)
        if not groups and self.named_dxa(code):
            groups = frozenset({DEXA})
        if not groups:
            return
        performed = resource.get("performedPeriod")
        when = parse_fhir_datetime(resource.get("performedDateTime")) or (
            parse_fhir_datetime(performed.get("start")) if isinstance(performed, dict) else None
        )
        ref = f"Procedure/{resource.get('id', '')}"
        _, name = self.first_coding(code, groups)
        if self.after_now(when) and when is not None:
            self.future_gap(name or "Procedure", ref, when)
            return
        event = Event(groups, name, when, str(status or ""), ref)
        if DEXA in groups:
            if when is None:
                self.gap(f"{event.ref} (DXA) has no date and was left out")
            else:
                self.record.dexa.append(event)
        if groups & _MENOPAUSE_PROCEDURES:
            self.record.procedures.append(event)

    def document_reference(self, resource: dict[str, Any]) -> None:
        """A DXA report filed as a document (LOINC 38269-7 or 38268-9, or named in words)."""
        if resource.get("status") == "entered-in-error" or resource.get("docStatus") == (
            "entered-in-error"
        ):
            return
        concept = resource.get("type")
        if not self.groups(concept, _DXA_REPORTS) and not self.named_dxa(concept):
            return
        context = resource.get("context")
        period = context.get("period") if isinstance(context, dict) else None
        when = (
            parse_fhir_datetime(period.get("start")) if isinstance(period, dict) else None
        ) or parse_fhir_datetime(resource.get("date"))
        ref = f"DocumentReference/{resource.get('id', '')}"
        if when is None:
            self.gap(f"{ref} (DXA report) has no date and was left out")
            return
        if self.after_now(when):
            self.future_gap("DXA report", ref, when)
            return
        name = _concept_text(concept) or "DXA report"
        self.record.dexa.append(Event(frozenset({DEXA}), name, when, "document", ref))

    def imaging_study(self, resource: dict[str, Any]) -> None:
        if resource.get("status") in ("cancelled", "entered-in-error", "registered"):
            return
        names: frozenset[str] = frozenset()
        for concept in resource.get("procedureCode") or ():
            names |= self.groups(concept, frozenset({DEXA}))
        modalities = [m for m in resource.get("modality") or () if isinstance(m, dict)] + [
            s.get("modality")
            for s in resource.get("series") or ()
            if isinstance(s, dict) and isinstance(s.get("modality"), dict)
        ]
        if not names and not any(
            m.get("code") == _DICOM_BONE_DENSITOMETRY for m in modalities if isinstance(m, dict)
        ):
            return
        when = parse_fhir_datetime(resource.get("started"))
        ref = f"ImagingStudy/{resource.get('id', '')}"
        if self.after_now(when) and when is not None:
            self.future_gap("DXA imaging study", ref, when)
            return
        if when is not None:
            self.record.dexa.append(
                Event(
                    frozenset({DEXA}),
                    "DXA imaging study",
                    when,
                    str(resource.get("status") or ""),
                    ref,
                )
            )

    def service_request(self, resource: dict[str, Any]) -> None:
        status = resource.get("status")
        if status not in _ORDER_STATUS or resource.get("doNotPerform") is True:
            return
        code = resource.get("code")
        groups = self.groups(code, ORDERABLE_VALUESETS)
        if not groups and self.named_dxa(code):
            groups = frozenset({DEXA})
        if not groups:
            return
        _, name = self.first_coding(code, groups)
        authored = parse_fhir_datetime(resource.get("authoredOn"))
        ref = f"ServiceRequest/{resource.get('id', '')}"
        if self.after_now(authored) and authored is not None:
            self.future_gap(f"Order of {name or 'a test'}", ref, authored)
            return
        self.record.orders.append(Event(groups, name, authored, str(status), ref))


# The readers of each resource type, in the order they run: a DiagnosticReport before the
# Observations (results inherit its date), the medications before the Lists that stop them.
_READERS: tuple[tuple[str, Any], ...] = (
    ("Patient", _Reader.patient),
    ("DiagnosticReport", _Reader.diagnostic_report),
    ("Observation", _Reader.observation),
    ("Condition", _Reader.condition),
    ("MedicationRequest", _Reader.medication),
    ("MedicationStatement", _Reader.medication),
    ("MedicationAdministration", _Reader.medication),
    ("List", _Reader.medication_list),
    ("Procedure", _Reader.procedure),
    ("ImagingStudy", _Reader.imaging_study),
    ("DocumentReference", _Reader.document_reference),
    ("ServiceRequest", _Reader.service_request),
)
# Every resource type the reader reads for a patient (population reading keeps these whole).
READ_TYPES = frozenset(resource_type for resource_type, _ in _READERS)


def check_one_patient(by_type: dict[str, list[dict[str, Any]]]) -> None:
    """Raise MixedPatientsError when the resources are about more than one patient: two
    Patient resources with different ids, or a subject naming another one. A resource that
    names no patient (a Patient with no id too, as the CDS Hooks prefetch check reads it), or
    names one in a way that cannot be told (a conditional reference, a urn:uuid of no Patient
    here), is read as the one patient's."""
    patients = by_type.get("Patient", ())
    ids = {p["id"] for p in patients if isinstance(p.get("id"), str)}
    references: set[str] = set()  # a chart names its patient one way: each text judged once
    for resource_type, resources in by_type.items():
        if resource_type == "Patient" or resource_type not in READ_TYPES:
            continue
        for resource in resources:
            subject = resource.get("subject")
            if subject.__class__ is dict:
                reference = subject.get("reference")
                if reference.__class__ is str:
                    references.add(reference)
    named = {patient for reference in references if (patient := _patient_named(reference, ids))}
    everyone = ids | named
    if len(everyone) > 1:
        raise MixedPatientsError([f"Patient/{patient}" for patient in sorted(everyone)])


def _patient_named(reference: str, ids: set[str]) -> str | None:
    if reference.startswith("urn:uuid:"):
        uuid = reference.removeprefix("urn:uuid:")
        return uuid if uuid in ids else None
    if "?" in reference:  # a conditional reference ("Patient?identifier=..."): not told
        return None
    local = local_reference(reference)
    return local.removeprefix("Patient/") if local.startswith("Patient/") else None


def _id_of(resource: dict[str, Any]) -> str:
    identifier = resource.get("id", "?")
    return identifier if isinstance(identifier, str) else "?"


ObservationReading = Literal["unread", "lab", "other"]


def observation_reading(
    valuesets: ValueSets, status: Any, codings: Iterable[tuple[Any, Any]]
) -> ObservationReading:
    """How `_Reader.observation` reads an Observation with this status, these codings'
    (system, code) and no valueCodeableConcept: it passes over it without error ("unread":
    what `lazy_bundle` may leave undecoded), reads it as a lab result ("lab": from no other
    fields than LAB_OBSERVATION_FIELDS), or cannot be told from these ("other"). Keep in step
    with `observation` (tests/clinical/test_lazy_bundle.py)."""
    try:
        if status in _IGNORED_STATUS:
            return "unread"
        for system, code in codings:
            names = valuesets.names_for_code(system, code)
            if names & WHOLE_OBSERVATION_VALUESETS:
                return "other"
            if names & LAB_VALUESETS:
                return "lab"
    except _UNREADABLE:  # the reader would record a data gap for it: keep all of it
        return "other"
    return "unread"


def observation_reading_of(valuesets: ValueSets, resource: dict[str, Any]) -> ObservationReading:
    """`observation_reading` for an Observation at hand, asked as `lazy_bundle` asks it of the
    bytes: one with a valueCodeableConcept, or a code of an odd shape, is "other" (kept whole,
    the reader decides)."""
    code = resource.get("code")
    if resource.get("valueCodeableConcept") is not None or not isinstance(code, dict | None):
        return "other"
    codings = (code or {}).get("coding")
    if codings is None:
        codings = []
    if not isinstance(codings, list) or not all(isinstance(c, dict) for c in codings):
        return "other"
    pairs = [(coding.get("system"), coding.get("code")) for coding in codings]
    return observation_reading(valuesets, resource.get("status"), pairs)


# Every field `_Reader.observation` (with `effective`, `lab_value` and `_ref`) reads from an
# Observation it reads as a lab result; `lazy_bundle` decodes no other field of one.
LAB_OBSERVATION_FIELDS = (
    "resourceType",
    "id",
    "status",
    "code",
    "valueCodeableConcept",
    "effectiveDateTime",
    "effectivePeriod",
    "effectiveInstant",
    "issued",
    "valueQuantity",
    "valueString",
    "valueInteger",
    "method",
    "referenceRange",
    "component",
    "subject",  # whose result it is (`check_one_patient`)
)
# ...and of each entry of its referenceRange (`_reference_high`); for estradiol and FSH also
# what `_postmenopausal_range` reads.
LAB_REFERENCE_RANGE_FIELDS = ("high",)
MENOPAUSE_REFERENCE_RANGE_FIELDS = ("high", "low", "type", "appliesTo", "text")
MENOPAUSE_RANGE_VALUESETS = frozenset({"estradiol-serum", "fsh"})


# Observations are read only by `_Reader.observation`: not as targets of references (these).
_REFERENCED_TYPES = ("Medication", "Condition")
_SYSTEM_LABEL = {
    "http://loinc.org": "LOINC",
    "http://snomed.info/sct": "SNOMED CT",
    "http://hl7.org/fhir/sid/icd-10-cm": "ICD-10-CM",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
    "http://www.ama-assn.org/go/cpt": "CPT",
    "http://www.whocc.no/atc": "ATC",
    "http://www.cms.gov/Medicare/Coding/ICD10": "ICD-10-PCS",
}


def local_reference(reference: str, expected_type: str | None = None) -> str:
    """ "Medication/m1" for a reference written relative ("Medication/m1"), versioned
    ("Medication/m1/_history/2") or absolute ("https://ehr.example/fhir/Medication/m1"): FHIR R4
    Reference.reference "may be a relative reference ... or an absolute URL ... version
    specific or not". The resources a patient's data comes with are taken to be from one
    server, so an absolute reference is read by its last "Type/id".

    With `expected_type`, a "urn:uuid:X" reference (a Bundle entry's fullUrl) is read as
    "expected_type/X": exports such as Synthea's give the resource that id too, and an entry
    with no id is read with that one (`with_entry_id`)."""
    if expected_type and reference.startswith("urn:uuid:"):
        return f"{expected_type}/{reference.removeprefix('urn:uuid:')}"
    path = reference.split("/_history/", 1)[0].rstrip("/")
    if "://" not in path:
        return path
    parts = path.rsplit("/", 2)
    return f"{parts[1]}/{parts[2]}" if len(parts) == 3 else path


def _ref(resource: dict[str, Any]) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id', '')}"


def _reference_high(ranges: Any) -> tuple[float, str] | None:
    if not isinstance(ranges, list):
        return None
    for entry in ranges:
        high = entry.get("high") if isinstance(entry, dict) else None
        if isinstance(high, dict) and isinstance(high.get("value"), int | float):
            return float(high["value"]), str(high.get("code") or high.get("unit") or "")
    return None


def _postmenopausal_range(
    ranges: Any, kind: str, unit: str
) -> tuple[float | None, float | None] | None:
    """The lab's postmenopausal interval, when a referenceRange says it is one (its type or
    appliesTo coded "postmenopausal", HL7 referencerange-meaning, or its text), in the
    kind's canonical unit. NCCN reads FSH and estradiol against the local lab's range."""
    if not isinstance(ranges, list):
        return None
    for entry in ranges:
        if (
            not isinstance(entry, dict)
            or ("type" not in entry and "appliesTo" not in entry and "text" not in entry)
            or not _says_postmenopausal(entry)
        ):
            continue
        bounds: list[float | None] = []
        for side in ("low", "high"):
            quantity = entry.get(side)
            value = quantity.get("value") if isinstance(quantity, dict) else None
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                said = str(quantity.get("code") or quantity.get("unit") or unit)  # type: ignore[union-attr]
                bounds.append(normalise(kind, float(value), said))
            else:
                bounds.append(None)
        if bounds[0] is not None or bounds[1] is not None:
            return bounds[0], bounds[1]
    return None


def _says_postmenopausal(entry: dict[str, Any]) -> bool:
    concepts = [entry.get("type"), *(entry.get("appliesTo") or ())]
    words = [entry.get("text")] + [_concept_words(concept) for concept in concepts]
    return any(isinstance(text, str) and "postmenopaus" in text.lower() for text in words)


def _concept_words(concept: Any) -> str:
    """The text and the codes and displays of a concept, as one string (for words in it)."""
    if not isinstance(concept, dict):
        return ""
    parts = [concept.get("text")]
    for coding in concept.get("coding") or ():
        if isinstance(coding, dict):
            parts += [coding.get("code"), coding.get("display")]
    return " ".join(part for part in parts if isinstance(part, str))


def _method_text(method: Any) -> str:
    """How a result was measured, as the lab said it: the method's text, else a display."""
    if not isinstance(method, dict):
        return ""
    text = method.get("text")
    if isinstance(text, str) and text:
        return text
    for coding in method.get("coding") or ():
        if isinstance(coding, dict) and isinstance(coding.get("display"), str):
            return str(coding["display"])
    return ""


def _assay_rank(method_text: str, code_label: str) -> int:
    """2 for mass spectrometry (LC-MS/MS: preferred in men and at low levels), 1 for a
    high-sensitivity method the code names (LOINC 72873-3), else 0."""
    if method_text and _MASS_SPECTROMETRY.search(method_text):
        return 2
    return 1 if code_label.endswith(_SENSITIVE_SUFFIXES) else 0


def _names_of(concept: Any) -> list[str]:
    """The names a medication concept gives: its text, then each coding's display."""
    if not isinstance(concept, dict):
        return []
    names = [concept.get("text")] + [
        coding.get("display") for coding in concept.get("coding") or () if isinstance(coding, dict)
    ]
    return [name for name in names if isinstance(name, str) and name.strip()]


def _has_known_drug_code(concept: Any) -> bool:
    """A coding in a system where every drug has a code (RxNorm, SNOMED CT, ATC)."""
    if not isinstance(concept, dict):
        return False
    return any(
        isinstance(coding, dict)
        and coding.get("system") in _KNOWN_DRUG_SYSTEMS
        and coding.get("code")
        for coding in concept.get("coding") or ()
    )


def _concept_text_of_ingredients(medication: dict[str, Any]) -> str:
    for ingredient in medication.get("ingredient") or ():
        item = ingredient.get("itemCodeableConcept") if isinstance(ingredient, dict) else None
        text = _concept_text(item)
        if text:
            return text
    return ""


def _status_code(concept: Any) -> str | None:
    if isinstance(concept, dict):
        for coding in concept.get("coding") or ():
            if isinstance(coding, dict) and coding.get("code"):
                return str(coding["code"])
    return None


def _concept_text(concept: Any) -> str:
    if not isinstance(concept, dict):
        return ""
    if isinstance(concept.get("text"), str) and concept["text"]:
        return str(concept["text"])
    for coding in concept.get("coding") or ():
        if isinstance(coding, dict) and coding.get("display"):
            return str(coding["display"])
    return ""


def _covered_until(
    start: datetime | None, end: datetime | None, is_statement: bool, dosage: Any, name: str
) -> datetime | None:
    """Until when a completed course of a long-acting product (a depot, an infusion) still
    acts: a statement's end, else the dose's date and its dosing interval (the order's timing,
    else the label's, `_DOSING_INTERVAL_DAYS`). Given in clinic, such an order is closed once
    the dose is given, and the patient is on it for the whole interval."""
    if is_statement and end is not None:
        return end
    if start is None:
        return None
    days = _timing_interval_days(dosage) or _labelled_interval_days(name)
    if not days or days > _LONGEST_INTERVAL_DAYS:  # "99999-month": not an interval to add
        return None
    return later(start, timedelta(days=days))


def _timing_interval_days(dosage: Any) -> float | None:
    """Days between doses from the first dosage's timing.repeat ("every 6 months")."""
    try:
        repeat = dosage[0]["timing"]["repeat"]
        period = float(repeat["period"]) * _PERIOD_DAYS[repeat["periodUnit"]]
        frequency = float(repeat.get("frequency") or 1)
    except _UNREADABLE:
        return None
    days = period / frequency if period > 0 and frequency > 0 else None
    # an interval beyond a century is a typing error, not a depot: the label's interval then
    return days if days is not None and days <= _LONGEST_INTERVAL_DAYS else None


def _labelled_interval_days(name: str) -> int | None:
    lowered = name.lower()
    months = _N_MONTH.search(lowered)
    if months:  # "3-Month 1.5 ML leuprolide acetate 20 MG/ML": the product says it
        return round(int(months.group(1)) * DAYS_PER_MONTH)
    strengths = _STRENGTH_MG.findall(name)
    strength = float(strengths[0]) if len(strengths) == 1 else None
    for drug, mg, days in _DOSING_INTERVAL_DAYS:
        if drug in lowered and (mg is None or mg == strength):
            return days
    return None


def _strength_mg(name: str, medication: dict[str, Any] | None, concept: Any) -> float | None:
    """Milligrams per tablet, from Medication.ingredient strength, the product name, or the
    display of a coding (an RxNorm SCD, "anastrozole 1 MG Oral Tablet", where the text is only
    "anastrozole")."""
    if medication is not None:
        for ingredient in medication.get("ingredient") or ():
            strength = ingredient.get("strength") if isinstance(ingredient, dict) else None
            numerator = strength.get("numerator") if isinstance(strength, dict) else None
            if (
                isinstance(numerator, dict)
                and isinstance(numerator.get("value"), int | float)
                and str(numerator.get("code") or numerator.get("unit") or "").lower() == "mg"
            ):
                return float(numerator["value"])
    names = [name]
    if isinstance(concept, dict):
        names += [
            str(coding["display"])
            for coding in concept.get("coding") or ()
            if isinstance(coding, dict) and coding.get("display")
        ]
    for text in names:
        found = _STRENGTH_MG.findall(text)
        if len(found) == 1:
            return float(found[0])
        if found:
            return None  # two strengths: no guess
    return None


def _human_name(names: Any) -> str:
    if isinstance(names, list):
        for name in names:
            if isinstance(name, dict):
                if isinstance(name.get("text"), str):
                    return str(name["text"])
                given = " ".join(g for g in name.get("given") or () if isinstance(g, str))
                return f"{given} {name.get('family') or ''}".strip()
    return ""


def build_record(
    resources: Any, now: datetime, valuesets: ValueSets | None = None
) -> PatientRecord:
    """Read a Bundle, list of resources or prefetch values into a PatientRecord as of `now`."""
    return _Reader(as_aware(now), valuesets or load()).read(iter_resources(resources))
