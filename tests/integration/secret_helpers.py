"""Helpers for the no-secrets test: capture every HTTP answer, restore the global logging set-up
that ``configure_logging`` changes, dump every database table and look for secrets in text."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import MetaData, select
from sqlalchemy.engine import Connection

from backend.db.engine import create_engine

_NOISY = ("httpx", "httpcore")
_UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access")


@dataclass
class Exchange:
    """One request and the answer it got, as text."""

    label: str
    status: int
    headers: str
    body: str


@dataclass
class Recorder:
    """An httpx response hook that keeps every answer's headers and body."""

    exchanges: list[Exchange] = field(default_factory=list)

    async def __call__(self, response: httpx.Response) -> None:
        await response.aread()
        request = response.request
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.multi_items())
        label = f"{request.method} {request.url.path}"
        self.exchanges.append(Exchange(label, response.status_code, headers, response.text))


@contextmanager
def restored_logging() -> Iterator[None]:
    """Undo what ``configure_logging`` changes globally (factory, root handlers and level,
    uvicorn propagation, httpx levels) when the block ends."""
    root = logging.getLogger()
    factory = logging.getLogRecordFactory()
    handlers, level = list(root.handlers), root.level
    named = {name: logging.getLogger(name) for name in (*_NOISY, *_UVICORN)}
    saved = {name: (lg.level, list(lg.handlers), lg.propagate) for name, lg in named.items()}
    try:
        yield
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(level)
        logging.setLogRecordFactory(factory)
        for name, (lvl, hs, propagate) in saved.items():
            lg = named[name]
            lg.setLevel(lvl)
            lg.handlers[:] = hs
            lg.propagate = propagate


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _dump(conn: Connection) -> dict[str, list[str]]:
    metadata = MetaData()
    metadata.reflect(conn)  # every table in the database, not only the models'
    return {
        name: [" | ".join(_text(v) for v in row) for row in conn.execute(select(table))]
        for name, table in metadata.tables.items()
    }


async def dump_database(database_url: str) -> dict[str, list[str]]:
    """Every row of every table, each row as one line of text."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_dump)
    finally:
        await engine.dispose()


def leaks(secrets: Mapping[str, str], texts: Iterable[tuple[str, str]]) -> list[str]:
    """``"<secret name> in <where>: ...context..."`` for every secret found in ``texts``
    (pairs of where and text)."""
    found = []
    for where, text in texts:
        for name, secret in secrets.items():
            at = text.find(secret)
            if at >= 0:
                context = text[max(0, at - 120) : at + len(secret) + 40]
                found.append(f"{name} in {where}: ...{context}...")
    return found


__all__ = ["Exchange", "Recorder", "dump_database", "leaks", "restored_logging"]
