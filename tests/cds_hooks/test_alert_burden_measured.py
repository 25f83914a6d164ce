"""The measured result (docs/alert-burden.md): over the 16 synthetic patients, at least half
the interruptive cards go, and no warning or critical finding of the SMART app's full list is
lost: each is a card, or kept away by a clinician's answer, which the app then marks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from benchmarks.alert_burden import EVERY_CARD, ISSUER, Opened, Service, measure, renewal_of
from clinical import DEFAULT_SETTINGS, evaluate
from clinical.finding import Severity
from runtime.card_settings import CardSettings, read_card_settings
from sandbox.patients import REFERENCE_NOW, SyntheticPatient, all_patients, bundle_resources
from smartapp.dashboard import Answers, Dashboard, build_dashboard

PATIENTS = all_patients()
SERIOUS = (Severity.WARNING.value, Severity.CRITICAL.value)


def app_view(patient: SyntheticPatient, service: Service | None = None) -> Dashboard:
    """The SMART app's page for the patient: every finding (with the EHR's answers, if any)."""
    answers = None
    if service is not None:
        clock = service.screen.clock()
        found = service.log.acknowledgements_in_app(
            service.log.patient(patient.patient_id), issuers=frozenset({ISSUER}), now=clock
        )
        answers = Answers(tuple(found), clock, service.log.cards)
    return build_dashboard(
        bundle_resources(patient.bundle),
        now=REFERENCE_NOW,
        settings=DEFAULT_SETTINGS,
        answers=answers,
    )


def serious_rules(page: Dashboard) -> set[str]:
    return {f.rule_id for f in page.findings if f.severity in SERIOUS}


def test_the_cards_per_100_chart_opens_are_at_least_halved() -> None:
    runs = measure()
    before, after = runs["before"], runs["after"]
    for hook in ("patient-view", "order-select", "order-sign"):
        assert after.per_100(hook) <= before.per_100(hook) / 2, hook
    assert sum(after.cards.values()) <= sum(before.cards.values()) / 2


def test_before_is_every_finding_a_card_as_the_service_answered_until_now() -> None:
    before = Service(read_card_settings(EVERY_CARD))
    for patient in PATIENTS:
        opened = before.call(patient, "patient-view", [])
        findings = evaluate(bundle_resources(patient.bundle), now=REFERENCE_NOW)
        assert [c["source"]["topic"]["code"] for c in opened.cards] == [f.rule_id for f in findings]


@pytest.mark.parametrize("patient", PATIENTS, ids=[p.key for p in PATIENTS])
def test_no_warning_or_critical_finding_is_lost_at_any_hook(patient: SyntheticPatient) -> None:
    service = Service(CardSettings())
    serious = serious_rules(app_view(patient))
    opened = service.call(patient, "patient-view", [])
    assert serious <= opened.rules, opened.rules
    assert {c["source"]["topic"]["code"] for c in opened.cards if c["indicator"] in SERIOUS} == (
        serious
    )
    drafts = renewal_of(patient)
    for hook in ("order-select", "order-sign") if drafts else ():
        assert serious <= service.call(patient, hook, drafts).rules, hook


@pytest.mark.parametrize("patient", PATIENTS, ids=[p.key for p in PATIENTS])
@pytest.mark.parametrize("later", [timedelta(hours=1), timedelta(days=1)], ids=["hour", "day"])
def test_once_answered_each_serious_finding_is_a_card_or_marked_acknowledged_in_the_app(
    patient: SyntheticPatient, later: timedelta
) -> None:
    service = Service(CardSettings())
    service.answer_every_card(service.call(patient, "patient-view", []))
    service.screen.clock = lambda: datetime.now(UTC) + later
    reopened: Opened = service.call(patient, "patient-view", [])
    page = app_view(patient, service)
    for finding in page.findings:
        if finding.severity not in SERIOUS:
            continue
        shown = finding.rule_id in reopened.rules
        assert shown != (finding.acknowledged is not None), finding.rule_id
        assert shown != (finding.rule_id in reopened.kept_away), finding.rule_id
        if finding.severity == Severity.CRITICAL.value and later >= timedelta(hours=4):
            assert shown, "a critical finding is back after critical_suppression_seconds"
