"""Fault injection for the simulator provider: the ``BULWARK_SIM_FAULTS`` grammar, the parsed
plan, and the injector that decides, request by request, which fault (if any) to raise.

Grammar (whitespace around every token is ignored; empty rules and pairs are skipped)::

    faults := rule (";" rule)*
    rule   := pair ("," pair)*
    pair   := key "=" value

Keys of a rule (each at most once):

``status=N``
    The HTTP status the simulated provider answers with. One of 400, 401, 403, 404, 413, 422,
    429, 500, 502, 503, 504, 529. Default 503. Its category is the one a real provider's
    error gets: 429 ``rate_limit``; 500/502/503/504 ``server_error``; 529 ``overloaded``;
    401/403 ``auth_error``; 404 ``model_not_found``; 400/413/422 ``invalid_request``.
``error=CATEGORY``
    The category, instead of the status or refining it: ``rate_limit``, ``quota_exceeded``,
    ``overloaded``, ``server_error``, ``connection_error``, ``timeout``, ``auth_error``,
    ``invalid_request``, ``context_length``, ``content_filter``, ``model_not_found``. Without
    ``status=`` its usual status is implied (429 for ``rate_limit`` and ``quota_exceeded``,
    529, 503, 401, 400 for ``invalid_request``/``context_length``/``content_filter``, 404;
    none for ``connection_error`` and ``timeout``), e.g. ``error=quota_exceeded`` is a
    non-transient 429. Next to ``status=`` it must be that status's own category or one a
    provider's error body refines it into (``quota_exceeded`` for 400/403/413/422/429;
    ``context_length`` and ``content_filter`` for 400/413/422).
``retry_after=S``
    Seconds (a number >= 0) sent as the ``Retry-After`` hint; becomes
    ``Classification.retry_after_seconds``.
``rate=P``
    Probability in [0, 1] that a request the rule applies to fails. Default 1 (every one).
    Draws come from ``random.Random`` seeded with the provider's ``seed`` and the rule's
    position, so a run is repeatable.
``first=N``
    The rule applies only to the first N requests it sees (N >= 1), then the target is
    healthy.
``hang=1``
    Requests hang instead of failing: until the caller cancels them (``asyncio.wait_for``,
    the per-attempt timeout), or, when the request carries ``timeout``, until that many
    seconds pass, then fail with category ``timeout`` as an HTTP client would. ``hang=0``
    switches it off. Cannot be combined with ``status``, ``error`` or ``retry_after``.
``model=NAME``
    Only requests for this model (``reviewer``, or written as a target, ``sim:reviewer``).

Every rule sees every request (its counter and random draws advance independently of the
other rules); when several rules fire for one request, the first written wins.

Examples: ``rate=0.3,status=503`` (30 % of requests fail with 503); ``status=429,retry_after=2``
(every request is rate limited, retry after 2 s); ``first=3,status=500`` (three failures, then
healthy); ``model=reviewer,hang=1; rate=0.1,status=529``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from backend.core.errors import TRANSIENT_CATEGORIES, Classification, ErrorCategory

_C = ErrorCategory

#: The category a real provider's HTTP status maps to (see the design's error table).
STATUS_CATEGORIES: dict[int, ErrorCategory] = {
    400: _C.INVALID_REQUEST,
    401: _C.AUTH_ERROR,
    403: _C.AUTH_ERROR,
    404: _C.MODEL_NOT_FOUND,
    413: _C.INVALID_REQUEST,
    422: _C.INVALID_REQUEST,
    429: _C.RATE_LIMIT,
    500: _C.SERVER_ERROR,
    502: _C.SERVER_ERROR,
    503: _C.SERVER_ERROR,
    504: _C.SERVER_ERROR,
    529: _C.OVERLOADED,
}

#: The status implied by ``error=`` when ``status=`` is absent (``None``: no HTTP answer).
CATEGORY_STATUSES: dict[ErrorCategory, int | None] = {
    _C.RATE_LIMIT: 429,
    _C.QUOTA_EXCEEDED: 429,
    _C.OVERLOADED: 529,
    _C.SERVER_ERROR: 503,
    _C.CONNECTION_ERROR: None,
    _C.TIMEOUT: None,
    _C.AUTH_ERROR: 401,
    _C.INVALID_REQUEST: 400,
    _C.CONTEXT_LENGTH: 400,
    _C.CONTENT_FILTER: 400,
    _C.MODEL_NOT_FOUND: 404,
}

#: How a real provider words the failures its status alone does not tell apart, so that
#: ``classify`` of the cause agrees with the simulated classification.
_PHRASES: dict[ErrorCategory, str] = {
    _C.QUOTA_EXCEEDED: "you exceeded your current quota",
    _C.CONTEXT_LENGTH: "maximum context length exceeded",
    _C.CONTENT_FILTER: "rejected under the content policy",
    _C.CONNECTION_ERROR: "connection refused",
    _C.TIMEOUT: "request timed out",
}

#: Categories a status's error body may refine it into (``error=`` next to ``status=``).
_REFINES: dict[int, tuple[ErrorCategory, ...]] = {
    429: (_C.QUOTA_EXCEEDED,),
    403: (_C.QUOTA_EXCEEDED,),
    **dict.fromkeys((400, 413, 422), (_C.QUOTA_EXCEEDED, _C.CONTEXT_LENGTH, _C.CONTENT_FILTER)),
}

_KEYS = ("status", "error", "retry_after", "rate", "first", "hang", "model")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class SimulatedFaultError(Exception):
    """The exception a simulated fault stands for, kept as the ``ProviderError``'s cause: it
    carries ``status_code`` and response ``headers`` as an SDK's status error would."""

    def __init__(self, message: str, *, status_code: int | None, headers: dict[str, str]):
        super().__init__(message)
        self.status_code = status_code
        self.headers = headers


