"""Routes: named, ordered lists of targets, and the rule for moving on to the next target."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from backend.core.errors import (
    AllTargetsFailedError,
    AllTargetsUnavailableError,
    BulwarkError,
    ErrorCategory,
    PermanentError,
    TargetFailure,
    TransientError,
)
from backend.llm.types import Target

#: Permanent failures of one target that another target may not share: a different provider
#: has its own keys and quota, a different model its own name and context window.
FALLBACK_CATEGORIES: frozenset[ErrorCategory] = frozenset(
    {
        ErrorCategory.CIRCUIT_OPEN,
        ErrorCategory.AUTH_ERROR,
        ErrorCategory.QUOTA_EXCEEDED,
        ErrorCategory.MODEL_NOT_FOUND,
        ErrorCategory.CONTEXT_LENGTH,
    }
)


def moves_on(error: BulwarkError) -> bool:
    """Whether a target's final error lets the gateway try the route's next target."""
    return isinstance(error, TransientError) or error.category in FALLBACK_CATEGORIES


class RouteWalk:
    """The failures met while walking one route, and the error to raise when none is left."""

    def __init__(self, route: str) -> None:
        self.route = route
        self.failures: list[TargetFailure] = []
        self._retry_later = False
        self._last: BulwarkError | None = None

    def deadline_passed(self, target: Target) -> None:
        self.failures.append(
            TargetFailure(str(target), ErrorCategory.TIMEOUT, "not tried: the deadline passed")
        )
        self._retry_later = True

    def failed(self, target: Target, error: BulwarkError) -> bool:
        """Note ``target``'s failure; ``True`` when the next target may be tried."""
        self._last = error
        self.failures.append(TargetFailure(str(target), error.category, error.message))
        self._retry_later = (
            self._retry_later
            or isinstance(error, TransientError)
            or (error.category is ErrorCategory.CIRCUIT_OPEN)
        )
        return moves_on(error)

    def exhausted(self, attempts: int) -> BulwarkError:
        """The error for a route none of whose targets answered."""
        kind = AllTargetsUnavailableError if self._retry_later else AllTargetsFailedError
        return kind(self.route, self.failures, attempts=attempts, cause=self._last)


class RouteTable:
    """The configured routes. A name with no route of its own uses the ``default`` route."""

    def __init__(self, routes: Mapping[str, Sequence[str]]) -> None:
        self._routes = {
            name: [Target.parse(t) for t in targets] for name, targets in routes.items()
        }

    def targets(self, name: str) -> list[Target]:
        targets = self._routes.get(name) or self._routes.get("default")
        if targets is None:
            known = ", ".join(sorted(self._routes)) or "none"
            raise PermanentError(
                f"No route named {name!r} and no 'default' route; configured routes: {known}. "
                "Add it to BULWARK_ROUTES.",
                category=ErrorCategory.INVALID_REQUEST,
            )
        return targets

    def names(self) -> list[str]:
        return sorted(self._routes)

    def providers(self) -> set[str]:
        return {target.provider for targets in self._routes.values() for target in targets}


__all__ = ["FALLBACK_CATEGORIES", "RouteTable", "RouteWalk", "moves_on"]
