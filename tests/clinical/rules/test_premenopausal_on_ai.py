"""premenopausal-on-ai: a woman not shown postmenopausal on an AI without ovarian suppression."""

from __future__ import annotations

from typing import Any

import pytest

from clinical.finding import Severity
from clinical.rules.premenopausal_on_ai import premenopausal_on_ai
from clinical.settings import Settings
from tests.clinical.rules.builders import (
    BILATERAL_OOPHORECTOMY,
    GOSERELIN,
    ICD10CM,
    LETROZOLE,
    LEUPROLIDE,
    PCS,
    POSTMENOPAUSAL,
    PREMENOPAUSAL,
    ago,
    anastrozole_daily,
    born_years_ago,
    condition,
    drug,
    fires,
    lab,
    man,
    oncology_woman,
    patient,
    procedure,
    run,
    woman,
)

FSH = "15067-2"
ESTRADIOL = "2243-4"
BSO_STATUS = (ICD10CM, "Z90.722", "Acquired absence of ovaries, bilateral")
BSO_PCS = (PCS, "0UT24ZZ", "Resection of Bilateral Ovaries, Percutaneous Endoscopic Approach")
CLIMACTERIC = (ICD10CM, "N95.1", "Menopausal and female climacteric states")
CHEMOTHERAPY = (ICD10CM, "Z92.21", "Personal history of antineoplastic chemotherapy")


