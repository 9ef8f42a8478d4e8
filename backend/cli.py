"""The ``bulwark`` command line: ``serve``, ``worker``, ``db upgrade``, ``keys create``,
``breakers list|reset|open``, ``review FILE`` and ``code "INSTRUCTIONS"``.

Exit codes: 0 done; 1 the task failed or was cancelled; 2 bad usage or configuration; 3 the
server or the database could not be reached, or refused the request; 4 still not finished
when the wait ran out (the task id is printed so it can be followed)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from backend.config import Settings
from backend.core.breaker_state import BreakerSnapshot
from backend.core.circuit_breaker import CircuitBreaker
from backend.db.breaker_store import UNAVAILABLE, SqlBreakerStore
from backend.db.migrate import upgrade
from backend.logging_setup import configure_logging
from backend.metrics import install_exit_hook
from backend.services.errors import ServiceError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bulwark", description="Bulwark: a resilient backend for LLM agents."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the REST API (and workers, unless told not)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--no-workers", action="store_true", help="do not run tasks in-process")
    commands.add_parser("worker", help="run a worker until SIGTERM/SIGINT")

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_commands.add_parser("upgrade", help="bring the schema to the latest revision")

    keys = commands.add_parser("keys", help="API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = key_commands.add_parser("create", help="create a key; it is printed last, once")
    create.add_argument("--name", required=True, help="who the key is for (shown as actor)")
    create.add_argument("--admin", action="store_true", help="the key may use admin routes")

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

    review = commands.add_parser("review", help="review a file ('-' reads standard input)")
    review.add_argument("file")
    review.add_argument("--language", help="detected from the file when omitted")
    code = commands.add_parser("code", help="have code written for instructions")
    code.add_argument("instructions")
    code.add_argument("--language", help="default: python")
    for task in (review, code):
        task.add_argument("--server", help="URL of a running service (default: run it here)")
        task.add_argument(
            "--key",
            help="API key for --server (or BULWARK_API_KEY; default: the local admin key file)",
        )
        task.add_argument(
            "--wait",
            type=float,
            default=600.0,
            metavar="SECONDS",
            help="how long to wait for the result (default 600)",
        )
        task.add_argument(
            "--no-wait",
            action="store_true",
            help="with --server: submit, print the task id, do not wait",
        )
        task.add_argument("--json", action="store_true", help="print the task as JSON")
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
            snapshots = await store.list()
            if store.offline:
                print(
                    "bulwark: the database is unreachable or not migrated (run `bulwark db "
                    "upgrade`)",
                    file=sys.stderr,
                )
                return 3
            print(
                f"{'KEY':<40} {'STATE':<10} {'FAILURES':>8} {'OPENED':<25} {'RETRY AT':<25} "
                "LAST ERROR"
            )
            for snapshot in snapshots:
                print(_row(snapshot))
            return 0
        breaker = CircuitBreaker(args.key, store=store, config=settings.breaker_config())
        if args.breaker_command == "reset":
            snapshot = await breaker.reset(actor=args.actor)
        else:
            snapshot = await breaker.force_open(actor=args.actor)
        if store.offline:
            print(
                "bulwark: the database is unreachable or not migrated (run `bulwark db "
                "upgrade`); nothing was changed",
                file=sys.stderr,
            )
            return 3
        print(f"{snapshot.key}: {snapshot.state.value}")
        return 0
    finally:
        await store.aclose()


def _task_input(args: argparse.Namespace) -> tuple[str, dict[str, Any], str]:
    """The task type, its input and a title, from the command's arguments."""
    if args.command == "code":
        values = {"instructions": args.instructions}
        if args.language:
            values["language"] = args.language
        return "code", values, "the instructions"
    path = Path(args.file)
    text = sys.stdin.read() if args.file == "-" else path.read_text(errors="replace")
    values = {"code": text}
    if args.file != "-":
        values["filename"] = path.name
    if args.language:
        values["language"] = args.language
    return "review", values, "standard input" if args.file == "-" else args.file


def _print_task(task: Mapping[str, Any], args: argparse.Namespace, title: str) -> int:
    from backend.services.render import FINISHED, render_task

    if args.json:
        print(json.dumps(task, indent=2, sort_keys=True))
    else:
        print(render_task(task, title=title))
    status = task.get("status")
    if status not in FINISHED:
        print(f"bulwark: task {task.get('id')} is still {status}", file=sys.stderr)
        return 4
    return 0 if status == "succeeded" else 1


def _remote(settings: Settings, args: argparse.Namespace) -> int:
    from backend.api.client import ApiError, BulwarkClient
    from backend.services.keys import read_secret_file
    from backend.services.render import Progress

    key = args.key or os.environ.get("BULWARK_API_KEY")
    key = key or read_secret_file(Path(settings.admin_key_file))
    if not key:
        print(
            "bulwark: no API key: pass --key, set BULWARK_API_KEY, or run 'bulwark serve' "
            f"here once (it writes {settings.admin_key_file})",
            file=sys.stderr,
        )
        return 2
    task_type, values, title = _task_input(args)
    try:
        with BulwarkClient(args.server, key) as client:
            task = client.submit(task_type, values)
            if args.no_wait:
                print(task["id"])
                return 0
            task = client.wait(task["id"], timeout=args.wait, progress=Progress())
    except ApiError as exc:
        print(f"bulwark: the server refused: {exc}", file=sys.stderr)
        return 3
    return _print_task(task, args, title)


def _local(settings: Settings, args: argparse.Namespace) -> int:
    task_type, values, title = _task_input(args)  # before the heavy imports below

    from backend.api.schemas import TaskOut
    from backend.services.errors import ServiceError
    from backend.services.local import run_locally
    from backend.services.render import Progress
    from backend.tasks.model import Task

    progress = Progress()

    def report(task: Task, elapsed: float) -> None:
        progress({"id": task.id, "status": task.status.value}, elapsed)

    try:
        task = asyncio.run(
            run_locally(settings, task_type, values, max_wait=args.wait, progress=report)
        )
    except ServiceError as exc:
        print(f"bulwark: {exc.code}: {exc.message}", file=sys.stderr)
        return 2
    except UNAVAILABLE as exc:
        print(f"bulwark: the database is not reachable: {exc}", file=sys.stderr)
        return 3
    return _print_task(TaskOut.model_validate(task).model_dump(mode="json"), args, title)


def _task_command(settings: Settings, args: argparse.Namespace) -> int:
    import httpx

    try:
        return _remote(settings, args) if args.server else _local(settings, args)
    except httpx.TransportError as exc:
        print(f"bulwark: cannot reach {args.server}: {exc}", file=sys.stderr)
        return 3
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        print(f"bulwark: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"bulwark: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    if args.command in ("serve", "worker"):
        configure_logging(settings, expected_errors=(ServiceError,))
        install_exit_hook()
    if args.command == "db":
        upgrade(settings.database_url)
        print("database schema is up to date")
        return 0
    if args.command == "breakers":
        return asyncio.run(_breakers(settings, args))
    if args.command in ("review", "code"):
        return _task_command(settings, args)
    if args.command == "serve":
        from backend.api.server import serve

        return serve(settings, host=args.host, port=args.port, workers=not args.no_workers)
    if args.command == "worker":
        from backend.worker import run_worker

        asyncio.run(run_worker(settings, install_signal_handlers=True))
        return 0
    if args.command == "keys":
        from backend.api.server import create_key

        return create_key(settings, name=args.name, admin=args.admin)
    raise AssertionError(f"unhandled command {args.command}")  # argparse enforces the choices


__all__ = ["main"]
