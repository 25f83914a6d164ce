"""Server-side state of the SMART app: launches in progress and signed-in sessions.

The browser holds only a random cookie; tokens stay here, in the product's database (the
same engine as `runtime.store`, tables of our own, created by its migrations), sealed with `TokenCipher`. The
cookie is stored hashed, so a copy of the database does not let anyone into a session, nor
read a token without the key. A launch is used once: the callback takes it out of the table.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    ColumnElement,
    Connection,
    DateTime,
    Engine,
    MetaData,
    String,
    Table,
    Text,
    and_,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from smartapp.token_cipher import TokenCipher

log = logging.getLogger(__name__)

# Launches are written before anyone signs in (issue 18: 3,000 rows of up to 3.7 KB in 11 s).
# A browser rarely has more than a few launches in flight (one per tab); an abandoned one
# lasts LAUNCH_LIFETIME (10 minutes). 5,000 pending launches is far above what clinicians
# start in 10 minutes at a large site, and at most about 20 MB of rows.
MAX_LAUNCHES_PER_BROWSER = 10
MAX_PENDING_LAUNCHES = 5000
MAX_LAUNCH_VALUE_CHARS = 2048  # the EHR's opaque `launch`; real ones are far shorter

metadata = MetaData()

launch_table = Table(
    "smart_launch",
    metadata,
    Column("state", String(128), primary_key=True),
    Column("browser", String(64), nullable=False, index=True),  # sha256 of the browser cookie
    Column("iss", String(1000), nullable=False),
    Column("launch", Text, nullable=True),  # the EHR's launch value; None for standalone
    Column("code_verifier", String(128), nullable=True),
    Column("nonce", String(128), nullable=False),
    Column("redirect_uri", String(1000), nullable=False),
    Column("token_endpoint", String(1000), nullable=False),
    Column("issuer", String(1000), nullable=True),  # OpenID issuer, for the id_token
    Column("jwks_uri", String(1000), nullable=True),
    Column("framed", Boolean, nullable=False),
    Column("expires_at", DateTime, nullable=False, index=True),  # UTC
)

session_table = Table(
    "smart_session",
    metadata,
    Column("handle", String(64), primary_key=True),
    Column("browser", String(64), nullable=False, index=True),
    Column("iss", String(1000), nullable=False),
    Column("token_endpoint", String(1000), nullable=False),
    Column("access_token", Text, nullable=False),  # sealed (Fernet), as the refresh token
    Column("refresh_token", Text, nullable=True),
    Column("access_expires_at", DateTime, nullable=True),  # UTC; None: the EHR did not say
    Column("scope", Text, nullable=False),
    Column("patient", String(200), nullable=False),
    Column("encounter", String(200), nullable=True),
    Column("need_patient_banner", Boolean, nullable=False),
    Column("smart_style_url", String(1000), nullable=True),
    Column("fhir_context", JSON, nullable=True),
    Column("app_context", Text, nullable=True),
    Column("fhir_user", String(1000), nullable=True),
    Column("framed", Boolean, nullable=False),
    Column("expires_at", DateTime, nullable=False, index=True),  # UTC: the session itself
)


def new_secret() -> str:
    """A random value for a cookie, a state, a handle: 256 bits, URL-safe."""
    return secrets.token_urlsafe(32)


def browser_hash(cookie: str) -> str:
    return hashlib.sha256(cookie.encode("utf-8")).hexdigest()


def sign_out_token(cookie: str, handle: str) -> str:
    """The sign-out form's CSRF token: only a page shown to the browser holding the cookie (which
    is HttpOnly and never leaves it) can know it. Derived, so nothing more is stored."""
    return hmac.new(cookie.encode("utf-8"), f"sign-out {handle}".encode(), "sha256").hexdigest()


def utc_now() -> datetime:
    return datetime.now(UTC)


def _naive(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _aware(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class PendingLaunch:
    """A launch sent to the EHR's authorize endpoint, waiting for its callback."""

    state: str
    browser: str
    iss: str
    launch: str | None
    code_verifier: str | None = field(repr=False)
    nonce: str
    redirect_uri: str
    token_endpoint: str
    issuer: str | None
    jwks_uri: str | None
    framed: bool
    expires_at: datetime


