"""ai-interaction: anastrozole with tamoxifen (not a switch) or an estrogen-containing therapy."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from clinical.finding import Severity
from clinical.rules.ai_interaction import ai_interaction
from clinical.settings import Settings
from tests.clinical.rules.builders import (
    ESTRADIOL_PATCH,
    NOW,
    TAMOXIFEN,
    ago,
    ahead,
    anastrozole,
    anastrozole_daily,
    by_name,
    drug,
    fires,
    oncology_woman,
    run,
    statement,
    trt_man,
    woman,
)


def tamoxifen(**fields: Any) -> dict[str, Any]:
    return drug(TAMOXIFEN, "tamoxifen", mg=20, **fields)


def estrogen(**fields: Any) -> dict[str, Any]:
    return drug(ESTRADIOL_PATCH, "estradiol-patch", **fields)


def test_anastrozole_with_current_tamoxifen_is_a_warning() -> None:
    finding = fires(ai_interaction, oncology_woman(tamoxifen()))
    assert finding.severity is Severity.WARNING
    assert finding.summary.startswith("Anastrozole with tamoxifen")


def test_anastrozole_with_estrogen_is_a_warning_naming_the_estrogen() -> None:
    finding = fires(ai_interaction, [woman(), anastrozole(), estrogen()])
    assert finding.severity is Severity.WARNING
    assert "84 HR estradiol" in finding.summary


def test_estrogen_with_oncology_intent_is_critical() -> None:
    assert fires(ai_interaction, oncology_woman(estrogen())).severity is Severity.CRITICAL


@pytest.mark.parametrize(
    "resources",
    [
        pytest.param(oncology_woman(tamoxifen(status="draft")), id="draft-tamoxifen"),
        pytest.param(
            oncology_woman(tamoxifen(), ana=anastrozole_daily(status="draft")),
            id="draft-anastrozole",
        ),
        pytest.param(
            [woman(), anastrozole(), estrogen(status="draft")],
            id="draft-estrogen",
        ),
    ],
)
def test_a_draft_order_that_makes_the_combination_is_critical(
    resources: list[dict[str, Any]],
) -> None:
    assert fires(ai_interaction, resources).severity is Severity.CRITICAL


def test_tamoxifen_stopped_before_anastrozole_is_history_not_a_combination() -> None:
    completed = statement(
        TAMOXIFEN, rid="tamoxifen", status="completed", start=ago(2000), end=ago(210)
    )
    assert run(ai_interaction, oncology_woman(completed)) == []


@pytest.mark.parametrize(
    ("overlap_days", "fired"), [(20, False), (30, False), (31, True), (60, True)]
)
def test_a_documented_switch_ending_within_30_days_of_the_start_is_not_a_combination(
    overlap_days: int, fired: bool
) -> None:
    # Anastrozole started 10 days ago; tamoxifen, still current, ends `overlap_days` after that.
    start = NOW - timedelta(days=10)
    ending = (start + timedelta(days=overlap_days)).isoformat()
    resources = oncology_woman(
        tamoxifen(start=ago(900), end=ending), ana=anastrozole_daily(start=start.isoformat())
    )
    assert bool(run(ai_interaction, resources)) is fired


def test_a_draft_anastrozole_replacing_tamoxifen_that_ends_soon_is_a_switch() -> None:
    resources = oncology_woman(tamoxifen(end=ahead(14)), ana=anastrozole_daily(status="draft"))
    assert run(ai_interaction, resources) == []


def test_a_site_switch_window_of_10_days_makes_a_20_day_overlap_a_combination() -> None:
    start = NOW - timedelta(days=10)
    resources = oncology_woman(
        tamoxifen(end=(start + timedelta(days=20)).isoformat()),
        ana=anastrozole_daily(start=start.isoformat()),
    )
    assert run(ai_interaction, resources) == []
    settings = Settings().with_overrides({"tamoxifen_switch_days": 10})
    assert run(ai_interaction, resources, settings) != []


@pytest.mark.parametrize(
    "resources",
    [
        pytest.param(oncology_woman(), id="anastrozole-alone"),
        pytest.param(
            oncology_woman(tamoxifen(), ana=anastrozole_daily(status="stopped")),
            id="no-anastrozole",
        ),
        pytest.param(
            oncology_woman(tamoxifen(status="entered-in-error")), id="tamoxifen-entered-in-error"
        ),
        pytest.param(oncology_woman(estrogen(status="cancelled")), id="estrogen-cancelled"),
        pytest.param(trt_man(), id="testosterone-is-not-an-estrogen"),
    ],
)
def test_no_interaction_without_both_drugs_current(resources: list[dict[str, Any]]) -> None:
    assert run(ai_interaction, resources) == []


def test_evidence_points_at_every_course_involved() -> None:
    finding = fires(ai_interaction, oncology_woman(tamoxifen()))
    assert finding.evidence == ("MedicationRequest/ana", "MedicationRequest/tamoxifen")


@pytest.mark.parametrize("product", ["Estring 2 mg vaginal ring", "Imvexxy 10 mcg insert"])
def test_a_vaginal_estrogen_known_only_by_its_brand_is_an_estrogen(product: str) -> None:
    """The label's estrogen caution has no exception for the vaginal route, and vaginal
    estradiol raised serum estradiol in women on an AI (Kendall 2006, Ann Oncol)."""
    ring = drug(by_name(product), "ring", start=ago(30))
    assert "ring" in " ".join(fires(ai_interaction, oncology_woman(ring)).evidence)


def test_a_tamoxifen_draft_beside_anastrozole_is_offered_for_removal() -> None:
    finding = fires(ai_interaction, oncology_woman(tamoxifen(status="draft")))
    (action,) = finding.order_actions
    assert (action.kind, action.target, action.recommended) == (
        "delete",
        "MedicationRequest/tamoxifen",
        True,
    )


def test_a_running_tamoxifen_is_not_offered_for_removal_by_an_order_hook() -> None:
    assert fires(ai_interaction, oncology_woman(tamoxifen())).order_actions == ()
