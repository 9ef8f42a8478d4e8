"""The database schema Bulwark owns, as SQLAlchemy 2 typed declarative models.

Alembic (``migrations/``) creates and changes these tables; a test proves the migrations equal
the models. Enumerations (breaker states, outcomes, categories, decisions) are stored as short
strings, never as database enum types, so adding a value needs no migration. Every timestamp is
timezone-aware and stored in UTC (:class:`UtcDateTime`), also on SQLite, which keeps no zone.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

#: Constraint and index names, so that migrations can name what they create and drop.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: An auto-incrementing 64-bit id that is also a rowid alias on SQLite.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that always hands back aware UTC datetimes.

    Values are converted to UTC before they are stored (naive values are refused), and values
    read without a zone (SQLite) are marked UTC, so that comparisons and ordering agree on
    every database.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: Bulwark stores aware datetimes only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """The one declarative base; its ``metadata`` is Alembic's ``target_metadata``."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class BreakerRow(Base):
    """One breaker's shared state (a :class:`~backend.core.breaker_state.BreakerSnapshot`).
    ``version`` grows by one with every write; writers compare-and-set on it."""

    __tablename__ = "circuit_breakers"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    opened_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    retry_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    forced_open: Mapped[bool] = mapped_column(Boolean, default=False)
    probes_in_flight: Mapped[int] = mapped_column(Integer, default=0)
    probe_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_category: Mapped[str | None] = mapped_column(String(32))
    updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    version: Mapped[int] = mapped_column(Integer)


class BreakerEventRow(Base):
    """One transition of a breaker (a :class:`~backend.core.breaker_state.BreakerEvent`)."""

    __tablename__ = "breaker_events"
    __table_args__ = (Index(None, "key", "at"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(255))
    from_state: Mapped[str] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(255))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    category: Mapped[str | None] = mapped_column(String(32))
    message: Mapped[str | None] = mapped_column(Text)


class LLMCallRow(Base):
    """One logical gateway call: the route it took, its final target and outcome
    (``success`` | ``failure``). Its requests are :class:`LLMAttemptRow` rows; load them with
    ``selectinload(LLMCallRow.attempts)`` (lazy loading is refused under asyncio)."""

    __tablename__ = "llm_calls"
    __table_args__ = (
        Index(None, "target", "started_at"),
        Index(None, "outcome"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    context: Mapped[str] = mapped_column(String(100))
    agent: Mapped[str | None] = mapped_column(String(100))
    task_id: Mapped[str | None] = mapped_column(String(36), index=True)
    route: Mapped[str | None] = mapped_column(String(100))
    target: Mapped[str | None] = mapped_column(String(255))
    outcome: Mapped[str] = mapped_column(String(16))
    category: Mapped[str | None] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    finished_at: Mapped[datetime] = mapped_column(UtcDateTime)
    duration_ms: Mapped[float] = mapped_column(Float)
    input_tokens: Mapped[int | None] = mapped_column(Integer)
    output_tokens: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    replayed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    request_hash: Mapped[str | None] = mapped_column(String(64))
    """For calls made for a task: the request's fingerprint and the answer, so a re-run of
    the task can replay it (``backend.llm.replay``)."""
    response_text: Mapped[str | None] = mapped_column(Text)

    attempt_rows: Mapped[list[LLMAttemptRow]] = relationship(
        back_populates="call",
        order_by="LLMAttemptRow.attempt",
        cascade="all, delete-orphan",
        passive_deletes=True,
        lazy="raise",
    )


class LLMAttemptRow(Base):
    """One request sent to a provider, or refused by a breaker (``outcome`` ``refused``),
    and what the retry policy decided after it (``succeed`` | ``retry`` | ``give_up`` |
    ``fallback``). ``attempt`` counts from 1 within the call."""

    __tablename__ = "llm_attempts"
    __table_args__ = (UniqueConstraint("call_id", "attempt"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("llm_calls.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    target: Mapped[str] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    duration_ms: Mapped[float] = mapped_column(Float)
    outcome: Mapped[str] = mapped_column(String(16))
    category: Mapped[str | None] = mapped_column(String(32))
    http_status: Mapped[int | None] = mapped_column(Integer)
    request_id: Mapped[str | None] = mapped_column(String(255))
    retry_after_ms: Mapped[float | None] = mapped_column(Float)
    breaker_state: Mapped[str | None] = mapped_column(String(16))
    decision: Mapped[str] = mapped_column(String(16))
    wait_ms: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)

    call: Mapped[LLMCallRow] = relationship(back_populates="attempt_rows", lazy="raise")


class TaskRow(Base):
    """One task (a :class:`~backend.tasks.model.Task`). ``status`` changes only through
    guarded updates in :class:`~backend.db.task_store.SqlTaskStore`; ``lease_owner`` and
    ``lease_expires_at`` say which worker runs it and until when, unless it renews the lease.
    ``deadline_at`` is ``created_at + deadline_seconds``: the task never runs past it."""

    __tablename__ = "tasks"
    __table_args__ = (
        UniqueConstraint("owner", "idempotency_key"),
        Index(None, "status", "created_at"),
        Index(None, "owner", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(100))
    input: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    deadline_at: Mapped[datetime] = mapped_column(UtcDateTime)
    deadline_seconds: Mapped[float] = mapped_column(Float)
    max_attempts: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    input_hash: Mapped[str | None] = mapped_column(String(64))
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ApiKeyRow(Base):
    """One API key. Only the SHA-256 of the secret is stored (``key_hash``), with its first
    characters (``prefix``) so that people can tell keys apart."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


__all__ = [
    "NAMING_CONVENTION",
    "ApiKeyRow",
    "Base",
    "BreakerEventRow",
    "BreakerRow",
    "LLMAttemptRow",
    "LLMCallRow",
    "TaskRow",
    "UtcDateTime",
]
