"""``python -m bench [--quick] [--only 1,2,...] [--out bench/results]``."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import COMMON, guard_network, machine_info, raise_fd_limit
from bench.contenders import CONTENDERS, LABELS, available, missing
from bench.report import render
from bench.runner import RunContext, run_scenario
from bench.scenarios import MODULES, load_scenario


def _numbers(text: str) -> list[int]:
    numbers = sorted({int(part) for part in text.split(",") if part.strip()})
    unknown = [n for n in numbers if n not in MODULES]
    if unknown:
        raise argparse.ArgumentTypeError(f"no scenario {unknown}; scenarios are 1..{len(MODULES)}")
    return numbers


def _names(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in CONTENDERS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown contenders {unknown}; known: {list(CONTENDERS)}")
    return names


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Bulwark against the raw SDK, tenacity + pybreaker and LiteLLM's Router.",
    )
    p.add_argument("--quick", action="store_true", help="every scenario at reduced sizes")
    p.add_argument("--only", type=_numbers, help="scenarios to run, e.g. 1,2,7 (default: all)")
    p.add_argument(
        "--out",
        default="bench/results",
        help="output path prefix: writes <out>.json and <out>.md (default: bench/results)",
    )
    p.add_argument("--contenders", type=_names, help="only these contenders (raw_sdk always)")
    p.add_argument(
        "--merge",
        action="store_true",
        help="keep the other scenarios of an existing <out>.json (with --only)",
    )
    p.add_argument(
        "--fresh",
        action="store_true",
        help="a new process per contender per case (default: a contender's process is reused)",
    )
    p.add_argument(
        "--in-process",
        action="store_true",
        help="run contenders in threads of this process (debugging; numbers are not comparable)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    guard_network()
    raise_fd_limit()
    names = available()
    if args.contenders:
        names = [n for n in names if n in {*args.contenders, "raw_sdk"}]
    out = Path(args.out)
    json_path, md_path = out.with_suffix(".json"), out.with_suffix(".md")
    results: dict[str, Any] = {
        "machine": machine_info(),
        "options": {
            "quick": args.quick,
            "only": args.only,
            "in_process": args.in_process,
            "fresh": args.fresh,
        },
        "common_settings": COMMON.to_dict(),
        "contenders": {n: LABELS[n] for n in names},
        "missing_contenders": missing(),
        "scenarios": {},
    }
    if args.merge and json_path.exists():
        previous = json.loads(json_path.read_text())
        results["scenarios"] = previous.get("scenarios", {})
    ctx = RunContext(
        quick=args.quick, contenders=names, in_process=args.in_process, reuse=not args.fresh
    )
    started = time.monotonic()
    try:
        for number in args.only or sorted(MODULES):
            scenario = load_scenario(number)
            ctx.log(f"scenario {number}: {scenario.title}")
            result = run_scenario(scenario, ctx)
            ctx.log(f"scenario {number}: {result['status']} in {result['seconds']} s")
            results["scenarios"][str(number)] = result
            _write(results, json_path, md_path)
    finally:
        ctx.close()
        shutil.rmtree(ctx.workdir, ignore_errors=True)
    results["total_seconds"] = round(time.monotonic() - started, 1)
    _write(results, json_path, md_path)
    print(f"wrote {json_path} and {md_path} in {results['total_seconds']} s", file=sys.stderr)
    return 0


def _write(results: dict[str, Any], json_path: Path, md_path: Path) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    md_path.write_text(render(results))


__all__ = ["main", "parser"]
