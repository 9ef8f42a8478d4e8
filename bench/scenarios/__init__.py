"""The scenarios, by number (one module each)."""

from __future__ import annotations

import importlib

from bench.scenarios.base import Scenario

MODULES: dict[int, str] = {
    1: "bench.scenarios.s01_healthy",
    2: "bench.scenarios.s02_outage",
    3: "bench.scenarios.s03_rate_limit",
    4: "bench.scenarios.s04_auth",
    5: "bench.scenarios.s05_recovery",
    6: "bench.scenarios.s06_hang",
    7: "bench.scenarios.s07_throughput",
    8: "bench.scenarios.s08_fleet",
    9: "bench.scenarios.s09_tasks",
    10: "bench.scenarios.s10_memory",
}


def load_scenario(number: int) -> Scenario:
    scenario: Scenario = importlib.import_module(MODULES[number]).SCENARIO
    return scenario


__all__ = ["MODULES", "load_scenario"]
