"""Play the EHR's part in a CDS Hooks call: build the request as a CDS client does, and send it.

    templates = discovery_prefetch()  # the service's own prefetch templates
    queries = resolve_prefetch(templates, {"patientId": "p1", "userId": "Practitioner/x"}, today)
    prefetch, problems = fetch_prefetch(fhir_client, queries)
    body = hook_request("patient-view", fhir_server, context, prefetch=prefetch, access_token=t)
    token = sign_jwt(key, issuer=..., audience=service_url(base, "patient-view"))

Prefetch tokens: `{{context.patientId}}`, `{{context.userId}}` and other context fields, and the
relative dates of the CDS Hooks 3.0 ballot, `{{today()}}` and `{{today() - 90 days}}` (also
`+`, and `weeks`, `months`, `years`).
"""

from __future__ import annotations

import calendar
import re
import time
import uuid
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from cds_hooks.services import SERVICES, discovery_document
from clinical.valuesets import load as load_valuesets
from ehr.client import FhirClient
from sandbox.patients import PRACTITIONER_ID

HOOKS = ("patient-view", "order-select", "order-sign")
DEFAULT_USER = f"Practitioner/{PRACTITIONER_ID}"  # loaded with the patients (`load`)
JWT_LIFETIME_SECONDS = 300
# `{{today() - 90 days}}`: FHIRPath date arithmetic with a calendar-duration quantity.
_TODAY = re.compile(
    r"\{\{\s*today\(\)\s*(?:(?P<sign>[+-])\s*(?P<amount>\d+)\s*"
    r"(?P<unit>days?|weeks?|months?|years?|'d'|'wk'|'mo'|'a'))?\s*\}\}"
)
_CONTEXT = re.compile(r"\{\{\s*context\.(?P<name>[A-Za-z]+)\s*\}\}")


class SandboxError(Exception):
    """Something the integrator must fix (bad key, no service, no draft order); says what."""


def service_id(hook: str) -> str:
    """The id of this product's service for a hook."""
    for service in SERVICES.values():
        if service.hook == hook:
            return service.id
    raise SandboxError(f"no service for hook {hook!r}; hooks: {', '.join(HOOKS)}")


def service_url(base_url: str, hook: str) -> str:
    """The URL a CDS client POSTs to, and the JWT `aud`: `{base}/cds-services/{id}`.

    The discovery URL (`{base}/cds-services`), which admins register, is taken as its base.
    """
    base = base_url.rstrip("/").removesuffix("/cds-services")
    return f"{base}/cds-services/{service_id(hook)}"


