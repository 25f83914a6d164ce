"""The CDS Hooks 2.0 HTTP interface: discovery, the three services, feedback, rule pages.

Views are thin: check the caller, validate the body, gather the chart, call `hook.answer`,
render. Every error a client can cause is a JSON 4xx that says what is wrong.
"""

from __future__ import annotations

import html
import logging
import time
from dataclasses import dataclass
from typing import Any

import orjson
from flask import Blueprint, Flask, Response, current_app, g, request

from cds_hooks.auth import AuthError, Caller, JwtVerifier
from cds_hooks.cards import CardContext
from cds_hooks.hook import answer
from cds_hooks.metrics import UNKNOWN, Metrics, burden_metrics_for, metrics_for
from cds_hooks.models import RequestProblem, parse_feedback, parse_hook_request
from cds_hooks.openapi import openapi_document
from cds_hooks.prefetch import (
    ClientFactory,
    FhirAccess,
    PreconditionFailed,
    fhir_access,
    gather_chart,
)
from cds_hooks.services import SERVICES, CdsService, discovery_document, prefetch_templates
from cds_hooks.suppression import CardScreen
from clinical.rules import CATALOGUE, RULES
from clinical.settings import Settings as ClinicalSettings
from ehr.client import ClientLimits, FhirClient
from runtime.acknowledgements import CardEvidenceLog, patient_key_secret
from runtime.card_settings import CardSettings, read_card_settings
from runtime.settings import ProductSettings
from runtime.store import FeedbackRecord, Store, StoreError

log = logging.getLogger(__name__)

blueprint = Blueprint("cds_hooks", __name__)
EXTENSION = "cds_hooks"


@dataclass
class HooksRuntime:
    """What the views need, built once per app."""

    settings: ProductSettings
    store: Store
    verifier: JwtVerifier
    clinical: ClinicalSettings
    client_factory: ClientFactory
    metrics: Metrics
    cards: CardSettings
    screen: CardScreen  # the [cards] policy and suppression by feedback


def init_app(
    app: Flask,
    settings: ProductSettings,
    store: Store,
    *,
    client_factory: ClientFactory | None = None,
) -> None:
    """Register the CDS Hooks blueprint and what its views need."""
    limits = ClientLimits(
        connect_timeout=settings.fhir_connect_timeout_seconds,
        read_timeout=settings.fhir_read_timeout_seconds,
        max_pages=settings.fhir_max_pages,
        max_call_bytes=settings.fhir_max_bytes_per_call,
        max_workers=settings.fhir_max_parallel,
    )

    def default_client(access: FhirAccess) -> FhirClient:
        return FhirClient(access.server, access_token=access.token, limits=limits)

    cards = read_card_settings(settings.cards)
    if cards.patient_key is None and store.engine.dialect.name != "sqlite":
        log.warning(
            "[cards] patient_key is not set: this instance hashes patient ids with its own "
            "key; instances sharing this database must set the same patient_key"
        )
    evidence_log = CardEvidenceLog(
        store, patient_key_secret(cards.patient_key, settings.instance_path), cards
    )
    app.extensions[EXTENSION] = HooksRuntime(
        settings=settings,
        store=store,
        verifier=JwtVerifier(settings, store),
        clinical=settings.clinical_settings(),
        client_factory=client_factory or default_client,
        metrics=metrics_for(app),
        cards=cards,
        screen=CardScreen(evidence_log, cards, burden_metrics_for(app)),
    )
    app.register_blueprint(blueprint)


def _runtime() -> HooksRuntime:
    runtime: HooksRuntime = current_app.extensions[EXTENSION]
    return runtime


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status=status, mimetype="application/json", headers=headers)


def error_response(status: int, error: str, message: str, **extra: Any) -> Response:
    return json_response({"error": error, "message": message, **extra}, status)


def base_url(settings: ProductSettings) -> str:
    """This service as the EHR sees it: the configured public URL. The request's own URL only
    when no JWT is checked against it (no issuers, or verification off): create_app refuses
    to start otherwise, as the Host header is the caller's to choose."""
    return settings.public_base_url or request.url_root.rstrip("/")


# -- errors raised by the views --------------------------------------------------------------------


# A 401 says only that the token was not accepted: why (its class in /metrics, its words in
# the log) would tell whoever holds a stolen or forged token what to change.
NOT_ACCEPTED = "the JWT in the Authorization header was not accepted"