@dataclass(frozen=True, slots=True)
class FaultRule:
    """One rule of a plan: which requests it applies to, how often, and what they get."""

    category: ErrorCategory = _C.SERVER_ERROR
    status: int | None = 503
    retry_after: float | None = None
    rate: float = 1.0
    first: int | None = None
    hang: bool = False
    model: str | None = None

    def applies_to(self, provider: str, model: str) -> bool:
        return self.model is None or self.model in (model, f"{provider}:{model}")

    def classification(self, provider: str, model: str) -> Classification:
        """What a real provider's error for this status/category classifies as."""
        what = f"HTTP {self.status} " if self.status is not None else ""
        what += _PHRASES.get(self.category, "error")
        return Classification(
            category=self.category,
            transient=self.category in TRANSIENT_CATEGORIES,
            retry_after_seconds=self.retry_after,
            status_code=self.status,
            message=f"simulated {what} from {provider}:{model} (BULWARK_SIM_FAULTS)",
        )

    def error(self, provider: str, model: str) -> SimulatedFaultError:
        headers = {} if self.retry_after is None else {"retry-after": str(self.retry_after)}
        message = self.classification(provider, model).message
        return SimulatedFaultError(message, status_code=self.status, headers=headers)


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """The parsed ``BULWARK_SIM_FAULTS``: rules in written order (empty: no faults)."""

    rules: tuple[FaultRule, ...] = ()

    @classmethod
    def parse(cls, text: str) -> FaultPlan:
        """Parse the grammar in this module's docstring; ``ValueError`` names the bad part."""
        rules = [
            _parse_rule(part.strip(), index)
            for index, part in enumerate((p for p in text.split(";") if p.strip()), start=1)
        ]
        return cls(tuple(rules))

    def __bool__(self) -> bool:
        return bool(self.rules)


class FaultInjector:
    """Applies a plan to the requests of one provider, in arrival order: counts each rule's
    requests (for ``first=``) and draws its random numbers (for ``rate=``) from
    ``random.Random`` seeded with ``seed`` and the rule's position, so runs repeat."""

    def __init__(self, plan: FaultPlan, *, provider: str = "sim", seed: int = 0) -> None:
        self.plan = plan
        self._provider = provider
        self._seen = [0] * len(plan.rules)
        self._rngs = [random.Random(seed * 1009 + i) for i in range(len(plan.rules))]

    def next_fault(self, model: str) -> FaultRule | None:
        """The fault the next request for ``model`` gets, or ``None`` when it goes through."""
        chosen: FaultRule | None = None
        for i, rule in enumerate(self.plan.rules):
            if not rule.applies_to(self._provider, model):
                continue
            self._seen[i] += 1
            if rule.first is not None and self._seen[i] > rule.first:
                continue
            fires = self._rngs[i].random() < rule.rate
            if fires and chosen is None:
                chosen = rule
        return chosen