def require_http_url(url: str, *, what: str) -> str:
    """`url` when it is an absolute http(s) URL; else a SandboxError that names `what`."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.netloc:
        return url
    raise SandboxError(f"{what} must start with http:// or https:// (got {url!r})")


def discovery_prefetch(hook: str, *, relative_dates: bool = True) -> dict[str, str]:
    """The prefetch templates the service publishes for a hook (as discovery shows them)."""
    for service in discovery_document(relative_dates=relative_dates)["services"]:
        if service["hook"] == hook:
            prefetch: dict[str, str] = service.get("prefetch", {})
            return prefetch
    raise SandboxError(f"no service for hook {hook!r}")


# -- prefetch --------------------------------------------------------------------------------


def resolve_template(template: str, context: Mapping[str, Any], today: date) -> str:
    """One prefetch template with its tokens replaced; an unknown context field stays as is."""

    def context_value(match: re.Match[str]) -> str:
        value = context.get(match["name"])
        return quote(str(value), safe="/") if isinstance(value, str | int) else match[0]

    def relative_date(match: re.Match[str]) -> str:
        if match["sign"] is None:
            return today.isoformat()
        amount = int(match["amount"]) * (1 if match["sign"] == "+" else -1)
        return _add(today, amount, match["unit"].strip("'")).isoformat()

    return _TODAY.sub(relative_date, _CONTEXT.sub(context_value, template))


def _add(day: date, amount: int, unit: str) -> date:
    if unit.startswith("d"):
        return day + timedelta(days=amount)
    if unit.startswith("w"):
        return day + timedelta(weeks=amount)
    months = amount if unit.startswith("mo") else amount * 12
    month_index = day.year * 12 + day.month - 1 + months
    year, month = divmod(month_index, 12)
    last_day = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(day.day, last_day))  # FHIRPath: clamp to the month's end


def resolve_prefetch(
    templates: Mapping[str, str], context: Mapping[str, Any], today: date
) -> dict[str, str]:
    """Every template of a service, resolved for one context."""
    return {key: resolve_template(query, context, today) for key, query in templates.items()}


def fetch_prefetch(
    client: FhirClient, queries: Mapping[str, str], *, deadline_seconds: float = 30.0
) -> tuple[dict[str, Any], dict[str, str]]:
    """Prefetch values from the FHIR server, and the keys that failed with why.

    A read gives the resource (a 404 gives null: no data); a search gives a searchset Bundle.
    A key that failed otherwise is left out, as a CDS client does: the service fetches it.
    """
    results = client.fetch_all(queries, deadline_seconds=deadline_seconds)
    prefetch: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for key, query in queries.items():
        result = results[key]
        is_read = "?" not in query
        if not result.usable:
            if is_read and result.reason and result.reason.startswith("HTTP 404"):
                prefetch[key] = None
            else:
                problems[key] = result.reason or "failed"
            continue
        if is_read:
            prefetch[key] = result.resources[0] if result.resources else None
        else:
            prefetch[key] = searchset(result.resources)
    return prefetch, problems


def searchset(resources: Any) -> dict[str, Any]:
    """A searchset Bundle of resources, as a prefetch value."""
    entries = [{"resource": resource, "search": {"mode": "match"}} for resource in resources]
    return {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}


# -- the request -----------------------------------------------------------------------------


def hook_context(
    hook: str,
    patient_id: str,
    *,
    user_id: str = DEFAULT_USER,
    draft_orders: list[dict[str, Any]] | None = None,
    selections: list[str] | None = None,
) -> dict[str, Any]:
    """`context` per hook: patient-view 1.0, order-select 1.0, order-sign 1.1."""
    context: dict[str, Any] = {"userId": user_id, "patientId": patient_id}
    if hook == "patient-view":
        return context
    if not draft_orders:
        raise SandboxError(f"{hook} needs at least one draft order")
    context["draftOrders"] = draft_orders_bundle(draft_orders)
    if hook == "order-select":
        drafts = [f"{order['resourceType']}/{order['id']}" for order in draft_orders]
        # The service judges every draft when the selections name none: say so here instead.
        unknown = [selected for selected in selections or [] if selected not in drafts]
        if unknown:
            raise SandboxError(
                f"--select {', '.join(unknown)} names no draft order; "
                f"the drafts are: {', '.join(drafts)}"
            )
        context["selections"] = selections or drafts
    return context


def draft_orders_bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """`draftOrders`: a collection Bundle of the draft resources."""
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in resources],
    }


def hook_request(
    hook: str,
    fhir_server: str,
    context: dict[str, Any],
    *,
    prefetch: dict[str, Any] | None = None,
    access_token: str | None = None,
    scope: str = "patient/*.read",
) -> dict[str, Any]:
    """The CDS Hooks 2.0 request body."""
    body: dict[str, Any] = {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": fhir_server.rstrip("/"),
        "context": context,
    }
    if access_token:
        body["fhirAuthorization"] = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 3600,
            "scope": scope,
            "subject": "anastrozole-cds-sandbox",
        }
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def renewal_draft(chart: list[dict[str, Any]], today: date) -> dict[str, Any]:
    """A draft that renews the patient's latest active anastrozole order (for order hooks).

    The draft gets a new id: a renewal of a running course, not a new start.
    """
    valuesets = load_valuesets()
    candidates = []
    for resource in chart:
        if (
            resource.get("resourceType") != "MedicationRequest"
            or resource.get("status") != "active"
        ):
            continue
        concept = resource.get("medicationCodeableConcept") or {}
        names = valuesets.names_for_codeable(concept) | valuesets.names_for_text(
            concept.get("text")
        )
        if "anastrozole" in names:
            candidates.append(resource)
    if not candidates:
        raise SandboxError(
            "the patient has no active anastrozole order to renew: give --draft-order FILE"
        )
    latest = max(candidates, key=lambda order: str(order.get("authoredOn", "")))
    draft = {key: value for key, value in latest.items() if key != "meta"}
    draft.update(id=f"{latest['id']}-renewal", status="draft", authoredOn=today.isoformat())
    return draft


# -- the JWT ---------------------------------------------------------------------------------


def load_signing_key(jwk: object) -> ECKey | RSAKey:
    """A private JWK (EC P-384 or RSA) for signing, as parsed from JSON; it needs a `kid`."""
    if not isinstance(jwk, Mapping):
        raise SandboxError(f"not a JWK: the file holds a JSON {_json_kind(jwk)}, not an object")
    if "keys" in jwk and "kty" not in jwk:
        raise SandboxError(
            'a JWK Set ({"keys": [...]}), not one JWK: give one private JWK, an object with '
            '"kty", "kid" and "d"'
        )
    if "kty" not in jwk:
        raise SandboxError('not a JWK: the object has no "kty"')
    if "d" not in jwk:
        raise SandboxError("the key is a public key: give the private JWK")
    if not jwk.get("kid"):
        raise SandboxError("the key has no kid: the service finds the key by its kid")
    try:
        if jwk.get("kty") == "EC":
            if jwk.get("crv") != "P-384":
                raise SandboxError("an EC key must be on P-384 (ES384)")
            return ECKey.import_key(dict(jwk))
        if jwk.get("kty") == "RSA":
            return RSAKey.import_key(dict(jwk))
    except ValueError as error:
        raise SandboxError(f"the key cannot be read: {type(error).__name__}") from None
    raise SandboxError("the key must be an EC P-384 or an RSA JWK")


def _json_kind(value: object) -> str:
    kinds = {list: "list", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def sign_jwt(
    key: ECKey | RSAKey,
    *,
    issuer: str,
    audience: str,
    issued_at: datetime | None = None,
    lifetime_seconds: int = JWT_LIFETIME_SECONDS,
) -> str:
    """The bearer JWT a CDS client sends (CDS Hooks 2.0, "Trusting CDS Clients")."""
    now = int(issued_at.timestamp()) if issued_at else int(time.time())
    alg = "ES384" if isinstance(key, ECKey) else "RS384"
    header = {"alg": alg, "typ": "JWT", "kid": key.kid}
    claims = {
        "iss": issuer,
        "aud": audience,
        "iat": now,
        "exp": now + lifetime_seconds,
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(header, claims, key, algorithms=[alg])
