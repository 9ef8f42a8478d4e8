"""results.md from results.json: a summary of Bulwark's targets, then one table per scenario
and variant (contenders as rows, ratios to the raw SDK beside the metrics that have one)."""

from __future__ import annotations

import math
from typing import Any

from bench.contenders import LABELS
from bench.scenarios import load_scenario
from bench.scenarios.base import BASELINE

FOCUS = "bulwark"
DASH = "\u2013"
TIMES = "\u00d7"


def fmt(value: Any) -> str:
    if value is None:
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return DASH
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        if abs(value) >= 0.01:
            return f"{value:.3f}".rstrip("0").rstrip(".")
        return f"{value:.2g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list | tuple):
        return ", ".join(fmt(v) for v in value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def verdict(met: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "n/a"}[met]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return lines


def render(results: dict[str, Any]) -> str:
    machine = results.get("machine", {})
    packages = machine.get("packages", {})
    versions = ", ".join(f"{k} {v}" for k, v in packages.items() if v)
    out = [
        "# Bulwark benchmark results",
        "",
        f"Run {machine.get('started_at', '?')}"
        f"{' (quick sizes)' if results.get('options', {}).get('quick') else ''} on "
        f"{machine.get('cores', '?')} cores ({machine.get('cpu') or 'unknown CPU'}), "
        f"{machine.get('memory_gib', '?')} GiB, Python {machine.get('python', '?')}; "
        f"load average at start {fmt(machine.get('load_average'))}; "
        f"Bulwark at commit {machine.get('commit') or 'unknown'}.",
        "",
        f"Packages: {versions}.",
        "",
        f"Ratios ({TIMES} SDK) are to the raw openai SDK measured in the same run. Every "
        "contender ran in its own process against its own fake provider server (a separate "
        "process) with the same fault schedule and settings: "
        f"{fmt_settings(results.get('common_settings', {}))}.",
        "",
    ]
    missing = results.get("missing_contenders") or {}
    if missing:
        left_out = ", ".join(f"{n} (needs {p})" for n, p in missing.items())
        out += [f"Contenders left out: {left_out}.", ""]
    out += ["## Bulwark against the targets", ""]
    rows = []
    for number, scenario in sorted(results.get("scenarios", {}).items(), key=lambda i: int(i[0])):
        if not str(scenario.get("status", "ok")).startswith("ok"):
            rows.append([f"{number}. {scenario.get('title')}", scenario["status"], DASH, "n/a"])
            continue
        for target in scenario.get("targets", []):
            if target["contender"] != FOCUS:
                continue
            variant = "" if target["variant"] == "default" else f" [{target['variant']}]"
            rows.append(
                [
                    f"{number}. {scenario.get('title')}{variant}",
                    fmt(target["target"]),
                    fmt(target["value"]),
                    verdict(target["met"]) + (f" ({target['note']})" if target["note"] else ""),
                ]
            )
    out += _table(["scenario", "target", "measured", "verdict"], rows)
    out.append("")
    for number, scenario in sorted(results.get("scenarios", {}).items(), key=lambda i: int(i[0])):
        out += render_scenario(int(number), scenario)
    return "\n".join(out).rstrip() + "\n"


def fmt_settings(settings: dict[str, Any]) -> str:
    if not settings:
        return DASH
    return (
        f"{settings.get('max_retries')} retries, {settings.get('initial_wait')} s {TIMES} "
        f"{settings.get('multiplier')} backoff (cap {settings.get('max_wait')} s), "
        f"{settings.get('attempt_timeout')} s attempt timeout, breaker "
        f"{settings.get('breaker_threshold')} failures / {settings.get('open_seconds')} s open"
    )


def render_scenario(number: int, scenario: dict[str, Any]) -> list[str]:
    out = [f"## {number}. {scenario.get('title')}", "", f"{scenario.get('summary', '')}.", ""]
    params = scenario.get("params")
    if params:
        out += ["Parameters: " + ", ".join(f"{k}={fmt(v)}" for k, v in params.items()) + ".", ""]
    status = str(scenario.get("status", "ok"))
    if status != "ok":
        out += [f"**{status}**", ""]
    try:
        metrics = load_scenario(number).metrics
    except Exception:
        metrics = []
    for variant, data in scenario.get("variants", {}).items():
        if len(scenario.get("variants", {})) > 1 or variant != "default":
            out += [f"### {variant}", ""]
        contenders: dict[str, dict[str, Any]] = data.get("contenders", {})
        ratios: dict[str, dict[str, Any]] = data.get("ratios", {})
        columns = [m for m in metrics if any(m.key in v for v in contenders.values())]
        header = ["contender"]
        for m in columns:
            header.append(m.header)
            if m.ratio:
                header.append(f"{TIMES} SDK")
        rows = []
        for name, values in contenders.items():
            row = [LABELS.get(name, name)]
            for m in columns:
                row.append(fmt(values.get(m.key)))
                if m.ratio:
                    row.append("1" if name == BASELINE else fmt(ratios.get(name, {}).get(m.key)))
            rows.append(row)
        if rows:
            out += [*_table(header, rows), ""]
        for name, error in data.get("errors", {}).items():
            last = error.strip().splitlines()[-1] if error.strip() else "failed"
            out += [f"- {LABELS.get(name, name)} failed: {fmt(last)}"]
        if data.get("errors"):
            out.append("")
    targets = scenario.get("targets", [])
    if targets:
        out += ["Targets:", ""]
        for t in targets:
            variant = "" if t["variant"] == "default" else f" [{t['variant']}]"
            note = f" ({t['note']})" if t.get("note") else ""
            out.append(
                f"- {LABELS.get(t['contender'], t['contender'])}{variant}: {t['target']}: "
                f"{fmt(t['value'])}: {verdict(t['met'])}{note}"
            )
        out.append("")
    notes = scenario.get("notes", [])
    if notes:
        out += ["Notes:", ""]
        out += [f"- {note}" for note in notes]
        out.append("")
    out.append(
        f"_{fmt(scenario.get('seconds'))} s; load average before/after "
        f"{fmt(scenario.get('load_average', {}).get('before'))} / "
        f"{fmt(scenario.get('load_average', {}).get('after'))}._"
    )
    out.append("")
    return out


__all__ = ["fmt", "render"]
