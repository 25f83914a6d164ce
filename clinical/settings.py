"""Thresholds and look-back windows: defaults with their sources; a site may change any of them."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from typing import Any

SOURCES: dict[str, str] = {
    "estradiol_floor_pg_ml": "TRT practice: a 20-30 pg/mL target with an AI is common in men's-health "
    "practice, endorsed by no guideline (the Endocrine Society TRT guideline, Bhasin 2018 JCEM "
    "103:1715, sets none); LC-MS/MS adult male interval 10-42 pg/mL (ARUP Laboratories test 0093247)",
    "estradiol_critical_pg_ml": "Fink 2006 JCEM (MrOS): osteoporosis 15.4% vs 2.8% with total E2 < 10 pg/mL",
    "estradiol_ceiling_pg_ml": "Adult male upper reference limit about 40-42 pg/mL by LC-MS/MS "
    "(ARUP Laboratories test 0093247); TRT practice reads > 40 pg/mL as raised",
    "estradiol_target_band_pg_ml": "TRT practice: 20-30 pg/mL on TRT with an AI; no guideline target "
    "(Bhasin 2018 JCEM 103:1715 sets none)",
    "estradiol_interval": "Site default 90 days: the AI dose is titrated to estradiol; the Endocrine "
    "Society TRT guideline monitors 3-6 months after a change (Bhasin 2018 JCEM 103:1715)",
    "estradiol_grace": "Site default: 2 weeks after an AI start before a first check is due; "
    "anastrozole approaches steady state in about 7 days (Arimidex PI 12.3)",
    "dexa_interval": "ASCO 2019 (Shapiro, JCO 37:2916): repeat DXA every 2 years on an AI",
    "dexa_interval_low_bone_mass": "ASCO 2019: repeat DXA in 1 year when medically indicated "
    "(osteopenia or T-score <= -1.0)",
    "dexa_baseline_window": "ASCO 2019 Rec 2.1 / Arimidex PI 5.2: DXA at AI start; 6 months either side",
    "osteoporosis_t_score": "WHO definition; ASCO 2019 Rec 3.4: bone-modifying therapy at T <= -2.5",
    "low_bone_mass_t_score": "WHO definition of osteopenia: T-score <= -1.0",
    "male_dexa_warning_after": "Men: baseline and serial DXA on long-term AI use (beyond a year), not "
    "at the start of a course of a few months (fertility); Burnett-Bowie 2009 JCEM: BMD loss in "
    "men after 1 year on anastrozole",
    "liver_panel_interval": "LiverTox Anastrozole 2017 (rare hepatocellular injury); Lee 2020 (AI-associated "
    "NAFLD): 12 months, site policy",
    "liver_baseline_window": "Site policy: a baseline liver panel within 3 months either side of the "
    "AI start, so later results can be compared (LiverTox, Anastrozole 2017)",
    "transaminase_uln_u_l": "Site default upper limit of normal for ALT/AST when the lab sends no "
    "referenceRange: 40 U/L, a common adult reference limit",
    "transaminase_injury_multiple": "LiverTox / DILI convention: ALT or AST > 3x ULN",
    "bilirubin_uln_mg_dl": "Site default upper limit of normal for total bilirubin (1.2 mg/dL)",
    "bilirubin_hy_multiple": "Hy's law (FDA DILI guidance 2009): bilirubin > 2x ULN with ALT/AST > 3x ULN",
    "lipid_panel_interval": "Arimidex PI 5.3: total cholesterol increases, consider monitoring; "
    "12 months, site policy",
    "lipid_baseline_window": "Arimidex PI 5.3: cholesterol at AI start; 3 months either side",
    "glycemic_interval": "Gibb 2016 JCEM: aromatase inhibition reduced insulin sensitivity in men; "
    "HbA1c or fasting glucose yearly",
    "postmenopausal_age": "NCCN breast cancer guideline, definition of menopause: age >= 60 years",
    "amenorrhoea_for_menopause": "NCCN definition of menopause: under 60, amenorrhoeic for 12 months "
    "or more (without chemotherapy, tamoxifen, toremifene or ovarian suppression) with FSH and "
    "estradiol in the postmenopausal range",
    "postmenopausal_estradiol_max_pg_ml": "Upper end of the postmenopausal estradiol range when the lab "
    "sends none: NAMS 2019 workshop (Menopause 2020) up to 10 pg/mL by GC-MS/MS; direct "
    "immunoassays read unreliably below about 20 pg/mL, so 20 pg/mL; an estradiol above it on an "
    "AI without ovarian suppression is ovarian function (NCCN)",
    "postmenopausal_fsh_min_iu_l": "Lower end of the postmenopausal FSH range when the lab sends none: "
    "STRAW+10 (Harlow 2012, Menopause 19:387) puts FSH > 25 IU/L in the late menopausal "
    "transition already, so 30 IU/L",
    "alkaline_phosphatase_uln_u_l": "Site default upper limit of normal for alkaline phosphatase when "
    "the lab sends no referenceRange: 147 U/L (MedlinePlus ALP test, adult range 44-147 IU/L)",
    "alp_cholestasis_multiple": "Hy's law needs no initial cholestasis: ALP < 2x ULN (FDA DILI "
    "premarketing guidance 2009)",
    "r_ratio_cholestatic": "R = (ALT/ULN)/(ALP/ULN): <= 2 cholestatic, >= 5 hepatocellular, between "
    "mixed (FDA DILI guidance 2009; Danan & Benichou, RUCAM)",
    "oncology_weekly_dose_mg": "Arimidex PI 2.1: 1 mg once daily (7 mg/week); in a man on TRT "
    "this dose risks over-suppression (TRT practice: 0.25-0.5 mg twice weekly; Leder 2004 JCEM "
    "89:1174 compared 1 mg daily with 1 mg twice weekly in older men)",
    "max_weekly_dose_mg": "Arimidex PI 2.1: 1 mg once daily is the labelled dose; no benefit above it",
    "trt_proposed_dose_mg": "TRT practice: 0.25-0.5 mg twice weekly, titrated to estradiol (half a "
    "1 mg tablet, the only strength, is 0.5 mg); the dose an order hook proposes for a draft",
    "tamoxifen_switch_days": "Site policy: a switch, not a combination, when one ends within 30 "
    "days of the other's start (switching trials switch without overlap: IES, Coombes 2004 NEJM "
    "350:1081)",
}


def days(n: int) -> timedelta:
    return timedelta(days=n)


@dataclass(frozen=True)
class Settings:
    """Every number a rule compares against. Defaults are cited in SOURCES."""

    estradiol_floor_pg_ml: float = 20.0
    estradiol_critical_pg_ml: float = 10.0
    estradiol_ceiling_pg_ml: float = 40.0
    estradiol_target_band_pg_ml: tuple[float, float] = (20.0, 30.0)
    estradiol_interval: timedelta = days(90)
    estradiol_grace: timedelta = days(14)
    dexa_interval: timedelta = days(730)
    dexa_interval_low_bone_mass: timedelta = days(365)
    dexa_baseline_window: timedelta = days(183)
    osteoporosis_t_score: float = -2.5
    low_bone_mass_t_score: float = -1.0
    male_dexa_warning_after: timedelta = days(365)
    liver_panel_interval: timedelta = days(365)
    liver_baseline_window: timedelta = days(90)
    transaminase_uln_u_l: float = 40.0
    transaminase_injury_multiple: float = 3.0
    bilirubin_uln_mg_dl: float = 1.2
    bilirubin_hy_multiple: float = 2.0
    lipid_panel_interval: timedelta = days(365)
    lipid_baseline_window: timedelta = days(90)
    glycemic_interval: timedelta = days(365)
    postmenopausal_age: int = 60
    amenorrhoea_for_menopause: timedelta = days(365)
    postmenopausal_estradiol_max_pg_ml: float = 20.0
    postmenopausal_fsh_min_iu_l: float = 30.0
    alkaline_phosphatase_uln_u_l: float = 147.0
    alp_cholestasis_multiple: float = 2.0
    r_ratio_cholestatic: float = 2.0
    oncology_weekly_dose_mg: float = 7.0
    max_weekly_dose_mg: float = 7.0
    trt_proposed_dose_mg: float = 0.5  # twice weekly
    tamoxifen_switch_days: int = 30
    disabled_rules: frozenset[str] = field(default_factory=frozenset)

    def enabled(self, rule_id: str) -> bool:
        return rule_id not in self.disabled_rules

    def with_overrides(self, overrides: dict[str, Any]) -> Settings:
        """A copy with some values changed; durations are given in days. Unknown keys are errors."""
        known = {f.name: f for f in fields(self)}
        changes: dict[str, Any] = {}
        for key, value in overrides.items():
            if key not in known:
                raise ValueError(f"unknown clinical setting {key!r}")
            current = getattr(self, key)
            if isinstance(current, timedelta):
                changes[key] = days(int(value))
            elif key == "disabled_rules":
                changes[key] = frozenset(value)
            elif isinstance(current, tuple):
                changes[key] = tuple(float(v) for v in value)
            else:
                changes[key] = type(current)(value)
        return replace(self, **changes)


DEFAULT_SETTINGS = Settings()
