"""Secret redaction: :func:`redact` removes credentials from any text before Bulwark logs,
stores or returns it.

Two mechanisms, applied in this order:

1. **Registered secrets** — exact values (the configured provider keys, the admin token)
   registered once at start-up with :func:`register_secret`, so they are removed even when
   they have no recognisable shape.
2. **Shapes** — provider keys (``sk-...``, ``sk-proj-...``, ``sk-ant-...``), Bulwark keys
   (``bwk_...``), ``Authorization``/``x-api-key`` header values, bearer tokens, secret query
   parameters and JSON/dict fields (``api_key=...``, ``"token": "..."``) and the password in
   ``scheme://user:password@host`` URLs.

Every secret becomes :data:`REDACTED`; the surrounding text (header and field names, the URL's
user and host) is kept so the message stays useful. Redaction is idempotent.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

__all__ = ["MIN_SECRET_LENGTH", "REDACTED", "clear_registered_secrets", "redact", "register_secret"]

REDACTED = "[REDACTED]"

#: Registered values shorter than this are ignored: they would blank out ordinary words.
MIN_SECRET_LENGTH = 8

# Field names whose value is a secret, in JSON/dict entries and assignments (``name=value``).
_SECRET_NAMES = (
    r"api[_-]?key|apikey|secret|client[_-]?secret|password|passwd"
    r"|(?:access|refresh|id|auth)[_-]?token|token"
)


def _header_value(match: re.Match[str]) -> str:
    name, separator, scheme = match.group(1, 2, 3)
    return f"{name}{separator}{scheme} {REDACTED}" if scheme else f"{name}{separator}{REDACTED}"


# (pattern, replacement); each replacement keeps the non-secret context around the value.
_PATTERNS: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    # Provider keys: OpenAI sk-..., sk-proj-..., sk-svcacct-...; Anthropic sk-ant-api03-...
    # ('*' included: providers echo keys masked as sk-proj-****abcd).
    (re.compile(r"(?<![A-Za-z0-9_-])sk-[A-Za-z0-9_*-]{16,}"), REDACTED),
    # Bulwark's own API keys: bwk_ followed by url-safe base64.
    (re.compile(r"(?<![A-Za-z0-9_-])bwk_[A-Za-z0-9_-]{16,}"), REDACTED),
    # URL credentials: scheme://user:password@host keeps the user and the host. (The scheme's
    # length is bounded: "a.b.c.d..." would otherwise be scanned once per dot.)
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]{0,31}://[^\s/:@]*:)[^\s/]+@"), rf"\1{REDACTED}@"),
    # Header lines and dict/JSON entries: Authorization: Bearer x, 'x-api-key': 'x', ...
    (
        re.compile(
            r"(?i)\b((?:proxy-)?authorization|x-api-key|api-key|x-goog-api-key)"
            r"(['\"]?\s*[:=]\s*['\"]?)(?:(bearer|basic|token)\s+)?[^\s'\",;&}]+"
        ),
        _header_value,
    ),
    # A bearer token anywhere else (long enough not to be an ordinary word).
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/-]{16,}=*"), rf"\1 {REDACTED}"),
    # JSON / Python dict fields: "api_key": "value", 'openai_token': 'value'.
    (
        re.compile(
            rf"(?i)(['\"])((?:[a-z0-9]+[_-])*(?:{_SECRET_NAMES}))\1(\s*:\s*)(['\"])"
            r"(?:\\.|(?!\4)[^\\])*\4"
        ),
        rf"\1\2\1\3\4{REDACTED}\4",
    ),
    # Assignments and query parameters: OPENAI_API_KEY=v, ?api_key=v, &token=v; and a bare
    # key=v only as a query parameter (elsewhere "key=" names breakers and the like).
    (
        re.compile(rf"(?i)((?<![A-Za-z0-9])(?:{_SECRET_NAMES})=|[?&]key=)[^\s&'\"#,;)}}]+"),
        rf"\1{REDACTED}",
    ),
)

_lock = threading.Lock()
_registered: frozenset[str] = frozenset()
_registered_pattern: re.Pattern[str] | None = None


def register_secret(value: str) -> None:
    """Always remove ``value`` (an exact string) from redacted text; for configured keys.

    Values shorter than :data:`MIN_SECRET_LENGTH` characters are ignored (an empty or toy
    setting must not blank out ordinary words). Safe to call from any thread.
    """
    global _registered, _registered_pattern
    value = value.strip()
    if len(value) < MIN_SECRET_LENGTH:
        return
    with _lock:
        if value in _registered:
            return
        _registered = _registered | {value}
        # Longest first, so a secret that contains another is removed whole.
        ordered = sorted(_registered, key=len, reverse=True)
        _registered_pattern = re.compile("|".join(re.escape(v) for v in ordered))


def clear_registered_secrets() -> None:
    """Forget every registered secret (for tests)."""
    global _registered, _registered_pattern
    with _lock:
        _registered = frozenset()
        _registered_pattern = None


def redact(text: str) -> str:
    """``text`` with every registered secret and every recognisable credential replaced by
    :data:`REDACTED`. Text without secrets is returned unchanged."""
    if not text:
        return text
    registered = _registered_pattern  # one read: a concurrent register swaps it atomically
    if registered is not None:
        text = registered.sub(REDACTED, text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