def _parse_rule(text: str, index: int) -> FaultRule:
    values: dict[str, str] = {}
    for pair in (p.strip() for p in text.split(",")):
        if not pair:
            continue
        key, sep, value = (s.strip() for s in pair.partition("="))
        if not sep or not key or not value:
            raise _bad(index, text, f"{pair!r} is not of the form key=value")
        if key not in _KEYS:
            raise _bad(index, text, f"unknown key {key!r} (known: {', '.join(_KEYS)})")
        if key in values:
            raise _bad(index, text, f"key {key!r} given twice")
        values[key] = value
    hang = _flag(values.get("hang", "0"), index, text)
    if hang and values.keys() & {"status", "error", "retry_after"}:
        raise _bad(index, text, "hang=1 cannot be combined with status, error or retry_after")
    status = _status(values["status"], index, text) if "status" in values else None
    category = _category(values["error"], index, text) if "error" in values else None
    if category is None:
        status = 503 if status is None else status
        category = STATUS_CATEGORIES[status]
    elif status is None:
        status = CATEGORY_STATUSES[category]
    elif category not in (STATUS_CATEGORIES[status], *_REFINES.get(status, ())):
        why = f"error={category.value} does not go with status={status} (a real HTTP {status} "
        raise _bad(index, text, why + f"is {STATUS_CATEGORIES[status].value})")
    if hang:
        category, status = _C.TIMEOUT, None
    first = _number(values, "first", index, text, integer=True)
    if first is not None and first < 1:
        raise _bad(index, text, f"first must be a whole number of at least 1, got {first:g}")
    rate = _number(values, "rate", index, text)
    if rate is not None and not 0 <= rate <= 1:
        raise _bad(index, text, f"rate must be a number between 0 and 1, got {rate:g}")
    retry_after = _number(values, "retry_after", index, text)
    if retry_after is not None and retry_after < 0:
        raise _bad(index, text, f"retry_after must be 0 or more seconds, got {retry_after:g}")
    return FaultRule(
        category=category,
        status=status,
        retry_after=retry_after,
        rate=1.0 if rate is None else rate,
        first=None if first is None else int(first),
        hang=hang,
        model=values.get("model"),
    )


def _bad(index: int, rule: str, why: str) -> ValueError:
    return ValueError(f"BULWARK_SIM_FAULTS rule {index} ({rule!r}): {why}")


def _flag(value: str, index: int, rule: str) -> bool:
    if value.lower() in _TRUE + _FALSE:
        return value.lower() in _TRUE
    raise _bad(index, rule, f"hang must be 1 or 0, got {value!r}")


def _status(value: str, index: int, rule: str) -> int:
    if value.isdigit() and int(value) in STATUS_CATEGORIES:
        return int(value)
    known = ", ".join(str(s) for s in STATUS_CATEGORIES)
    raise _bad(index, rule, f"status must be one of {known}, got {value!r}")


def _category(value: str, index: int, rule: str) -> ErrorCategory:
    try:
        category = ErrorCategory(value.lower())
    except ValueError:
        category = None
    if category is None or category not in CATEGORY_STATUSES:
        known = ", ".join(c.value for c in CATEGORY_STATUSES)
        raise _bad(index, rule, f"error must be one of {known}, got {value!r}")
    return category


def _number(
    values: dict[str, str], key: str, index: int, rule: str, *, integer: bool = False
) -> float | None:
    if key not in values:
        return None
    text = values[key]
    try:
        number = float(int(text)) if integer else float(text)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise _bad(index, rule, f"{key} must be {kind}, got {text!r}") from None
    if not math.isfinite(number):
        raise _bad(index, rule, f"{key} must be finite, got {text!r}")
    return number


__all__ = [
    "CATEGORY_STATUSES",
    "STATUS_CATEGORIES",
    "FaultInjector",
    "FaultPlan",
    "FaultRule",
    "SimulatedFaultError",
]