def young_woman(
    *extra: dict[str, Any], age: int = 45, ana: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """A woman of 45 with breast cancer on anastrozole and nothing about menopause."""
    return oncology_woman(*extra, age=age, ana=ana)


def test_a_woman_under_60_not_shown_postmenopausal_is_a_warning_with_fsh_and_estradiol_orders() -> (
    None
):
    finding = fires(premenopausal_on_ai, young_woman())
    assert finding.severity is Severity.WARNING
    assert finding.summary.startswith("Anastrozole in a woman aged 45 not shown postmenopausal")
    assert [order.codings[0].code for order in finding.suggested_orders] == ["15067-2", "2243-4"]


def test_a_recorded_premenopausal_state_is_critical() -> None:
    finding = fires(premenopausal_on_ai, young_woman(condition(PREMENOPAUSAL, rid="premeno")))
    assert finding.severity is Severity.CRITICAL
    assert "Condition/premeno" in finding.evidence


@pytest.mark.parametrize(
    ("birth_date", "fired"),
    [
        (born_years_ago(60), False),
        (born_years_ago(60, days_later=1), True),
        (born_years_ago(72), False),
    ],
    ids=["60-today", "59-turning-60-tomorrow", "72"],
)
def test_age_60_or_more_counts_as_postmenopausal(birth_date: str, fired: bool) -> None:
    assert bool(run(premenopausal_on_ai, oncology_woman(birth_date=birth_date))) is fired


def postmenopausal_labs(days_ago: float = 30) -> list[dict[str, Any]]:
    """FSH 68 IU/L and estradiol 8 pg/mL the same day: both in the postmenopausal range."""
    return [
        lab(FSH, 68, "IU/L", rid=f"fsh-{days_ago}", when=ago(days_ago)),
        lab(ESTRADIOL, 8, "pg/mL", rid=f"e2-{days_ago}", when=ago(days_ago)),
    ]


@pytest.mark.parametrize(
    "evidence",
    [
        pytest.param(
            [procedure(BILATERAL_OOPHORECTOMY, rid="bso", days_ago=900)], id="oophorectomy"
        ),
        pytest.param([condition(BSO_STATUS, rid="z90722")], id="absent-ovaries-Z90.722"),
        pytest.param([procedure(BSO_PCS, rid="bso-pcs", days_ago=400)], id="icd-10-pcs-0UT24ZZ"),
        pytest.param(
            [condition(POSTMENOPAUSAL, rid="meno"), *postmenopausal_labs()],
            id="menopause-with-fsh-and-estradiol",
        ),
        pytest.param(
            [
                condition(POSTMENOPAUSAL, rid="meno", clinical_status="inactive"),
                *postmenopausal_labs(),
            ],
            id="menopause-inactive-with-labs",
        ),
        pytest.param(
            [
                {
                    **lab("73831-0", rid="meno-status", when=ago(30)),
                    "valueCodeableConcept": {
                        "coding": [{"system": POSTMENOPAUSAL[0], "code": POSTMENOPAUSAL[1]}]
                    },
                },
                *postmenopausal_labs(),
            ],
            id="menopausal-status-observation-with-labs",
        ),
    ],
)
def test_nccn_menopause_bilateral_oophorectomy_or_amenorrhoea_with_fsh_and_estradiol(
    evidence: list[dict[str, Any]],
) -> None:
    assert run(premenopausal_on_ai, young_woman(*evidence)) == []


def test_a_menopause_code_alone_under_60_does_not_prove_menopause() -> None:
    """NCCN: under 60, FSH and estradiol in the postmenopausal range are needed too."""
    finding = fires(premenopausal_on_ai, young_woman(condition(POSTMENOPAUSAL, rid="meno")))
    assert finding.severity is Severity.WARNING
    assert "FSH and estradiol in the postmenopausal range" in finding.detail


def test_climacteric_symptoms_at_45_are_not_proof_of_menopause() -> None:
    symptoms = condition(CLIMACTERIC, rid="n951")
    finding = fires(premenopausal_on_ai, young_woman(symptoms, *postmenopausal_labs()))
    assert "not proof of menopause" in finding.detail


def test_a_unilateral_oophorectomy_is_not_menopause() -> None:
    one_side = condition((ICD10CM, "Z90.721", "Acquired absence of ovaries, unilateral"), rid="u")
    assert run(premenopausal_on_ai, young_woman(one_side)) != []


def test_amenorrhoea_after_chemotherapy_does_not_prove_menopause() -> None:
    """One FSH/estradiol pair after chemotherapy is not enough: NCCN asks for serial ones."""
    resources = young_woman(
        condition(POSTMENOPAUSAL, rid="meno"),
        condition(CHEMOTHERAPY, rid="chemo", clinical_status=None),
        *postmenopausal_labs(),
    )
    finding = fires(premenopausal_on_ai, resources)
    assert "serial FSH and estradiol" in finding.detail
    serial = [*resources, *postmenopausal_labs(days_ago=120)]
    assert run(premenopausal_on_ai, serial) == []


def test_ovarian_function_recovering_on_the_ai_warns_despite_an_older_menopause_code() -> None:
    """Chemotherapy-induced amenorrhoea, postmenopausal labs once, then on the AI estradiol
    rises to 85 pg/mL and FSH falls: the ovaries have recovered."""
    resources = young_woman(
        condition(POSTMENOPAUSAL, rid="meno"),
        lab(FSH, 70, "IU/L", rid="fsh-old", when=ago(300)),
        lab(ESTRADIOL, 9, "pg/mL", rid="e2-old", when=ago(300)),
        lab(FSH, 12, "IU/L", rid="fsh-new", when=ago(10)),
        lab(ESTRADIOL, 85, "pg/mL", rid="e2-new", when=ago(10)),
        ana=anastrozole_daily(start=ago(250)),
    )
    finding = fires(premenopausal_on_ai, resources)
    assert finding.severity is Severity.WARNING
    assert finding.summary.startswith("Estradiol 85 pg/mL on anastrozole")
    assert "FSH falling" in finding.detail
    assert "Observation/e2-new" in finding.evidence


def test_a_premenopausal_estradiol_on_an_ai_is_itself_a_finding() -> None:
    finding = fires(
        premenopausal_on_ai, young_woman(lab(ESTRADIOL, 140, "pg/mL", rid="e2", when=ago(5)))
    )
    assert "ovarian function present" in finding.summary


def test_the_labs_postmenopausal_range_is_preferred_to_the_site_default() -> None:
    """Estradiol 25 pg/mL is above the site default (20) but inside this lab's
    postmenopausal interval (<= 30): in range."""
    e2 = lab(ESTRADIOL, 25, "pg/mL", rid="e2", when=ago(30))
    e2["referenceRange"] = [
        {
            "high": {"value": 30, "unit": "pg/mL"},
            "appliesTo": [{"text": "Postmenopausal"}],
        }
    ]
    fsh = lab(FSH, 60, "mIU/mL", rid="fsh", when=ago(30))
    resources = young_woman(condition(POSTMENOPAUSAL, rid="meno"), e2, fsh)
    assert run(premenopausal_on_ai, resources) == []


def test_a_recent_last_menstrual_period_is_critical() -> None:
    lmp = {
        **lab("8665-2", rid="lmp", when=ago(20)),
        "valueDateTime": ago(40)[:10],
    }
    finding = fires(premenopausal_on_ai, young_woman(lmp))
    assert finding.severity is Severity.CRITICAL
    assert "still menstruating" in finding.detail


def test_a_provisional_menopause_decides_nothing() -> None:
    provisional = condition(POSTMENOPAUSAL, rid="meno", verification="provisional")
    finding = fires(premenopausal_on_ai, young_woman(provisional, *postmenopausal_labs()))
    assert "Not confirmed (active, provisional)" in finding.detail


def test_a_planned_oophorectomy_does_not_show_postmenopause() -> None:
    planned = procedure(BILATERAL_OOPHORECTOMY, rid="bso", days_ago=-30, status="preparation")
    assert run(premenopausal_on_ai, young_woman(planned)) != []


@pytest.mark.parametrize("gnrh", [GOSERELIN, LEUPROLIDE])
def test_ovarian_suppression_with_a_gnrh_agonist_silences_it(gnrh: tuple[str, str, str]) -> None:
    assert run(premenopausal_on_ai, young_woman(drug(gnrh, "gnrh", start=ago(100)))) == []


def test_a_stopped_gnrh_agonist_no_longer_suppresses() -> None:
    stopped = drug(GOSERELIN, "gnrh", status="stopped", start=ago(400))
    assert run(premenopausal_on_ai, young_woman(stopped)) != []


@pytest.mark.parametrize(
    "resources",
    [
        pytest.param([man(), anastrozole_daily()], id="a-man"),
        pytest.param([patient("unknown"), anastrozole_daily()], id="sex-undetermined"),
        pytest.param(
            oncology_woman(age=45, ana=anastrozole_daily(status="completed")), id="not-on-an-ai"
        ),
    ],
)
def test_it_is_only_about_women_on_an_aromatase_inhibitor(resources: list[dict[str, Any]]) -> None:
    assert run(premenopausal_on_ai, resources) == []


def test_any_aromatase_inhibitor_counts() -> None:
    finding = fires(
        premenopausal_on_ai, [woman(age=42), drug(LETROZOLE, "letrozole", start=ago(50))]
    )
    assert finding.summary.startswith("Letrozole in a woman aged 42")


def test_a_woman_of_unknown_age_is_not_assumed_postmenopausal() -> None:
    finding = fires(premenopausal_on_ai, [woman(age=None), anastrozole_daily()])
    assert "of unknown age" in finding.summary


def test_a_site_menopause_age_of_55_silences_it_for_a_woman_of_57() -> None:
    resources = young_woman(age=57)
    assert run(premenopausal_on_ai, resources) != []
    settings = Settings().with_overrides({"postmenopausal_age": 55})
    assert run(premenopausal_on_ai, resources, settings) == []


def test_evidence_points_at_the_ai_course() -> None:
    assert fires(premenopausal_on_ai, young_woman()).evidence == ("MedicationRequest/ana",)


@pytest.mark.parametrize(("days_ago", "suppressed"), [(14, True), (27, True), (35, False)])
def test_a_goserelin_implant_given_covers_its_28_days(days_ago: int, suppressed: bool) -> None:
    """Given in clinic, the order is closed once the implant is in: the 3.6 mg implant still
    suppresses for its labelled 28 days (Zoladex PI), and no longer after."""
    given = drug(GOSERELIN, "gnrh", status="completed", start=ago(days_ago))
    assert (run(premenopausal_on_ai, young_woman(given)) == []) is suppressed
