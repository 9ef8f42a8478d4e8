"""Profile one contender's healthy calls (scenario 1's workload) against a fake server in its
own process: ``python -m bench.profile [--contender bulwark] [--calls 2000] [--html FILE]``.

Uses pyinstrument when it is installed (bench/requirements.txt), cProfile otherwise, and
prints the CPU time per call beside the profile.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib.util
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import guard_network, raise_fd_limit
from bench.contenders import CONTENDERS, load_contender
from bench.contenders.base import ContenderSpec
from bench.scenarios.base import run_calls
from bench.servers import FakeServer


async def _profile(args: argparse.Namespace, server: FakeServer, workdir: str) -> str:
    spec = ContenderSpec(primary_url=server.openai_base_url, workdir=workdir)
    contender = await load_contender(args.contender).create(spec)
    try:
        await run_calls(contender, args.warm_up, 1)
        use_pyinstrument = not args.cprofile and importlib.util.find_spec("pyinstrument")
        cpu, wall = time.process_time(), time.perf_counter()
        if use_pyinstrument:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0002, async_mode="enabled")
            profiler.start()
            await run_calls(contender, args.calls, args.concurrency)
            profiler.stop()
            if args.html:
                await asyncio.to_thread(Path(args.html).write_text, profiler.output_html())
            report: str = profiler.output_text(unicode=False, color=False, show_all=False)
        else:
            profile = cProfile.Profile()
            profile.enable()
            await run_calls(contender, args.calls, args.concurrency)
            profile.disable()
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(40)
            report = out.getvalue()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        header = (
            f"{args.contender}: {args.calls} calls, {args.concurrency} at a time: "
            f"{cpu * 1000 / args.calls:.3f} ms CPU and {wall * 1000 / args.calls:.3f} ms wall "
            "per call (profiler overhead included)\n"
        )
        return header + report
    finally:
        await contender.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--contender", default="bulwark", choices=sorted(CONTENDERS))
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warm-up", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--html", help="also write pyinstrument's HTML report here")
    parser.add_argument("--cprofile", action="store_true", help="use cProfile")
    args = parser.parse_args(argv)
    guard_network()
    raise_fd_limit()
    with FakeServer() as server, tempfile.TemporaryDirectory() as workdir:
        report: Any = asyncio.run(_profile(args, server, workdir))
    sys.stdout.write(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
