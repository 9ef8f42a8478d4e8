"""The ``bulwark`` command line."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from backend.config import Settings
from backend.core.breaker_state import BreakerSnapshot
from backend.core.circuit_breaker import CircuitBreaker
from backend.db.breaker_store import SqlBreakerStore
from backend.db.migrate import upgrade


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bulwark", description="Bulwark: a resilient backend for LLM agents."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_commands.add_parser("upgrade", help="bring the schema to the latest revision")

    breakers = commands.add_parser("breakers", help="see and operate circuit breakers")
    actions = breakers.add_subparsers(dest="breaker_command", required=True, metavar="ACTION")
    actions.add_parser("list", help="every breaker with its state")
    for name, text in (
        ("reset", "close a breaker, counters zeroed"),
        ("open", "force a breaker open until it is reset"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("key", help="the target, e.g. openai:gpt-4o-mini")
        action.add_argument("--actor", default="cli", help="who did it, for the history")
    return parser


def _row(snapshot: BreakerSnapshot) -> str:
    since = snapshot.opened_at.isoformat(timespec="seconds") if snapshot.opened_at else "-"
    retry = snapshot.retry_at.isoformat(timespec="seconds") if snapshot.retry_at else "-"
    if snapshot.forced_open:
        retry = "until reset"
    return (
        f"{snapshot.key:<40} {snapshot.state.value:<10} {snapshot.consecutive_failures:>8} "
        f"{since:<25} {retry:<25} {snapshot.last_error or ''}"
    )


async def _breakers(settings: Settings, args: argparse.Namespace) -> int:
    store = SqlBreakerStore.from_url(settings.database_url, config=settings.breaker_config())
    try:
        if args.breaker_command == "list":
            print(
                f"{'KEY':<40} {'STATE':<10} {'FAILURES':>8} {'OPENED':<25} {'RETRY AT':<25} "
                "LAST ERROR"
            )
            for snapshot in await store.list():
                print(_row(snapshot))
            return 0
        breaker = CircuitBreaker(args.key, store=store, config=settings.breaker_config())
        if args.breaker_command == "reset":
            snapshot = await breaker.reset(actor=args.actor)
        else:
            snapshot = await breaker.force_open(actor=args.actor)
        print(f"{snapshot.key}: {snapshot.state.value}")
        return 0
    finally:
        await store.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"bulwark: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    if args.command == "db":
        upgrade(settings.database_url)
        print("database schema is up to date")
        return 0
    if args.command == "breakers":
        return asyncio.run(_breakers(settings, args))
    raise AssertionError(f"unhandled command {args.command}")  # argparse enforces the choices


__all__ = ["main"]
