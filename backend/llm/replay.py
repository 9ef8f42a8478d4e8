"""Replay of a task's earlier LLM answers, so a task re-run after its worker died does not pay
twice. Answers a task received are kept with its history (``llm_calls.request_hash`` and
``response_text``); a re-run loads them into a :class:`ReplayBook`, and the gateway hands
them back in order for the same requests before it makes new calls."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel

from backend.llm.types import ChatMessage


def request_fingerprint(
    route: str,
    agent: str | None,
    messages: Sequence[ChatMessage],
    schema: type[BaseModel] | None,
    max_tokens: int | None,
    temperature: float | None,
) -> str:
    """A stable hash of what makes two requests "the same request"."""
    canonical = json.dumps(
        {
            "route": route,
            "agent": agent,
            "messages": [[m.role, m.content] for m in messages],
            "schema": schema.__name__ if schema is not None else None,
            "max_tokens": max_tokens,
            "temperature": temperature,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ReplayEntry:
    request_hash: str
    text: str
    target: str
    input_tokens: int | None = None
    output_tokens: int | None = None


class ReplayBook:
    """A task's recorded answers, in the order its earlier run received them. Each request
    takes the next entry if that entry answers the same request; the first mismatch ends the
    replay (the run has gone another way), and every later call goes to a provider."""

    def __init__(self, entries: Sequence[ReplayEntry] = ()) -> None:
        self._entries = list(entries)
        self._next = 0
        self._diverged = False
        self._lock = threading.Lock()
        self.replayed = 0

    def take(self, request_hash: str) -> ReplayEntry | None:
        with self._lock:
            if self._diverged or self._next >= len(self._entries):
                return None
            entry = self._entries[self._next]
            if entry.request_hash != request_hash:
                self._diverged = True
                return None
            self._next += 1
            self.replayed += 1
            return entry

    def __len__(self) -> int:
        return len(self._entries)


__all__ = ["ReplayBook", "ReplayEntry", "request_fingerprint"]
