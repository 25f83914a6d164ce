"""What went wrong, in words a clinician understands, and what to do about it.

Every failure of the launch or the page is an `AppError` of one `Problem`; the views turn it
into a page. A `detail` is the safe technical reason (an OAuth error code, "HTTP 503"),
shown small for the help desk; it never holds a token, a code or a stack trace.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Problem(StrEnum):
    NO_ISSUER = "no-issuer"
    UNKNOWN_ISSUER = "unknown-issuer"
    DISCOVERY_FAILED = "discovery-failed"
    EHR_UNSUITABLE = "ehr-unsuitable"
    AUTHORIZATION_REFUSED = "authorization-refused"
    STATE_MISMATCH = "state-mismatch"
    PKCE_MISSING = "pkce-missing"
    TOKEN_FAILED = "token-failed"
    IDENTITY_UNVERIFIED = "identity-unverified"
    NO_PATIENT = "no-patient"
    SESSION_EXPIRED = "session-expired"
    ACCESS_DENIED = "access-denied"
    FHIR_UNAVAILABLE = "fhir-unavailable"
    SIGN_OUT_REFUSED = "sign-out-refused"
    NOT_FOUND = "not-found"
    INTERNAL = "internal"
    LAUNCH_TOO_LONG = "launch-too-long"
    TOO_MANY_LAUNCHES = "too-many-launches"


@dataclass(frozen=True)
class ProblemPage:
    status: int
    title: str
    message: str
    advice: str


_RELAUNCH = "Open the app again from the patient's chart in the EHR."

PAGES: dict[Problem, ProblemPage] = {
    Problem.NO_ISSUER: ProblemPage(
        400,
        "The app was not opened from an EHR",
        "The app needs to know which EHR it was opened from, and it was not told.",
        _RELAUNCH,
    ),
    Problem.UNKNOWN_ISSUER: ProblemPage(
        403,
        "This EHR is not registered with the app",
        "The app was opened from an EHR that is not on this site's list of trusted EHRs, "
        "so it did not connect to it and nothing was sent there.",
        "If this EHR should be able to open the app, ask your EHR administrator to add it "
        "to the app's allowed issuers.",
    ),
    Problem.DISCOVERY_FAILED: ProblemPage(
        502,
        "The EHR's sign-in service could not be reached",
        "The app could not find or reach the sign-in service of the EHR it was opened from.",
        "Try again in a minute. If it keeps happening, tell your EHR administrator.",
    ),
    Problem.EHR_UNSUITABLE: ProblemPage(
        502,
        "The EHR's sign-in service cannot be used safely",
        "The EHR's sign-in service does not offer what the app needs to sign in safely.",
        "Tell your EHR administrator; the app's documentation says what it needs.",
    ),
    Problem.AUTHORIZATION_REFUSED: ProblemPage(
        403,
        "The EHR did not give the app access",
        "The EHR's sign-in service declined the app's request for access to this chart.",
        "If you expected access, open the app again from the chart or ask your EHR "
        "administrator which permissions the app has.",
    ),
    Problem.STATE_MISMATCH: ProblemPage(
        400,
        "This sign-in could not be matched to the app",
        "The answer from the EHR's sign-in service does not belong to a sign-in that this "
        "browser started, or it was already used. It was ignored, to keep the chart safe.",
        _RELAUNCH,
    ),
    Problem.PKCE_MISSING: ProblemPage(
        400,
        "The sign-in could not be completed safely",
        "A security check the app keeps for each sign-in was missing, so the app did not "
        "finish it.",
        _RELAUNCH,
    ),
    Problem.TOKEN_FAILED: ProblemPage(
        502,
        "The EHR did not complete the sign-in",
        "The EHR's sign-in service did not give the app access to the chart.",
        _RELAUNCH + " If it keeps happening, tell your EHR administrator.",
    ),
    Problem.IDENTITY_UNVERIFIED: ProblemPage(
        401,
        "Your identity could not be confirmed",
        "The EHR's statement of who is signed in could not be verified, so the app did not "
        "open the chart.",
        _RELAUNCH + " If it keeps happening, tell your EHR administrator.",
    ),
    Problem.NO_PATIENT: ProblemPage(
        400,
        "No patient was selected",
        "The EHR opened the app without saying which patient's chart to show.",
        "Open a patient's chart in the EHR, then open the app from there.",
    ),
    Problem.SESSION_EXPIRED: ProblemPage(
        401,
        "Your session has ended",
        "For the patient's privacy, the app's access to the chart ends after a while or "
        "when the EHR withdraws it.",
        _RELAUNCH,
    ),
    Problem.ACCESS_DENIED: ProblemPage(
        403,
        "The EHR did not let the app read this chart",
        "The EHR's FHIR server refused the app's request for this patient's data.",
        _RELAUNCH + " If it keeps happening, ask your EHR administrator which permissions "
        "the app has.",
    ),
    Problem.FHIR_UNAVAILABLE: ProblemPage(
        502,
        "The patient's data could not be read from the EHR",
        "The EHR's FHIR server did not answer, or answered with an error, so the app has no "
        "chart to show. Nothing was judged on partial data.",
        "Try again in a minute. If it keeps happening, tell your EHR administrator.",
    ),
    Problem.SIGN_OUT_REFUSED: ProblemPage(
        403,
        "The app did not sign out",
        "The request to sign out did not come from the app's own page in this browser, so it "
        "was ignored. Nothing was changed.",
        "To sign out, use the Sign out button at the top of the app's page.",
    ),
    Problem.NOT_FOUND: ProblemPage(
        404,
        "Page not found",
        "There is no page of the app at this address.",
        _RELAUNCH,
    ),
    Problem.INTERNAL: ProblemPage(
        500,
        "Something went wrong in the app",
        "The app failed while preparing this page. The error was logged.",
        "Try again. If it keeps happening, tell your EHR administrator and quote the "
        "reference below.",
    ),
    Problem.LAUNCH_TOO_LONG: ProblemPage(
        400,
        "The EHR's launch could not be used",
        "The EHR opened the app with a launch value far longer than any EHR sends, so the "
        "app did not start the sign-in.",
        "Open the app again from the patient's chart. If it keeps happening, tell your EHR "
        "administrator.",
    ),
    Problem.TOO_MANY_LAUNCHES: ProblemPage(
        503,
        "The app cannot start another sign-in now",
        "Too many sign-ins to the app are in progress on this site at the moment, so this "
        "one was not started.",
        "Try again in a few minutes. If it keeps happening, tell your EHR administrator.",
    ),
}


class AppError(Exception):
    """A failure the clinician is shown as a page."""

    def __init__(self, problem: Problem, detail: str | None = None) -> None:
        super().__init__(problem.value if detail is None else f"{problem.value}: {detail}")
        self.problem = problem
        self.detail = detail

    @property
    def page(self) -> ProblemPage:
        return PAGES[self.problem]
