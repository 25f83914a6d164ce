"""Lab units normalised to the unit each rule compares in; an unknown unit gives no value.

Hand-written tables, not a UCUM library: the conversions the rules need are few, and the
molar ones (estradiol, testosterone, bilirubin) need a molecular weight that UCUM does not
carry. A maintained UCUM library (ucumvert 0.3, on pint) was tried against these units and
not adopted: it reads UCUM strictly (case-sensitive, so "PG/ML" is petagauss per megalitre;
no "mIU/mL", no micro sign), cannot convert [IU]/L to U/L or moles to mass, and a parse
costs about half a millisecond, more than a whole evaluation. What labs send is normalised
here instead: case, spaces, the micro sign (U+00B5) and the Greek mu (U+03BC), and UCUM
annotations ("{calc}"), which UCUM 4.4 says do not change a unit's meaning."""

from __future__ import annotations

import re

# Factors to the canonical unit, by the unit as labs send it (UCUM code or common text),
# compared case-insensitively with spaces removed.
# Estradiol: 1 pg/mL = 3.671 pmol/L (MW 272.38); 1 ng/L = 1 pg/mL.
# Testosterone: 1 nmol/L = 28.84 ng/dL (MW 288.42); 1 ng/mL = 100 ng/dL.
# Enzymes: 1 ukat/L = 60 U/L (IFCC); IU/L = U/L.
# Bilirubin: 1 mg/dL = 17.1 umol/L (MW 584.66).
_CONVERSIONS: dict[str, tuple[str, dict[str, float]]] = {
    "estradiol": (
        "pg/mL",
        {"pg/ml": 1.0, "ng/l": 1.0, "pmol/l": 1 / 3.671, "pg/dl": 0.01},
    ),
    "testosterone": (
        "ng/dL",
        {"ng/dl": 1.0, "nmol/l": 28.84, "ng/ml": 100.0},
    ),
    "enzyme": (
        "U/L",
        {"u/l": 1.0, "iu/l": 1.0, "[iu]/l": 1.0, "units/l": 1.0, "ukat/l": 60.0},
    ),
    "bilirubin": (
        "mg/dL",
        {"mg/dl": 1.0, "umol/l": 1 / 17.1, "mmol/l": 1000 / 17.1},
    ),
    "t-score": ("", {"": 1.0, "1": 1.0, "{t-score}": 1.0, "{tscore}": 1.0, "sd": 1.0, "{sd}": 1.0}),
    # FSH: 1 mIU/mL = 1 IU/L (WHO international units).
    "fsh": (
        "IU/L",
        {"iu/l": 1.0, "[iu]/l": 1.0, "miu/ml": 1.0, "m[iu]/ml": 1.0, "u/l": 1.0, "mu/ml": 1.0},
    ),
}

# Which quantity kind each value set's results are.
KIND_OF_VALUESET: dict[str, str] = {
    "estradiol-serum": "estradiol",
    "testosterone-total": "testosterone",
    "testosterone-free": "testosterone",
    "liver-transaminases": "enzyme",
    "bilirubin-total": "bilirubin",
    "dxa-tscore": "t-score",
    "fsh": "fsh",
    "alkaline-phosphatase": "enzyme",
}

# A result sent with no unit is read in its code's own unit where the code says it: LOINC
# 2243-4 is estradiol [Mass/volume], reported in pg/mL; 14715-7 and 72873-3 are [Moles/volume],
# in pmol/L.
UNIT_OF_CODE: dict[str, str] = {"2243-4": "pg/mL", "14715-7": "pmol/L", "72873-3": "pmol/L"}


def canonical_unit(kind: str) -> str:
    return _CONVERSIONS[kind][0]


# A UCUM annotation ("pg/mL{calc}") names what was measured, not the unit: UCUM 4.4 says
# it does not change the unit's meaning.
_ANNOTATION = re.compile(r"\{[^{}]*\}")


_MICRO = str.maketrans({"\u00b5": "u", "\u03bc": "u"})  # micro sign, Greek mu


def normalise(kind: str, value: float, unit: str | None) -> float | None:
    """The value in the kind's canonical unit, or None when the unit is not one we know."""
    factors = _CONVERSIONS[kind][1]
    key = (unit or "").replace(" ", "").lower()
    if not key.isascii():
        key = key.translate(_MICRO)
    factor = factors.get(key)
    if factor is None and "{" in key:
        factor = factors.get(_ANNOTATION.sub("", key))
    if factor is None:
        return None
    return value * factor