@dataclass(frozen=True)
class SmartSession:
    """A signed-in launch: the tokens and the context the EHR gave with them."""

    handle: str
    browser: str
    iss: str
    token_endpoint: str
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    access_expires_at: datetime | None
    scope: str
    patient: str
    encounter: str | None
    need_patient_banner: bool
    smart_style_url: str | None
    fhir_context: list[Any] | None
    app_context: str | None
    fhir_user: str | None
    framed: bool
    expires_at: datetime

    def access_expired(self, now: datetime, leeway: timedelta = timedelta(seconds=30)) -> bool:
        return self.access_expires_at is not None and self.access_expires_at - leeway <= now


class TokenStore:
    """Launches and sessions in SQL tables, tokens sealed. Thread-safe; one per app. The
    tables are the schema's (runtime/migrations): this class never creates or alters one."""

    def __init__(self, engine: Engine, cipher: TokenCipher) -> None:
        self.engine = engine
        self.cipher = cipher

    # -- launches ------------------------------------------------------------------------------

    def save_launch(
        self,
        launch: PendingLaunch,
        *,
        per_browser: int | None = None,
        in_all: int | None = None,
    ) -> bool:
        """Keep a launch until its callback. A launch is written before anyone has signed in,
        so what anyone can make the app write is bounded: a browser keeps its `per_browser`
        newest launches (the oldest goes), and no launch is kept when `in_all` are pending
        already (False: the caller refuses it)."""
        per_browser = per_browser or MAX_LAUNCHES_PER_BROWSER
        in_all = in_all or MAX_PENDING_LAUNCHES
        row = {**launch.__dict__, "expires_at": _naive(launch.expires_at)}
        with self.engine.begin() as connection:
            pending = connection.execute(select(func.count()).select_from(launch_table)).scalar()
            if (pending or 0) >= in_all:
                return False
            mine = (
                connection.execute(
                    select(launch_table.c.state)
                    .where(launch_table.c.browser == launch.browser)
                    .order_by(launch_table.c.expires_at)
                )
                .scalars()
                .all()
            )
            oldest = mine[: max(0, len(mine) - per_browser + 1)]
            if oldest:
                connection.execute(delete(launch_table).where(launch_table.c.state.in_(oldest)))
            connection.execute(insert(launch_table), row)
        return True

    def take_launch(self, state: str, browser: str, now: datetime) -> PendingLaunch | None:
        """This browser's launch with this state, once: it is deleted as it is read. None if
        there is none, it is another browser's (left alone: its own callback still works), or
        it has expired."""
        with self.engine.begin() as connection:
            mine = and_(launch_table.c.state == state, launch_table.c.browser == browser)
            row = connection.execute(select(launch_table).where(mine)).first()
            if row is None:
                return None
            taken = connection.execute(delete(launch_table).where(mine))
            if taken.rowcount != 1:  # another request took it first
                return None
        values = dict(row._mapping)
        values["expires_at"] = _aware(values["expires_at"])
        launch = PendingLaunch(**values)
        return launch if launch.expires_at > now else None

    # -- sessions ------------------------------------------------------------------------------

    def save_session(self, session: SmartSession) -> None:
        row = {
            **session.__dict__,
            **self._sealed(session.handle, session.access_token, session.refresh_token),
            "access_expires_at": _naive(session.access_expires_at),
            "expires_at": _naive(session.expires_at),
        }
        with self.engine.begin() as connection:
            connection.execute(insert(session_table), row)

    def session(self, handle: str, browser: str, now: datetime) -> SmartSession | None:
        """The session behind a handle, if this browser signed it in and it has not ended."""
        with self.engine.connect() as connection:
            row = connection.execute(
                select(session_table).where(session_table.c.handle == handle)
            ).first()
        if row is None:
            return None
        values = dict(row._mapping)
        if not secrets.compare_digest(values["browser"], browser):
            return None
        return self._opened(values, now)

    def sessions_of(self, browser: str, now: datetime) -> list[SmartSession]:
        """Every session this browser signed in that has not ended (one per launch, tab)."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(session_table).where(session_table.c.browser == browser)
            ).all()
        opened = (self._opened(dict(row._mapping), now) for row in rows)
        return [session for session in opened if session is not None]

    def _opened(self, values: dict[str, Any], now: datetime) -> SmartSession | None:
        """A row as a session; None when it has ended or its tokens do not open."""
        values["access_expires_at"] = _aware(values["access_expires_at"])
        values["expires_at"] = _aware(values["expires_at"])
        if values["expires_at"] <= now:
            return None
        handle = values["handle"]
        access_token = self.cipher.open(values["access_token"], handle=handle)
        sealed_refresh = values["refresh_token"]
        refresh_token = self.cipher.open(sealed_refresh, handle=handle) if sealed_refresh else None
        if access_token is None or (sealed_refresh and refresh_token is None):
            log.warning("SMART session tokens do not open (another key, or altered): ended")
            return None
        return SmartSession(
            **{**values, "access_token": access_token, "refresh_token": refresh_token}
        )

    def _sealed(self, handle: str, access_token: str, refresh_token: str | None) -> dict[str, Any]:
        return {
            "access_token": self.cipher.seal(access_token, handle=handle),
            "refresh_token": (
                self.cipher.seal(refresh_token, handle=handle) if refresh_token else None
            ),
        }

    def update_tokens(
        self,
        session: SmartSession,
        *,
        access_token: str,
        refresh_token: str | None,
        access_expires_at: datetime | None,
    ) -> SmartSession | None:
        """The session with new tokens, stored only while its row still holds the refresh
        token `session` holds (compare-and-swap); None when another request, in this worker
        or another, replaced it first, or the session has ended."""
        with self.engine.begin() as connection:
            same_grant = self._still_holding(connection, session)
            if same_grant is None:
                return None
            updated = connection.execute(
                update(session_table)
                .where(same_grant)
                .values(
                    **self._sealed(session.handle, access_token, refresh_token),
                    access_expires_at=_naive(access_expires_at),
                )
            )
            if updated.rowcount != 1:
                return None
        return replace(
            session,
            access_token=access_token,
            refresh_token=refresh_token,
            access_expires_at=access_expires_at,
        )

    def rebind_browser(self, old: str, new: str) -> None:
        """Move every launch and session of a browser to its new cookie (issued at sign-in, so
        that a cookie planted before it opens nothing after)."""
        with self.engine.begin() as connection:
            for table in (launch_table, session_table):
                connection.execute(update(table).where(table.c.browser == old).values(browser=new))

    def end_session(self, handle: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(delete(session_table).where(session_table.c.handle == handle))

    def end_grant(self, session: SmartSession) -> bool:
        """End the session if its row still holds the refresh token `session` holds (the one
        the EHR refused); False when another request stored new tokens meanwhile."""
        with self.engine.begin() as connection:
            same_grant = self._still_holding(connection, session)
            if same_grant is None:
                return False
            return connection.execute(delete(session_table).where(same_grant)).rowcount == 1

    def _still_holding(
        self, connection: Connection, session: SmartSession
    ) -> ColumnElement[bool] | None:
        """A WHERE clause for the session's row as it is now, if that row holds the same
        refresh token as `session`; None if it holds another or is gone. Updating with it
        changes nothing when another transaction changed the row in between."""
        row = connection.execute(
            select(session_table.c.refresh_token).where(session_table.c.handle == session.handle)
        ).first()
        if row is None:
            return None
        sealed = row.refresh_token  # sealing is randomised: compare what the seal holds
        held = self.cipher.open(sealed, handle=session.handle) if sealed else None
        if held != session.refresh_token:
            return None
        return and_(
            session_table.c.handle == session.handle, session_table.c.refresh_token == sealed
        )

    def purge_expired(self, now: datetime) -> None:
        """Forget launches and sessions that have ended. Best effort."""
        moment = _naive(now)
        try:
            with self.engine.begin() as connection:
                connection.execute(delete(launch_table).where(launch_table.c.expires_at < moment))
                connection.execute(delete(session_table).where(session_table.c.expires_at < moment))
        except SQLAlchemyError as error:
            log.warning("SMART session purge failed: %s", type(error).__name__)
