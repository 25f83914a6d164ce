"""The schema as the product made it before migrations: the five tables of the CDS Hooks
service (cds_*) and the SMART app (smart_*).

A database that code made (tables, data, no alembic_version) is adopted as it is: a table
already there is left alone, one missing is created. So this revision is recorded over such a
database without touching a row, and the revisions after it upgrade it like any other.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _cds_feedback() -> None:
    op.create_table(
        "cds_feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("service_id", sa.String(200), nullable=False),
        sa.Column("card_uuid", sa.String(200), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("accepted_suggestions", sa.JSON, nullable=True),
        sa.Column("override_reason_system", sa.String(500), nullable=True),
        sa.Column("override_reason_code", sa.String(200), nullable=True),
        sa.Column("override_reason_display", sa.String(500), nullable=True),
        sa.Column("user_comment", sa.Text, nullable=True),
        sa.Column("outcome_timestamp", sa.DateTime, nullable=False),
        sa.Column("received_at", sa.DateTime, nullable=False),
        sa.Column("issuer", sa.String(500), nullable=True),
    )
    op.create_index("ix_cds_feedback_card_uuid", "cds_feedback", ["card_uuid"])


def _cds_issued_card() -> None:
    op.create_table(
        "cds_issued_card",
        sa.Column("card_uuid", sa.String(64), primary_key=True),
        sa.Column("service_id", sa.String(200), nullable=False),
        sa.Column("rule_id", sa.String(100), nullable=False),
        sa.Column("indicator", sa.String(20), nullable=False),
        sa.Column("hook_instance", sa.String(200), nullable=False),
        sa.Column("issued_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_cds_issued_card_rule_id", "cds_issued_card", ["rule_id"])


def _cds_jwt_replay() -> None:
    op.create_table(
        "cds_jwt_replay",
        sa.Column("issuer", sa.String(500), primary_key=True),
        sa.Column("jti", sa.String(500), primary_key=True),
        sa.Column("expires_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_cds_jwt_replay_expires_at", "cds_jwt_replay", ["expires_at"])


def _smart_launch() -> None:
    op.create_table(
        "smart_launch",
        sa.Column("state", sa.String(128), primary_key=True),
        sa.Column("browser", sa.String(64), nullable=False),
        sa.Column("iss", sa.String(1000), nullable=False),
        sa.Column("launch", sa.Text, nullable=True),
        sa.Column("code_verifier", sa.String(128), nullable=True),
        sa.Column("nonce", sa.String(128), nullable=False),
        sa.Column("redirect_uri", sa.String(1000), nullable=False),
        sa.Column("token_endpoint", sa.String(1000), nullable=False),
        sa.Column("issuer", sa.String(1000), nullable=True),
        sa.Column("jwks_uri", sa.String(1000), nullable=True),
        sa.Column("framed", sa.Boolean, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_smart_launch_expires_at", "smart_launch", ["expires_at"])


def _smart_session() -> None:
    op.create_table(
        "smart_session",
        sa.Column("handle", sa.String(64), primary_key=True),
        sa.Column("browser", sa.String(64), nullable=False),
        sa.Column("iss", sa.String(1000), nullable=False),
        sa.Column("token_endpoint", sa.String(1000), nullable=False),
        sa.Column("access_token", sa.Text, nullable=False),
        sa.Column("refresh_token", sa.Text, nullable=True),
        sa.Column("access_expires_at", sa.DateTime, nullable=True),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("patient", sa.String(200), nullable=False),
        sa.Column("encounter", sa.String(200), nullable=True),
        sa.Column("need_patient_banner", sa.Boolean, nullable=False),
        sa.Column("smart_style_url", sa.String(1000), nullable=True),
        sa.Column("fhir_context", sa.JSON, nullable=True),
        sa.Column("app_context", sa.Text, nullable=True),
        sa.Column("fhir_user", sa.String(1000), nullable=True),
        sa.Column("framed", sa.Boolean, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_smart_session_expires_at", "smart_session", ["expires_at"])


TABLES = {
    "cds_feedback": _cds_feedback,
    "cds_issued_card": _cds_issued_card,
    "cds_jwt_replay": _cds_jwt_replay,
    "smart_launch": _smart_launch,
    "smart_session": _smart_session,
}


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    existing = set(inspector.get_table_names())
    for name, create in TABLES.items():
        if name not in existing:
            create()
    # the first releases stored feedback without its issuer; the column is nullable
    if "cds_feedback" in existing:
        columns = {column["name"] for column in inspector.get_columns("cds_feedback")}
        if "issuer" not in columns:
            op.add_column("cds_feedback", sa.Column("issuer", sa.String(500), nullable=True))


def downgrade() -> None:
    for name in reversed(TABLES):
        op.drop_table(name)
