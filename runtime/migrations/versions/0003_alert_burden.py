"""Alert burden: the cards shown, per rule, for suppression by feedback and the override report.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-01

Mirrors `card_evidence_table` in runtime/acknowledgements.py (docs/cds-hooks.md, "Alert
burden"). No PHI: the patient is an HMAC-SHA256 of the id, the evidence a SHA-256 of the
evidence resources' content.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cds_card_evidence",
        sa.Column("card_uuid", sa.String(64), primary_key=True),
        sa.Column("rule_id", sa.String(100), primary_key=True),
        sa.Column("service_id", sa.String(200), nullable=False),
        sa.Column("indicator", sa.String(20), nullable=False),
        sa.Column("patient_key", sa.String(64), nullable=False),
        sa.Column("evidence", sa.String(64), nullable=False),
        sa.Column("suggestions", sa.JSON(), nullable=True),
        sa.Column("shown", sa.Boolean(), nullable=False),
        sa.Column("issuer", sa.String(500), nullable=True),
        sa.Column("tenant", sa.String(200), nullable=True),
        sa.Column("issued_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_cds_card_evidence_patient_key", "cds_card_evidence", ["patient_key"])
    op.create_index("ix_cds_card_evidence_issued_at", "cds_card_evidence", ["issued_at"])


def downgrade() -> None:
    op.drop_index("ix_cds_card_evidence_issued_at", table_name="cds_card_evidence")
    op.drop_index("ix_cds_card_evidence_patient_key", table_name="cds_card_evidence")
    op.drop_table("cds_card_evidence")
