"""Suppression by feedback end to end over real HTTP: `anastrozole-cds serve` (two workers) on
127.0.0.1, called as the official CDS Hooks sandbox calls it (an ES384 JWT with a `jku`
header, iss https://sandbox.cds-hooks.org, aud the URL called) and answered as it answers a
dismiss with a reason ({feedback: [{card, outcome: "overridden", overrideReason: {reason:
{code, system}}, outcomeTimestamp}]}, no display, no comment)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet
from prometheus_client.parser import text_string_to_metric_families

from cds_hooks.codes import OVERRIDE_REASONS_SYSTEM
from sandbox.processes import free_port, stop_process, wait_until_ready
from tests.cds_hooks.cds_helpers import (
    PATIENT_VIEW,
    bundle,
    estradiol_result,
    hook_body,
    trt_man_prefetch,
)
from tests.security.sec_live_server import ROOT

pytestmark = pytest.mark.integration

SANDBOX_ISSUER = "https://sandbox.cds-hooks.org"
SANDBOX_JKU = "https://sandbox.cds-hooks.org/.well-known/jwks.json"
CRITICAL_SECONDS = 5  # short, so that the test sees a critical card come back


@dataclass
class Served:
    base: str
    key: ECKey

    def sign(self, aud: str) -> str:
        """What the sandbox's jwt-generator.js signs: no sub, no tenant; exp = iat + 300."""
        now = int(time.time())
        claims = {"iss": SANDBOX_ISSUER, "aud": aud, "exp": now + 300, "iat": now}
        claims["jti"] = str(uuid.uuid4())
        header = {"alg": "ES384", "typ": "JWT", "kid": self.key.kid, "jku": SANDBOX_JKU}
        return jwt.encode(header, claims, self.key, algorithms=["ES384"])

    def open_chart(self, prefetch: dict[str, Any]) -> dict[str, dict[str, Any]]:
        url = f"{self.base}/cds-services/{PATIENT_VIEW}"
        response = requests.post(
            url,
            json=hook_body(prefetch=prefetch),
            headers={"Authorization": f"Bearer {self.sign(url)}"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return {card["source"]["topic"]["code"]: card for card in response.json()["cards"]}

    def dismiss_with_reason(self, card: dict[str, Any], code: str) -> None:
        """card-list.jsx: the reason Coding with code and the card's system, nothing else."""
        url = f"{self.base}/cds-services/{PATIENT_VIEW}/feedback"
        item = {
            "card": card["uuid"],
            "outcome": "overridden",
            "overrideReason": {"reason": {"code": code, "system": OVERRIDE_REASONS_SYSTEM}},
            "outcomeTimestamp": "2026-11-01T12:05:01.123Z",
        }
        response = requests.post(
            url,
            data=orjson.dumps({"feedback": [item]}),
            headers={
                "Authorization": f"Bearer {self.sign(url)}",
                "Content-Type": "application/json",
            },
            timeout=10,
        )
        assert response.json() == {"received": 1}

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        text = requests.get(f"{self.base}/metrics", timeout=5).text
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }


def until(check: Callable[[], bool], seconds: float) -> bool:
    """Whether `check` holds within `seconds`: a card's rows are written by its worker within a
    second, and the next call may reach the other worker."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder: Path = tmp_path_factory.mktemp("alert-burden")
    key = ECKey.generate_key("P-384", parameters={"kid": "44823f3d-sandbox-like", "use": "sig"})
    jwks = folder / "sandbox-jwks.json"
    jwks.write_bytes(orjson.dumps(KeySet([key]).as_dict(private=False)))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = folder / "anastrozole-cds.toml"
    config.write_text(
        f"""public_base_url = "{base}"
store_url = "sqlite:///{folder / "store.sqlite3"}"
instance_path = "{folder}"
evaluation_time = "2026-11-01T12:00:00Z"

[[issuers]]
iss = "{SANDBOX_ISSUER}"
jwks_file = "{jwks}"
allowed_jku = ["{SANDBOX_JKU}"]

[cards]
critical_suppression_seconds = {CRITICAL_SECONDS}
"""
    )
    log = folder / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANASTROZOLE_CDS_")}
    command = [sys.executable, "-m", "anastrozole_cds.cli", "serve", "--host",
               "127.0.0.1", "--port", str(port), "--workers", "2", "--config", str(config)]  # fmt: skip
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        wait_until_ready(f"{base}/healthz", process, what="anastrozole-cds serve")
        yield Served(base, key)
    finally:
        stop_process(process)


def test_a_dismiss_with_a_reason_from_the_sandbox_hides_the_card_until_a_new_result(
    served: Served,
) -> None:
    first = served.open_chart(trt_man_prefetch())
    assert first["estradiol-low"]["indicator"] == "warning"
    time.sleep(1.2)  # the clinician reads the card; its rows are written within a second
    served.dismiss_with_reason(first["estradiol-low"], "will-repeat-test")
    assert until(lambda: "estradiol-low" not in served.open_chart(trt_man_prefetch()), 5)
    assert "monitoring-due" in served.open_chart(trt_man_prefetch())  # the rest is still shown

    newer = trt_man_prefetch()
    newer["estradiol"] = bundle(estradiol_result("e2-2", 12.0, "2026-10-28"))
    assert served.open_chart(newer)["estradiol-low"]["indicator"] == "warning"

    found = served.metrics()
    acknowledged = {"service": PATIENT_VIEW, "rule": "estradiol-low", "disposition": "acknowledged"}
    assert found[("anastrozole_cds_findings_total", frozenset(acknowledged.items()))] >= 1
    answered = {"service": PATIENT_VIEW, "outcome": "overridden"}
    by_rule = {
        rule: found.get(
            (
                "anastrozole_cds_card_answers_total",
                frozenset(
                    {**answered, "rule": rule, "override_reason": "will-repeat-test"}.items()
                ),
            ),
            0.0,
        )
        for rule in ("estradiol-low", "unknown")
    }
    # `unknown` only if the answer beat the card's rows to the database (docs: Monitoring)
    assert sum(by_rule.values()) == 1, by_rule


def test_a_critical_card_dismissed_with_a_reason_comes_back_after_the_short_time(
    served: Served,
) -> None:
    chart = trt_man_prefetch(e2=6.0)
    first = served.open_chart(chart)
    assert first["estradiol-low"]["indicator"] == "critical"
    served.dismiss_with_reason(first["estradiol-low"], "managed-by-specialist")
    dismissed = time.monotonic()
    assert until(lambda: "estradiol-low" not in served.open_chart(chart), CRITICAL_SECONDS - 1)
    time.sleep(max(0.0, dismissed + CRITICAL_SECONDS - time.monotonic()))
    assert until(lambda: "estradiol-low" in served.open_chart(chart), 3)
