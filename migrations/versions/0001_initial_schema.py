"""Breakers, breaker events, LLM calls and attempts.

Revision ID: 0001
Revises:
Create Date: 2026-01-01 00:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "circuit_breakers",
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("forced_open", sa.Boolean(), nullable=False),
        sa.Column("probes_in_flight", sa.Integer(), nullable=False),
        sa.Column("probe_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_category", sa.String(32), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_circuit_breakers"),
    )

    op.create_table(
        "breaker_events",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("from_state", sa.String(16), nullable=False),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("category", sa.String(32), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_breaker_events"),
    )
    op.create_index("ix_breaker_events_key_at", "breaker_events", ["key", "at"])

    op.create_table(
        "llm_calls",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("context", sa.String(100), nullable=False),
        sa.Column("agent", sa.String(100), nullable=True),
        sa.Column("task_id", sa.String(36), nullable=True),
        sa.Column("route", sa.String(100), nullable=True),
        sa.Column("target", sa.String(255), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("category", sa.String(32), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=True),
        sa.Column("output_tokens", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("replayed", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_llm_calls"),
    )
    op.create_index("ix_llm_calls_task_id", "llm_calls", ["task_id"])
    op.create_index("ix_llm_calls_started_at", "llm_calls", ["started_at"])
    op.create_index("ix_llm_calls_target_started_at", "llm_calls", ["target", "started_at"])
    op.create_index("ix_llm_calls_outcome", "llm_calls", ["outcome"])

    op.create_table(
        "llm_attempts",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("call_id", sa.String(36), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("category", sa.String(32), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("request_id", sa.String(255), nullable=True),
        sa.Column("retry_after_ms", sa.Float(), nullable=True),
        sa.Column("breaker_state", sa.String(16), nullable=True),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("wait_ms", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_llm_attempts"),
        sa.ForeignKeyConstraint(
            ["call_id"],
            ["llm_calls.id"],
            name="fk_llm_attempts_call_id_llm_calls",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("call_id", "attempt", name="uq_llm_attempts_call_id_attempt"),
    )


def downgrade() -> None:
    op.drop_table("llm_attempts")
    op.drop_index("ix_llm_calls_outcome", table_name="llm_calls")
    op.drop_index("ix_llm_calls_target_started_at", table_name="llm_calls")
    op.drop_index("ix_llm_calls_started_at", table_name="llm_calls")
    op.drop_index("ix_llm_calls_task_id", table_name="llm_calls")
    op.drop_table("llm_calls")
    op.drop_index("ix_breaker_events_key_at", table_name="breaker_events")
    op.drop_table("breaker_events")
    op.drop_table("circuit_breakers")
