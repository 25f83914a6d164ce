"""Talking to the EHR's FHIR server: see `ehr.client.FhirClient`."""

from ehr.client import ClientLimits, Deadline, FhirClient, NextPage, Outcome, QueryResult

__all__ = ["ClientLimits", "Deadline", "FhirClient", "NextPage", "Outcome", "QueryResult"]
