"""The resilience core: error classification, retries, circuit breakers. No HTTP, no agents,
no database: stores are plugged in through protocols."""

from __future__ import annotations

__all__: list[str] = []
