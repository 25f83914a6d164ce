"""ALT and AST under every LOINC method code (with or without P-5'-P) are read by the liver
rules, the record, the prefetch and the dashboard: the analyte comes from the value sets."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import pytest

from clinical.reader import build_record, observation_reading_of
from clinical.rules.liver_injury_on_ai import liver_injury_on_ai
from clinical.rules.liver_panel_due import liver_panel_due
from clinical.settings import Settings
from clinical.valuesets import load
from tests.clinical.rules.builders import (
    LOINC,
    NOW,
    UCUM,
    ago,
    alt,
    ast,
    fires,
    oncology_woman,
    run,
    trt_man,
)

# LOINC long common names (tx.fhir.org / VSAC expansions, see data/valuesets.json).
ALT_WITH_P5P = (
    "1743-4",
    "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma by With P-5'-P",
)
ALT_NO_P5P = (
    "1744-2",
    "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma by No addition of P-5'-P",
)
AST_WITH_P5P = (
    "30239-8",
    "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma by With P-5'-P",
)
AST_NO_P5P = (
    "88112-8",
    "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma by No addition of P-5'-P",
)
NEW_CODES = [ALT_WITH_P5P, ALT_NO_P5P, AST_WITH_P5P, AST_NO_P5P]


def enzyme(
    code: tuple[str, str], value: float, *, rid: str, days_ago: float = 20, high: float = 40
) -> dict[str, Any]:
    """A final serum enzyme result as a hospital analyser sends it, with its reference range."""
    loinc, display = code
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": LOINC, "code": loinc, "display": display}]},
        "subject": {"reference": "Patient/pt"},
        "effectiveDateTime": ago(days_ago),
        "valueQuantity": {"value": value, "unit": "U/L", "system": UCUM, "code": "U/L"},
        "referenceRange": [{"high": {"value": high, "unit": "U/L", "system": UCUM, "code": "U/L"}}],
    }


@pytest.mark.parametrize("code", [ALT_WITH_P5P, ALT_NO_P5P], ids=["with-p5p", "no-p5p"])
def test_alt_by_either_p5p_method_at_10x_normal_is_flagged_as_alt(code: tuple[str, str]) -> None:
    resources = trt_man(enzyme(code, 400, rid="alt"), enzyme(AST_WITH_P5P, 35, rid="ast"))
    finding = fires(liver_injury_on_ai, resources)
    assert finding.summary.startswith("ALT 400 U/L (10.0x ULN 40) on anastrozole")
    assert "Observation/alt" in finding.evidence


@pytest.mark.parametrize("code", [AST_WITH_P5P, AST_NO_P5P], ids=["with-p5p", "no-p5p"])
def test_ast_by_either_p5p_method_above_3x_normal_is_flagged_as_ast(code: tuple[str, str]) -> None:
    resources = oncology_woman(enzyme(ALT_NO_P5P, 30, rid="alt"), enzyme(code, 200, rid="ast"))
    assert fires(liver_injury_on_ai, resources).summary.startswith("AST 200 U/L (5.0x")


def test_the_newest_alt_counts_whichever_method_coded_it() -> None:
    # Last month's ALT by the P-5'-P method is normal; an older ALT 1742-6 was high.
    resources = oncology_woman(
        alt(300, rid="alt-old", days_ago=60), enzyme(ALT_WITH_P5P, 25, rid="alt")
    )
    assert run(liver_injury_on_ai, resources) == []


def test_alt_and_ast_by_p5p_methods_make_a_liver_panel() -> None:
    resources = oncology_woman(
        enzyme(ALT_NO_P5P, 30, rid="alt", days_ago=100),
        enzyme(AST_NO_P5P, 28, rid="ast", days_ago=100),
    )
    assert run(liver_panel_due, resources) == []


@pytest.mark.parametrize(
    "done",
    [
        pytest.param(
            [enzyme(ALT_WITH_P5P, 30, rid="a1"), enzyme(ALT_NO_P5P, 31, rid="a2")], id="two-alts"
        ),
        pytest.param([enzyme(AST_WITH_P5P, 30, rid="s1"), ast(28)], id="two-asts"),
    ],
)
def test_two_alts_or_two_asts_are_not_a_liver_panel(done: list[dict[str, Any]]) -> None:
    assert run(liver_panel_due, oncology_woman(*done)) != []


def test_the_usual_codes_mixed_with_p5p_codes_make_a_panel() -> None:
    resources = oncology_woman(
        alt(30, days_ago=100), enzyme(AST_WITH_P5P, 28, rid="ast", days_ago=100)
    )
    assert run(liver_panel_due, resources) == []


@pytest.mark.parametrize("code", NEW_CODES, ids=[c[0] for c in NEW_CODES])
def test_the_record_reads_every_method_code_as_a_transaminase_in_u_per_l(
    code: tuple[str, str],
) -> None:
    result = enzyme(code, 3, rid="lft")
    result["valueQuantity"] = {"value": 3, "unit": "ukat/L", "system": UCUM, "code": "ukat/L"}
    record = build_record(oncology_woman(result), NOW)
    latest = record.latest("liver-transaminases")
    assert latest is not None and latest.value == 180 and latest.unit == "U/L"
    assert record.latest("hepatic-function-panel") is not None
    assert observation_reading_of(load(), result) == "lab"


def test_the_alt_and_ast_value_sets_split_the_transaminases_without_overlap() -> None:
    valuesets = load()
    alt_codes = {c.code for c in valuesets.codes("alt")}
    ast_codes = {c.code for c in valuesets.codes("ast")}
    transaminases = {c.code for c in valuesets.codes("liver-transaminases")}
    assert alt_codes == {"1742-6", "1743-4", "1744-2"}
    assert ast_codes == {"1920-8", "30239-8", "88112-8"}
    assert alt_codes | ast_codes == transaminases
    assert transaminases <= {c.code for c in valuesets.codes("hepatic-function-panel")}


@pytest.mark.parametrize("code", NEW_CODES, ids=[c[0] for c in NEW_CODES])
def test_the_cds_hooks_liver_prefetch_and_report_query_ask_for_every_method_code(
    code: tuple[str, str],
) -> None:
    from cds_hooks.services import prefetch_templates

    for key in ("liverTests", "diagnosticReports"):
        template = next(t for t in prefetch_templates() if t.key == key)
        params = dict(parse_qsl(template.template(relative_dates=True).partition("?")[2]))
        assert f"{LOINC}|{code[0]}" in params["code"].split(",")


def test_the_dashboard_shows_alt_and_ast_sent_under_p5p_codes() -> None:
    from smartapp.dashboard import build_dashboard

    resources = oncology_woman(
        enzyme(ALT_NO_P5P, 24, rid="alt", days_ago=30),
        enzyme(AST_WITH_P5P, 21, rid="ast", days_ago=30),
    )
    page = build_dashboard(resources, now=NOW, settings=Settings())
    liver = next(item for item in page.monitoring if item.key == "liver")
    assert liver.last_text == "ALT 24 U/L · AST 21 U/L"
    assert liver.status == "ok"
