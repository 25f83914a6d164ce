"""Feedback keeps the caller's tenant; the replay cache keeps a digest of each JWT id; the
SMART tables are indexed by browser.

- cds_feedback.tenant: the JWT's `tenant` claim (CDS Hooks 2.0, "Trusting CDS Clients"), from
  the issuer's allowlist, so feedback can be read per organisation.
- cds_jwt_replay.jti holds the SHA-256 of the JWT id (64 hex digits) instead of the id: a
  `jti` has no length limit (RFC 7519, 4.1.7), and a long one failed on PostgreSQL's
  varchar(500) while SQLite stored it. The rows already there are converted in place.
- smart_launch.browser, smart_session.browser: a browser's launches are counted (a cap per
  browser) and its sessions listed at every launch and sign-out.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

replay = sa.table(
    "cds_jwt_replay",
    sa.column("issuer", sa.String),
    sa.column("jti", sa.String),
)


def jti_digest(jti: str) -> str:
    """What the replay cache keys on; runtime/store.py computes the same."""
    return hashlib.sha256(jti.encode("utf-8", "surrogatepass")).hexdigest()


def upgrade() -> None:
    op.add_column("cds_feedback", sa.Column("tenant", sa.String(200), nullable=True))
    op.create_index("ix_smart_launch_browser", "smart_launch", ["browser"])
    op.create_index("ix_smart_session_browser", "smart_session", ["browser"])
    connection = op.get_bind()
    rows = connection.execute(sa.select(replay.c.issuer, replay.c.jti)).all()
    for issuer, jti in rows:
        connection.execute(
            replay.update()
            .where(replay.c.issuer == issuer, replay.c.jti == jti)
            .values(jti=jti_digest(jti))
        )


def downgrade() -> None:
    # Digests cannot be turned back into ids: the rows go (each would expire within one
    # token's lifetime anyway).
    op.execute(replay.delete())
    op.drop_index("ix_smart_session_browser", "smart_session")
    op.drop_index("ix_smart_launch_browser", "smart_launch")
    op.drop_column("cds_feedback", "tenant")