@blueprint.errorhandler(AuthError)
def _unauthorized(error: AuthError) -> Response:
    log.warning("CDS call refused (%d, %s): %s", error.status, error.refusal, error.reason)
    _runtime().metrics.count_jwt_refusal(error.refusal)
    if error.status != 401:  # the service's own trouble (the replay cache): say what it is
        return error_response(error.status, "unavailable", error.reason)
    response = error_response(401, "unauthorized", NOT_ACCEPTED)
    response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return response


@blueprint.errorhandler(RequestProblem)
def _bad_request(error: RequestProblem) -> Response:
    log.info("bad CDS request: %s (%d problems)", error.message, len(error.details))
    return error_response(400, "bad_request", error.message, details=error.details)


@blueprint.errorhandler(PreconditionFailed)
def _precondition_failed(error: PreconditionFailed) -> Response:
    log.info("CDS call without the data it needs: %s", ", ".join(error.missing))
    service_id = (request.view_args or {}).get("service_id")
    if service_id in SERVICES:  # a failed fetch of the core data is a gap too, for /metrics
        for gap in error.gaps:
            _runtime().metrics.count_data_gap(service_id, gap.key, gap.fault)
    return error_response(412, "precondition_failed", error.message, missingPrefetch=error.missing)


@blueprint.errorhandler(StoreError)
def _store_unavailable(error: StoreError) -> Response:
    return error_response(503, "unavailable", str(error))


def _service(service_id: str) -> CdsService:
    service = SERVICES.get(service_id)
    if service is None:
        raise _NotFound()
    return service


class _NotFound(Exception):
    pass


@blueprint.errorhandler(_NotFound)
def _not_found(_error: _NotFound) -> Response:
    return error_response(404, "not_found", "no such CDS service; see GET /cds-services")


def _caller(*audiences: str) -> Caller:
    runtime = _runtime()
    caller = runtime.verifier.verify(request.headers.get("Authorization"), audiences)
    runtime.metrics.count_tenant_request(caller.tenant_label)
    return caller


# -- discovery ------------------------------------------------------------------------------------


@blueprint.get("/cds-services")
def discovery() -> Response:
    runtime = _runtime()
    if runtime.settings.discovery_requires_jwt:
        _caller(f"{base_url(runtime.settings)}/cds-services")
    return json_response(
        discovery_document(
            relative_dates=runtime.settings.prefetch_relative_dates, cards=runtime.cards
        )
    )


@blueprint.get("/openapi.json")
def openapi() -> Response:
    return json_response(openapi_document())


# -- the services ---------------------------------------------------------------------------------

CALL_ENDPOINT = "cds_hooks.call_service"


@blueprint.before_request
def _start_call_clock() -> None:
    if request.endpoint == CALL_ENDPOINT and request.method == "POST":  # not CORS preflights
        g.call_started = time.perf_counter()


@blueprint.after_request
def _count_call(response: Response) -> Response:
    """Every call, refused or answered, by its status; the service id only when it is one."""
    started = g.pop("call_started", None)
    if started is not None:
        service = SERVICES.get((request.view_args or {}).get("service_id", ""))
        _runtime().metrics.count_call(
            service.id if service else UNKNOWN,
            service.hook if service else UNKNOWN,
            response.status_code,
            time.perf_counter() - started,
        )
    return response


@blueprint.post("/cds-services/<service_id>")
def call_service(service_id: str) -> Response:
    started = time.monotonic()
    runtime = _runtime()
    service = _service(service_id)
    root = base_url(runtime.settings)
    caller = _caller(f"{root}/cds-services/{service.id}")
    hook_request, context = parse_hook_request(request.get_data(cache=False), service.hook)

    now = runtime.settings.now()
    drafts = context.draft_resources()
    access, no_access_reason = fhir_access(hook_request, caller)
    chart = gather_chart(
        hook_request,
        context.patientId,
        prefetch_templates(),
        access=access,
        no_access_reason=no_access_reason,
        client_factory=runtime.client_factory,
        deadline_seconds=runtime.settings.fhir_deadline_seconds,
        today=now.date(),
        drafts=drafts,
    )
    card_context = CardContext(
        base_url=root,
        patient_id=context.patientId,
        now=now,
        product_label=runtime.settings.product_label,
        smart_launch_url=runtime.settings.smart_launch_url,
        user_reference=context.userId,
        encounter_id=context.encounterId,
        suggestion_intent=runtime.settings.suggestion_intent,
        drafts={
            f"{draft['resourceType']}/{draft['id']}": draft
            for draft in drafts
            if isinstance(draft.get("id"), str)
        },
    )
    screen = runtime.screen.for_call(
        service.id, service.hook, context.patientId, caller.issuer, caller.tenant
    )
    result = answer(
        service,
        hook_request.hookInstance,
        context,
        chart,
        now=now,
        settings=runtime.clinical,
        card_context=card_context,
        screen=screen,
    )
    runtime.store.record_issued_cards(result.issued)
    runtime.screen.remember(screen)
    for card in result.cards:  # the data-incomplete card too, by its topic
        runtime.metrics.count_card(service.id, card["source"]["topic"]["code"], card["indicator"])
    for gap in chart.gaps:
        runtime.metrics.count_data_gap(service.id, gap.key, gap.fault)
    log.info(
        "%s: %d cards (%s), withheld %s, data %s, gaps %s, %.0f ms",
        service.id,
        len(result.cards),
        ",".join(card.rule_id for card in result.issued) or "-",
        ",".join(result.withheld) or "-",
        _count_sources(chart.sources),
        # reasons name the fault ("HTTP 503", "timeout"), never a URL, value or token
        "; ".join(f"{gap.key}: {gap.reason}" for gap in chart.gaps) or "-",
        (time.monotonic() - started) * 1000,
    )
    return json_response({"cards": result.cards})


