"""The dashboard of one SMART session: fresh tokens, the chart from FHIR, the view model."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.exc import DBAPIError

from ehr.client import FhirClient
from runtime.settings import normalise_base_url
from smartapp.dashboard import Answers, Dashboard, build_dashboard
from smartapp.errors import AppError, Problem
from smartapp.fetch import FetchedChart, fetch_chart
from smartapp.flow import SmartRuntime, fresh_session, refresh_session
from smartapp.tokens import SmartSession

log = logging.getLogger(__name__)


def _fetch(runtime: SmartRuntime, session: SmartSession) -> FetchedChart:
    with FhirClient(
        session.iss, access_token=session.access_token, limits=runtime.fhir_limits
    ) as client:
        return fetch_chart(
            client,
            session.patient,
            deadline_seconds=runtime.smart.fhir_deadline_seconds,
            granted_scope=session.scope,
            extra_resources=runtime.smart.extra_resources,
        )


def load_dashboard(runtime: SmartRuntime, session: SmartSession, clock: datetime) -> Dashboard:
    """Read the chart with a valid token (refreshing once if the server refuses the token: a
    401; a 403 is a scope a new token would not widen) and judge it as of the product's `now`.
    Raises AppError for a page the clinician understands."""
    session = fresh_session(runtime, session, clock)
    fetched = _fetch(runtime, session)
    if fetched.token_refused and session.refresh_token:
        log.info("FHIR server refused the access token; refreshing once")
        session = refresh_session(runtime, session)
        fetched = _fetch(runtime, session)
    denied = fetched.token_refused or fetched.denied
    if denied:
        log.warning("FHIR server refused the app's access: %s", denied)
        raise AppError(Problem.ACCESS_DENIED, denied)
    if fetched.unavailable:
        log.warning("FHIR server did not give essential data: %s", fetched.unavailable)
        raise AppError(Problem.FHIR_UNAVAILABLE, fetched.unavailable)
    return build_dashboard(
        list(fetched.resources),  # the core reads lists and Bundles
        now=runtime.product.now(),
        settings=runtime.clinical,
        app_context=session.app_context,
        fetch_gaps=fetched.gaps,
        answers=_answers(runtime, session, clock),
    )


def _answers(runtime: SmartRuntime, session: SmartSession, clock: datetime) -> Answers | None:
    """The answers given to this patient's cards in the EHRs that list this FHIR server."""
    log_ = runtime.acknowledgements
    if log_ is None:
        return None
    server = normalise_base_url(session.iss)
    issuers = frozenset(
        issuer.iss
        for issuer in runtime.product.issuers
        if server in {normalise_base_url(s) for s in issuer.fhir_servers}
    )
    try:
        found = log_.acknowledgements_in_app(
            log_.patient(session.patient), issuers=issuers, now=clock
        )
    except DBAPIError as error:  # the page is still worth showing without the marks
        log.warning("acknowledgements unavailable: %s", type(error).__name__)
        return None
    return Answers(tuple(found), clock, log_.cards)
