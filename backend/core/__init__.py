"""The resilience core: error classification, retries, circuit breakers. No HTTP, no agents,
no database: stores are plugged in through protocols."""

from __future__ import annotations

# errors must be imported before classify (errors re-exports classify, classify needs errors'
# types); importing it here makes every import order work.
from backend.core import errors as errors

__all__: list[str] = []
