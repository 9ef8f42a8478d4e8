"""Persistence: the schema (:mod:`.models`), engines and sessions (:mod:`.engine`), migrations
(:mod:`.migrate`) and the SQL stores (:mod:`.breaker_store`)."""

from backend.db.breaker_store import SqlBreakerStore
from backend.db.engine import create_engine, create_sessionmaker
from backend.db.migrate import downgrade, downgrade_async, upgrade, upgrade_async
from backend.db.models import Base, BreakerEventRow, BreakerRow, LLMAttemptRow, LLMCallRow

__all__ = [
    "Base",
    "BreakerEventRow",
    "BreakerRow",
    "LLMAttemptRow",
    "LLMCallRow",
    "SqlBreakerStore",
    "create_engine",
    "create_sessionmaker",
    "downgrade",
    "downgrade_async",
    "upgrade",
    "upgrade_async",
]
