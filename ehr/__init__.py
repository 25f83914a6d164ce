"""FHIR access: the REST client (`ehr.client.FhirClient`), search encoding and the token's
base (`ehr.urls`), SMART scopes (`ehr.scopes`), key files (`ehr.keys`), and Bulk Data export
with SMART Backend Services (`ehr.bulk`, `ehr.backend_services`)."""

from ehr.client import ClientLimits, Deadline, FhirClient, NextPage, Outcome, QueryResult

__all__ = ["ClientLimits", "Deadline", "FhirClient", "NextPage", "Outcome", "QueryResult"]
