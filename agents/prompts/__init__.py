"""Prompt templates and the model-facing answer schemas of the built-in agents."""

from __future__ import annotations

from agents.prompts.review import DraftFinding, ReviewDraft, review_messages

__all__ = ["DraftFinding", "ReviewDraft", "review_messages"]
