"""Smoke test of the benchmarks (``bench/``): scenario 1 at a tiny size, every installed
contender (LiteLLM and pybreaker are bench-only packages: a contender whose package is missing
is simply not in the run), cases in threads of this process, the fake server in its own."""

from __future__ import annotations

from pathlib import Path

from bench.contenders import available
from bench.report import render
from bench.runner import RunContext, run_scenario
from bench.scenarios import MODULES, load_scenario

CALLS = 20


def test_every_scenario_module_loads() -> None:
    for number in MODULES:
        scenario = load_scenario(number)
        assert scenario.number == number
        assert scenario.title
        assert scenario.params(quick=True)


def test_healthy_overhead_at_a_tiny_size(tmp_path: Path) -> None:
    names = available()
    assert {"raw_sdk", "bulwark"} <= set(names)
    ctx = RunContext(
        quick=True,
        contenders=names,
        in_process=True,
        workdir=tmp_path,
        overrides={"calls": CALLS, "rounds": 2, "warm_up": 2},
        log=lambda message: None,
    )
    try:
        result = run_scenario(load_scenario(1), ctx)
    finally:
        ctx.close()

    assert result["status"] == "ok"
    assert (result["number"], result["title"]) == (1, "Healthy overhead")
    variant = result["variants"]["default"]
    assert variant["errors"] == {}
    assert set(variant["contenders"]) == set(names)
    for name, metrics in variant["contenders"].items():
        assert metrics["n"] == CALLS, name
        assert metrics["failures"] == 0, name
        assert metrics["requests"] == CALLS, name
        assert 0 < metrics["p50_ms"] <= metrics["p99_ms"], name
        assert set(variant["ratios"][name]) == {"p50_ms", "p99_ms", "mean_ms", "cpu_ms_per_call"}
    assert variant["ratios"]["raw_sdk"]["p50_ms"] == 1.0
    assert variant["contenders"]["bulwark"]["recorded_attempts"] == CALLS
    bulwark_targets = {t["target"]: t for t in result["targets"] if t["contender"] == "bulwark"}
    recorded = bulwark_targets["every attempt recorded (attempt rows = requests received)"]
    assert recorded["met"] is True
    assert all(t["met"] in (True, False) for t in bulwark_targets.values())

    report = render({"machine": {}, "scenarios": {"1": result}})
    assert "## 1. Healthy overhead" in report
    assert "| Bulwark |" in report
