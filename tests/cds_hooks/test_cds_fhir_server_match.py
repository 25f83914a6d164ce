"""A fhirServer is matched to the registered ones as URLs compare (RFC 3986, 6.2.2.1): scheme
and host without case; port and path exactly, so nothing else gets the token."""

from __future__ import annotations

import pytest
import responses
from flask.testing import FlaskClient

from cds_hooks.auth import Caller
from cds_hooks.services import prefetch_templates
from tests.cds_hooks.cds_helpers import FHIR, PATIENT_VIEW, Keys, call, trt_man_chart
from tests.cds_hooks.test_cds_fetch import fake_fhir, topics, with_fhir


@pytest.mark.parametrize(  # FHIR, the registered server, is https://ehr.example.org/fhir
    ("named", "allowed"),
    [
        ("https://ehr.example.org/fhir", True),
        ("https://ehr.example.org/fhir/", True),
        ("https://EHR.Example.ORG/fhir", True),
        ("HTTPS://ehr.example.org/fhir", True),
        ("https://ehr.example.org/FHIR", False),  # paths are case-sensitive
        ("http://ehr.example.org/fhir", False),
        ("https://ehr.example.org:8443/fhir", False),
        ("https://ehr.example.org/fhir/other", False),
        ("https://user@ehr.example.org/fhir", False),
    ],
)
def test_a_fhir_server_is_matched_case_insensitively_on_scheme_and_host_only(
    named: str, allowed: bool
) -> None:
    assert (
        Caller("https://ehr.example.org", frozenset({FHIR})).may_use_fhir_server(named) is allowed
    )


def test_a_registered_fhir_server_named_in_capitals_is_queried(
    client: FlaskClient, keys: Keys
) -> None:
    body = with_fhir()
    body["fhirServer"] = "https://EHR.Example.org/fhir"
    with responses.RequestsMock() as mock:
        fake_fhir(mock, trt_man_chart())
        response = call(client, keys, PATIENT_VIEW, body)
        assert len(mock.calls) == len(prefetch_templates())
    assert response.status_code == 200
    assert "estradiol-low" in topics(response)


def test_another_path_on_the_same_host_is_not_sent_the_token(
    client: FlaskClient, keys: Keys
) -> None:
    body = with_fhir()
    body["fhirServer"] = "https://ehr.example.org/FHIR"
    with responses.RequestsMock() as mock:
        response = call(client, keys, PATIENT_VIEW, body)
        assert len(mock.calls) == 0
    assert response.status_code == 412
