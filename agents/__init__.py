"""Bulwark agents: :class:`BaseAgent` for agent developers, the built-in ReviewerGPT and
Codesmith, and the registry that turns agents into task types."""

from __future__ import annotations

from agents.base import BaseAgent
from agents.codesmith import CodeInput, Codesmith
from agents.context import AgentCancelledError, AgentContext
from agents.registry import ENTRY_POINT_GROUP, AgentRegistry, UnknownTaskType
from agents.results import CodeResult, Finding, Review
from agents.reviewer import ReviewerGPT, ReviewInput

__all__ = [
    "ENTRY_POINT_GROUP",
    "AgentCancelledError",
    "AgentContext",
    "AgentRegistry",
    "BaseAgent",
    "CodeInput",
    "CodeResult",
    "Codesmith",
    "Finding",
    "Review",
    "ReviewInput",
    "ReviewerGPT",
    "UnknownTaskType",
]
