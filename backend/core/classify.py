"""Placeholder, replaced by the full classifier."""
from __future__ import annotations

from backend.core.errors import Classification, ErrorCategory


def classify(exc: BaseException) -> Classification:
    return Classification(ErrorCategory.UNKNOWN, False)