def _count_sources(sources: dict[str, str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for source in sources.values():
        counts[source] = counts.get(source, 0) + 1
    return counts


# -- feedback -------------------------------------------------------------------------------------


@blueprint.post("/cds-services/<service_id>/feedback")
def feedback(service_id: str) -> Response:
    runtime = _runtime()
    service = _service(service_id)
    root = base_url(runtime.settings)
    caller = _caller(
        f"{root}/cds-services/{service.id}/feedback", f"{root}/cds-services/{service.id}"
    )
    body = parse_feedback(request.get_data(cache=False))
    records = [
        FeedbackRecord(
            service_id=service.id,
            card_uuid=item.card,
            outcome=item.outcome,
            outcome_timestamp=item.outcomeTimestamp,
            accepted_suggestions=tuple(s.id for s in item.acceptedSuggestions or ()),
            override_reason_system=_reason(item, "system"),
            override_reason_code=_reason(item, "code"),
            override_reason_display=_reason(item, "display"),
            user_comment=item.overrideReason.userComment if item.overrideReason else None,
        )
        for item in body.feedback
    ]
    stored = runtime.store.record_feedback(records, issuer=caller.issuer, tenant=caller.tenant)
    for record in records:
        runtime.metrics.count_feedback(service.id, record.outcome)
        runtime.metrics.count_tenant_feedback(service.id, caller.tenant_label)
    runtime.screen.count_answers(service.id, records)  # by rule and reason, for /metrics
    log.info("%s: %d feedback items stored", service.id, stored)
    return json_response({"received": stored})


def _reason(item: Any, attribute: str) -> str | None:
    reason = item.overrideReason.reason if item.overrideReason else None
    return getattr(reason, attribute) if reason is not None else None


# -- what a card's links open -----------------------------------------------------------------------

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;line-height:1.5}}
code{{background:#f3f3f3;padding:0 .2em}}</style></head>
<body><h1>{title}</h1>{body}</body></html>"""


@blueprint.get("/about/rules")
def about_rules() -> Response:
    label = html.escape(_runtime().settings.product_label)
    items = "".join(
        f'<li><a href="rules/{html.escape(rule.id)}"><code>{html.escape(rule.id)}</code></a>: '
        f"{html.escape(rule.meaning)}</li>"
        for rule in CATALOGUE
    )
    body = (
        f"<p>{label} checks the monitoring of anastrozole and other aromatase inhibitors. "
        f"Each card names its check in <code>source.topic.code</code>:</p><ul>{items}</ul>"
    )
    return Response(_PAGE.format(title=f"{label}: the checks", body=body), mimetype="text/html")


@blueprint.get("/about/rules/<rule_id>")
def about_rule(rule_id: str) -> Response:
    rule = RULES.get(rule_id)
    if rule is None:
        return error_response(404, "not_found", "no such check")
    reasons = "".join(f"<li>{html.escape(r.display)}</li>" for r in rule.override_reasons)
    body = (
        f"<p><code>{html.escape(rule.id)}</code>: {html.escape(rule.meaning)}</p>"
        f"<p>The card says what was found, with the values, dates and the guideline behind "
        f"it. Reasons you can give when you dismiss it:</p><ul>{reasons}</ul>"
        f'<p><a href="../rules">All checks</a></p>'
    )
    return Response(_PAGE.format(title=html.escape(rule.title), body=body), mimetype="text/html")
