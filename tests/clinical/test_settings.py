"""Settings: every threshold a rule compares against, with its source; a site may change them."""

from __future__ import annotations

from dataclasses import fields
from datetime import timedelta

import pytest

from clinical.settings import SOURCES, Settings


def test_every_threshold_cites_its_source() -> None:
    thresholds = {f.name for f in fields(Settings)} - {"disabled_rules"}
    assert thresholds == set(SOURCES)
    assert all(len(source) > 20 for source in SOURCES.values())


def test_overrides_convert_days_and_numbers() -> None:
    changed = Settings().with_overrides(
        {"dexa_interval": 365, "estradiol_floor_pg_ml": "15", "disabled_rules": ["lipid-panel-due"]}
    )
    assert changed.dexa_interval == timedelta(days=365)
    assert changed.estradiol_floor_pg_ml == 15.0
    assert not changed.enabled("lipid-panel-due")
    assert Settings().estradiol_floor_pg_ml == 20.0  # the default is untouched


@pytest.mark.parametrize(
    "overrides",
    [{"no_such_setting": 1}, {"estradiol_floor_pg_ml": "low"}, {"dexa_interval": "soon"}],
)
def test_bad_overrides_are_refused_with_a_clear_error(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Settings().with_overrides(overrides)
