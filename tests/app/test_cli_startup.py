"""The command line starts without loading the web app: a batch command or `keys generate`
should not wait for Flask, SQLAlchemy and the SMART app to import (2 s here, measured)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("flask", "sqlalchemy", "smartapp.views", "cds_hooks.views", "fhir.resources")


def test_importing_the_command_line_loads_none_of_the_web_app() -> None:
    probe = (
        "import sys, anastrozole_cds.cli; "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == ""


def test_the_keys_command_is_still_there() -> None:
    from click.testing import CliRunner

    from anastrozole_cds.cli import main

    result = CliRunner().invoke(main, ["keys", "generate", "--help"])
    assert result.exit_code == 0
    assert "--alg" in result.output
