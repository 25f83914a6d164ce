"""The CDS Hooks 2.0 request and feedback bodies, validated at the HTTP boundary.

A body that does not validate becomes a `RequestProblem`: a 400 whose JSON names each field
and what is wrong with it, and never echoes a value (values can be PHI or tokens).
"""

from __future__ import annotations

import logging
import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from clinical.reader import with_entry_id
from ehr.urls import is_absolute_http_url

log = logging.getLogger(__name__)

FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


class RequestProblem(Exception):
    """A malformed request: 400 with `message` and, per field, what is wrong."""

    def __init__(self, message: str, details: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    @classmethod
    def from_validation(
        cls, error: ValidationError, message: str, prefix: str = ""
    ) -> RequestProblem:
        details = []
        for item in error.errors(include_input=False, include_url=False, include_context=False):
            location = ".".join(str(part) for part in item["loc"])
            field = f"{prefix}.{location}" if prefix and location else prefix or location or "body"
            details.append({"field": field, "problem": str(item["msg"])})
        return cls(message, details)


def _absolute_url(value: str) -> str:
    """An absolute http(s) URL; the scheme compares without case (RFC 3986, 3.1)."""
    if not is_absolute_http_url(value):
        raise ValueError("must be an absolute http(s) URL")
    return value


class FhirAuthorization(BaseModel):
    """`fhirAuthorization`: the bearer token for `fhirServer` (never logged: SecretStr)."""

    model_config = ConfigDict(extra="allow")

    access_token: SecretStr
    token_type: str
    expires_in: int | None = None
    scope: str | None = None
    subject: str | None = None

    @field_validator("access_token")
    @classmethod
    def _token(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("token_type")
    @classmethod
    def _bearer(cls, value: str) -> str:
        if value.lower() != "bearer":
            raise ValueError("must be 'Bearer'")
        return value


class HookRequest(BaseModel):
    """The body POSTed to a CDS service."""

    model_config = ConfigDict(extra="allow")  # `extension` and later additions

    hook: str = Field(min_length=1)
    hookInstance: str
    fhirServer: str | None = None
    fhirAuthorization: FhirAuthorization | None = None
    context: dict[str, Any]
    prefetch: dict[str, Any] | None = None

    @field_validator("hookInstance")
    @classmethod
    def _uuid(cls, value: str) -> str:
        try:
            uuid.UUID(value)
        except ValueError:
            raise ValueError("must be a UUID") from None
        return value

    @field_validator("fhirServer")
    @classmethod
    def _server(cls, value: str | None) -> str | None:
        return None if value is None else _absolute_url(value)

    @model_validator(mode="after")
    def _authorization_needs_server(self) -> HookRequest:
        if self.fhirAuthorization is not None and self.fhirServer is None:
            raise ValueError("fhirServer is required when fhirAuthorization is given")
        return self


FhirId = Annotated[str, Field(pattern=FHIR_ID.pattern)]


class PatientViewContext(BaseModel):
    """patient-view 1.0 context."""

    model_config = ConfigDict(extra="allow")

    userId: str = Field(min_length=1)
    patientId: FhirId
    encounterId: str | None = None

    def draft_resources(self) -> list[dict[str, Any]]:
        return []


class OrderSignContext(PatientViewContext):
    """order-sign 1.1 context: every draft order, in a Bundle."""

    draftOrders: dict[str, Any]

    @field_validator("draftOrders")
    @classmethod
    def _bundle(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value.get("resourceType") != "Bundle":
            raise ValueError("must be a FHIR Bundle")
        entries = value.get("entry", [])
        if not isinstance(entries, list):
            raise ValueError("entry must be a list")
        for index, entry in enumerate(entries):
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
                raise ValueError(f"entry[{index}] has no resource")
        return value

    def draft_resources(self) -> list[dict[str, Any]]:
        """The drafts, each named as the chart's resources are: one with no id by its entry's
        urn:uuid fullUrl (a transaction-style Bundle), so an order that names its Medication
        by fullUrl is read, and selections and evidence can name it."""
        return [
            with_entry_id(entry["resource"], entry.get("fullUrl"))
            for entry in self.draftOrders.get("entry", [])
        ]


class OrderSelectContext(OrderSignContext):
    """order-select 1.0 context: the draft orders and which of them were just selected."""

    selections: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)


HOOK_CONTEXTS: dict[str, type[PatientViewContext]] = {
    "patient-view": PatientViewContext,
    "order-select": OrderSelectContext,
    "order-sign": OrderSignContext,
}


def parse_hook_request(body: bytes, expected_hook: str) -> tuple[HookRequest, PatientViewContext]:
    """The request and its hook's context, or RequestProblem."""
    # orjson parses the body (prefetch included) about six times faster than pydantic's JSON
    # mode; pydantic then checks the envelope, passing the prefetch's resources through as-is.
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise RequestProblem(
            "the CDS Hooks request is not valid",
            [
                {
                    "field": "(body)",
                    "problem": f"not valid JSON: {error.msg} at position {error.pos}",
                }
            ],
        ) from None
    try:
        request = HookRequest.model_validate(document)
    except ValidationError as error:
        raise RequestProblem.from_validation(error, "the CDS Hooks request is not valid") from None
    if request.hook != expected_hook:
        raise RequestProblem(
            f"this service answers the {expected_hook!r} hook, not {request.hook!r}",
            [{"field": "hook", "problem": f"must be {expected_hook!r}"}],
        )
    try:
        context = HOOK_CONTEXTS[expected_hook].model_validate(request.context)
    except ValidationError as error:
        raise RequestProblem.from_validation(
            error, f"the {expected_hook} context is not valid", prefix="context"
        ) from None
    if request.prefetch is not None:
        problems = [
            {"field": f"prefetch.{key}", "problem": problem}
            for key, value in request.prefetch.items()
            if (problem := _prefetch_problem(value))
        ]
        if problems:
            raise RequestProblem("the prefetch is not valid", problems)
    return request, context


def _prefetch_problem(value: Any) -> str | None:
    """What makes a prefetch value malformed FHIR JSON (a client bug, told as a 400 as for
    draftOrders); whether well-formed data answers its template is the chart's question."""
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        return "must be a FHIR resource (or a Bundle) or null"
    entries = value.get("entry")
    if value["resourceType"] == "Bundle" and entries is not None and not isinstance(entries, list):
        return "entry must be a list"
    return None


# -- feedback ------------------------------------------------------------------------------------

TRUNCATED = "[truncated]"


def _fits(column_size: int) -> AfterValidator:
    """Text longer than its database column, kept and cut to fit, marked as cut. CDS Hooks sets
    no length, and each item is a distinct end-user interaction: refusing one would lose the
    others of the batch, for a limit the client could not know."""

    def fit(text: str | None) -> str | None:
        if text is None or len(text) <= column_size:
            return text
        log.info("a feedback text of %d characters was cut to %d", len(text), column_size)
        return text[: column_size - len(TRUNCATED)] + TRUNCATED

    return AfterValidator(fit)


class FeedbackCoding(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: Annotated[str, Field(min_length=1), _fits(200)]
    system: Annotated[str, Field(min_length=1), _fits(500)]
    display: Annotated[str | None, _fits(500)] = None


class OverrideReasonModel(BaseModel):
    model_config = ConfigDict(extra="allow")

    reason: FeedbackCoding | None = None
    userComment: Annotated[str | None, _fits(4000)] = None  # a bound on a Text column


class AcceptedSuggestion(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: Annotated[str, Field(min_length=1), _fits(200)]


class FeedbackItem(BaseModel):
    model_config = ConfigDict(extra="allow")

    card: Annotated[str, Field(min_length=1), _fits(200)]
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: list[AcceptedSuggestion] | None = None
    overrideReason: OverrideReasonModel | None = None
    outcomeTimestamp: datetime

    @field_validator("outcomeTimestamp")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        try:
            return value.astimezone(UTC)
        except OverflowError:  # "0001-01-01T00:00:00+01:00" is before year 1 in UTC
            raise ValueError("out of range in UTC") from None

    @model_validator(mode="after")
    def _outcome_fields(self) -> FeedbackItem:
        if self.outcome == "accepted":
            if not self.acceptedSuggestions:
                raise ValueError("acceptedSuggestions is required when the outcome is 'accepted'")
            if self.overrideReason is not None:
                raise ValueError("overrideReason is only for the outcome 'overridden'")
        elif self.acceptedSuggestions:
            raise ValueError("acceptedSuggestions is only for the outcome 'accepted'")
        return self


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    feedback: list[FeedbackItem] = Field(min_length=1, max_length=1000)


def parse_feedback(body: bytes) -> FeedbackRequest:
    try:
        return FeedbackRequest.model_validate_json(body)
    except ValidationError as error:
        raise RequestProblem.from_validation(error, "the feedback is not valid") from None
