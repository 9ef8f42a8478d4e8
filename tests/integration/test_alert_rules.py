"""The Prometheus rules (docs/prometheus/bulwark-alerts.yml) against what Bulwark exports.

* The file's structure: groups of recording and alerting rules, each alert with ``for``, a
  ``severity`` label and ``summary``/``description`` annotations.
* ``promtool check rules`` and ``promtool test rules`` (series in, alerts out) when promtool
  is on PATH (Debian's ``prometheus`` package ships it); skipped otherwise.
* Always: a real gateway (fake provider server, real SDKs, SQLite) with the metrics wired by
  ``create_gateway(settings, metrics=...)`` makes calls that retry, fail, fall back and open
  a breaker; the tasks and HTTP listeners add their samples; every metric and label the rules
  name must be in that ``/metrics`` exposition (``render_metrics``).
* A tiny PromQL evaluator runs the alert expressions over two scrapes (before and after the
  calls, 5 minutes apart as far as ``rate`` knows) and checks which alerts would fire.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI, Response
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from backend.core.errors import BulwarkError
from backend.llm.factory import create_gateway
from backend.metrics import BulwarkMetrics, HttpMetricsMiddleware, TaskMetrics, render_metrics
from backend.metrics.multiprocess import ENV_VAR
from tests.fakes.behaviours import reply, server_error
from tests.fakes.provider_server import FakeProviderServer
from tests.integration.gateway_helpers import ANTHROPIC, OPENAI, gateway_settings
from tests.unit.test_grafana_dashboard import (
    Token,
    label_problems,
    promql_references,
    tokenize,
)

RULES = Path(__file__).resolve().parents[2] / "docs" / "prometheus" / "bulwark-alerts.yml"
SEVERITIES = {"critical", "warning", "info"}
DURATION = re.compile(r"(?:\d+(?:ms|[smhdwy]))+")
RECORD_NAME = re.compile(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+")
BUDGET_TARGET = "openai:gpt-4.1-nano"
ENV_PREFIXES = ("BULWARK_", "OPENAI_", "ANTHROPIC_")  # as tests/conftest.py clears them
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(autouse=True)
def single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)


def load_rules() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return data


def rules_of(kind: str) -> list[dict[str, Any]]:
    return [rule for group in load_rules()["groups"] for rule in group["rules"] if kind in rule]


def alert(name: str) -> dict[str, Any]:
    return next(rule for rule in rules_of("alert") if rule["alert"] == name)


# --- structure -------------------------------------------------------------------------------


def test_the_rules_file_has_groups_of_well_formed_rules() -> None:
    groups = load_rules()["groups"]
    assert groups
    assert len({g["name"] for g in groups}) == len(groups)
    for group in groups:
        assert set(group) <= {"name", "interval", "rules", "limit"}, group["name"]
        assert group["rules"], group["name"]
        for rule in group["rules"]:
            assert ("alert" in rule) != ("record" in rule), rule
            assert isinstance(rule["expr"], str) and rule["expr"].strip(), rule
    alerts = rules_of("alert")
    assert len({a["alert"] for a in alerts}) == len(alerts)
    for rule in alerts:
        name = rule["alert"]
        assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
        assert DURATION.fullmatch(rule["for"]), name
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert rule["annotations"]["summary"].strip(), name
        assert rule["annotations"]["description"].strip(), name
    for rule in rules_of("record"):
        assert RECORD_NAME.fullmatch(rule["record"]), rule["record"]  # level:metric:operations


def test_the_alerts_the_operators_need_are_there() -> None:
    breaker = alert("BulwarkBreakerOpen")
    assert re.fullmatch(r"max by \(target\) \(bulwark_breaker_state\) == 2", breaker["expr"])
    assert breaker["for"] == "5m"
    ratio = " ".join(alert("BulwarkHighRetryRatio")["expr"].split())
    assert "bulwark_llm_retries_total[5m]" in ratio and "> 0.2" in ratio
    assert (
        "increase(bulwark_retry_budget_exhausted_total"
        in alert("BulwarkRetryBudgetExhausted")["expr"]
    )
    assert 'status="failed"' in alert("BulwarkTaskFailureRateHigh")["expr"]
    assert "deriv(bulwark_tasks_queued[15m])" in alert("BulwarkQueueGrowing")["expr"]


# --- promtool, where it is installed -----------------------------------------------------------

PROMTOOL = shutil.which("promtool")
# Where promtool is not installed, the checks above (parsing and evaluating every expression
# against real /metrics output) stand in for it; CI installs it, so there it must be present.
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None and not os.environ.get("CI"),
    reason="promtool is not installed (apt-get install prometheus)",
)

_TEMPLATE = re.compile(r"\{\{\s*(.*?)\s*\}\}")


def humanize(value: float) -> str:
    """Prometheus's ``humanize`` for the plain values the tests use (1 <= value < 1000)."""
    assert value == 0 or 1 <= abs(value) < 1000, value
    return f"{value:.4g}"


def render(template: str, labels: dict[str, str], value: float | None) -> str:
    """An annotation as Prometheus renders it, for the few template forms the rules use."""

    def one(match: re.Match[str]) -> str:
        text = match.group(1)
        if text.startswith("$labels."):
            return labels[text.removeprefix("$labels.")]
        assert value is not None, f"{template!r} needs a value"
        if text == "$value | humanize":
            return humanize(value)
        if text == "$value | humanizePercentage":
            return humanize(value * 100) + "%"
        raise AssertionError(f"template form not handled by the test: {text!r}")

    return _TEMPLATE.sub(one, template)


def expected_alert(name: str, labels: dict[str, str], value: float | None = None) -> Any:
    rule = alert(name)
    return {
        "exp_labels": {**rule["labels"], **labels},
        "exp_annotations": {k: render(v, labels, value) for k, v in rule["annotations"].items()},
    }


def promtool_tests() -> dict[str, Any]:
    """Series in, alerts out: the breaker, the retry ratio, failed tasks, a growing queue."""
    host = 'instance="host-a:8000", job="bulwark"'

    def attempts(target: str, outcome: str, category: str) -> str:
        return (
            f'bulwark_llm_attempts_total{{target="{target}", agent="reviewer", '
            f'outcome="{outcome}", category="{category}", {host}}}'
        )

    breakers = {
        "interval": "1m",
        "input_series": [
            {"series": f'bulwark_breaker_state{{target="{OPENAI}", {host}}}', "values": "0 2x15"},
            # Half open is not open; a closed breaker never alerts.
            {"series": f'bulwark_breaker_state{{target="{ANTHROPIC}", {host}}}', "values": "1x15"},
            {"series": f'bulwark_breaker_state{{target="sim:general", {host}}}', "values": "0x15"},
        ],
        "alert_rule_test": [
            {"eval_time": "4m", "alertname": "BulwarkBreakerOpen", "exp_alerts": []},
            {
                "eval_time": "10m",
                "alertname": "BulwarkBreakerOpen",
                "exp_alerts": [expected_alert("BulwarkBreakerOpen", {"target": OPENAI})],
            },
        ],
    }
    retries = {
        "interval": "1m",
        "input_series": [
            # OpenAI: half of the requests sent are retried; the many refusals do not count.
            {"series": attempts(OPENAI, "success", "none"), "values": "0+10x30"},
            {"series": attempts(OPENAI, "failure", "server_error"), "values": "0+10x30"},
            {"series": attempts(OPENAI, "refused", "circuit_open"), "values": "0+100x30"},
            {
                "series": f'bulwark_llm_retries_total{{target="{OPENAI}", agent="reviewer", '
                f"{host}}}",
                "values": "0+10x30",
            },
            # Anthropic: 5% retried.
            {"series": attempts(ANTHROPIC, "success", "none"), "values": "0+20x30"},
            {
                "series": f'bulwark_llm_retries_total{{target="{ANTHROPIC}", agent="reviewer", '
                f"{host}}}",
                "values": "0+1x30",
            },
        ],
        "alert_rule_test": [
            {"eval_time": "8m", "alertname": "BulwarkHighRetryRatio", "exp_alerts": []},
            {
                "eval_time": "20m",
                "alertname": "BulwarkHighRetryRatio",
                "exp_alerts": [
                    expected_alert("BulwarkHighRetryRatio", {"target": OPENAI}, value=0.5)
                ],
            },
        ],
    }
    tasks = {
        "interval": "1m",
        "input_series": [
            {
                "series": f'bulwark_tasks_total{{type="review", status="succeeded", {host}}}',
                "values": "0+2x40",
            },
            {
                "series": f'bulwark_tasks_total{{type="review", status="failed", {host}}}',
                "values": "0+2x40",
            },
            {
                "series": f'bulwark_tasks_total{{type="code", status="succeeded", {host}}}',
                "values": "0+5x40",
            },
            {
                "series": f'bulwark_tasks_total{{type="code", status="failed", {host}}}',
                "values": "0x40",
            },
            # Queued: grows by 5 a minute, above 50 from minute 11.
            {"series": f"bulwark_tasks_queued{{{host}}}", "values": "0+5x40"},
        ],
        "alert_rule_test": [
            {
                "eval_time": "25m",
                "alertname": "BulwarkTaskFailureRateHigh",
                "exp_alerts": [
                    expected_alert("BulwarkTaskFailureRateHigh", {"type": "review"}, value=0.5)
                ],
            },
            {"eval_time": "20m", "alertname": "BulwarkQueueGrowing", "exp_alerts": []},
            {
                "eval_time": "30m",
                "alertname": "BulwarkQueueGrowing",
                "exp_alerts": [expected_alert("BulwarkQueueGrowing", {}, value=150)],
            },
        ],
    }
    return {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [breakers, retries, tasks],
    }


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, timeout=60, check=False
    )


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_promtool_unit_tests_the_alerts(tmp_path: Path) -> None:
    tests = tmp_path / "bulwark-alerts.test.yml"
    tests.write_text(yaml.safe_dump(promtool_tests(), sort_keys=False), encoding="utf-8")
    result = promtool("test", "rules", str(tests))
    assert result.returncode == 0, result.stdout + result.stderr


# --- a real /metrics exposition ------------------------------------------------------------------

Samples = dict[str, list[tuple[dict[str, str], float]]]


@dataclass
class Scrapes:
    before: Samples
    after: Samples

    def series(self) -> dict[str, frozenset[str]]:
        """Every sample name of the second scrape, with its label names."""
        found: dict[str, set[str]] = {}
        for name, samples in self.after.items():
            for labels, _ in samples:
                found.setdefault(name, set()).update(labels)
        return {name: frozenset(labels) for name, labels in found.items()}


def parse_exposition(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


async def http_traffic(metrics: BulwarkMetrics) -> None:
    """Ten good requests and two 503s through the HTTP metrics middleware."""
    app = FastAPI()

    @app.get("/v1/tasks/{task_id}")
    async def get_task(task_id: str) -> dict[str, str]:
        return {"id": task_id}

    @app.get("/readyz")
    async def readyz() -> Response:
        return Response(status_code=503)

    app.add_middleware(HttpMetricsMiddleware, metrics=metrics)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bulwark") as client:
        for number in range(10):
            assert (await client.get(f"/v1/tasks/t-{number}")).status_code == 200
        for _ in range(2):
            assert (await client.get("/readyz")).status_code == 503


async def scenario(provider_server: FakeProviderServer, sqlite_url: str) -> Scrapes:
    """``/metrics`` before and after: OpenAI retried, then failing until its breaker opens
    (calls fall back to Anthropic, or fail on a route without another target); a retry
    refused by the retry budget; finished tasks, a queue, and HTTP requests."""
    registry = CollectorRegistry()
    metrics = BulwarkMetrics(registry)
    before = render_metrics(registry)[0].decode()
    routes = {"review": [OPENAI, ANTHROPIC], "solo": [OPENAI]}
    settings = gateway_settings(
        provider_server, sqlite_url, routes, breaker_threshold=2, retry_max_retries=1
    )
    gateway = await create_gateway(settings, metrics=metrics, migrate=True)
    spent = gateway_settings(
        provider_server,
        sqlite_url,
        {"budget": [BUDGET_TARGET]},
        retry_budget_ratio=0.0,
        retry_budget_min=0,
    )
    budget_gateway = await create_gateway(spent, metrics=metrics, migrate=False)
    try:
        provider_server.set_default(reply("from claude"), provider="anthropic")
        provider_server.script(server_error(503), reply("ok"), provider="openai")
        result = await gateway.complete(HI, route="review", agent="reviewer")
        assert (result.target, result.attempts) == (OPENAI, 2)  # one retry
        provider_server.script(server_error(503), server_error(503), provider="openai")
        result = await gateway.complete(HI, route="review", agent="reviewer")
        assert result.target == ANTHROPIC  # a retry, the breaker opens, a fallback
        result = await gateway.complete(HI, route="review", agent="reviewer")
        assert (result.target, result.attempts) == (ANTHROPIC, 2)  # refused, a fallback
        with pytest.raises(BulwarkError):  # refused, and nothing to fall back to
            await gateway.complete(HI, route="solo", agent="coder")
        provider_server.script(server_error(503), provider="openai")
        with pytest.raises(BulwarkError):  # the retry is refused by the budget
            await budget_gateway.complete(HI, route="budget", agent="coder")
        assert provider_server.count(provider="openai") == 5
    finally:
        await budget_gateway.aclose()
        await gateway.aclose()
    tasks = TaskMetrics(metrics)
    for status, count in (("succeeded", 3), ("failed", 3)):
        for _ in range(count):
            tasks.task_finished("review", status, 2.0)
    for _ in range(5):
        tasks.task_finished("code", "succeeded", 20.0)
    tasks.set_queued(60)
    await http_traffic(metrics)
    after = render_metrics(registry)[0].decode()
    return Scrapes(parse_exposition(before), parse_exposition(after))


@pytest.fixture(scope="module")
def scrapes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scrapes]:
    """The scenario, run once for the module (in its own event loop, a clean environment and
    a directory of its own, as the function-scoped fixtures would give a test)."""
    directory = tmp_path_factory.mktemp("alert-rules")
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith(ENV_PREFIXES) and not name.startswith("BULWARK_TEST_"):
                patch.delenv(name)
        patch.delenv(ENV_VAR, raising=False)
        patch.chdir(directory)
        with FakeProviderServer() as server:
            url = f"sqlite+aiosqlite:///{directory / 'bulwark.db'}"
            yield asyncio.run(scenario(server, url))
            assert not server.errors, server.errors


def test_the_scenario_exported_what_it_should(scrapes: Scrapes) -> None:
    def value(name: str, **labels: str) -> float:
        return sum(v for got, v in scrapes.after.get(name, []) if labels.items() <= got.items())

    assert value("bulwark_llm_attempts_total", target=OPENAI, outcome="refused") == 2
    assert value("bulwark_llm_attempts_total", target=OPENAI) == 6
    assert value("bulwark_llm_retries_total", target=OPENAI) == 2
    assert value("bulwark_breaker_state", target=OPENAI) == 2
    assert value("bulwark_fallbacks_total", from_target=OPENAI, to_target=ANTHROPIC) == 2
    assert value("bulwark_retry_budget_exhausted_total", target=BUDGET_TARGET) == 1
    assert value("bulwark_tasks_queued") == 60
    assert value("bulwark_http_requests_total", route="/v1/tasks/{task_id}", status="200") == 10


def test_every_metric_and_label_in_the_rules_is_exported(scrapes: Scrapes) -> None:
    series = scrapes.series()
    recorded = frozenset(rule["record"] for rule in rules_of("record"))
    problems = []
    for rule in rules_of("alert") + rules_of("record"):
        name = rule.get("alert") or rule["record"]
        refs = promql_references(rule["expr"])
        assert refs.metrics, f"{name}: no metric in its expression"
        problems += [f"{name}: {p}" for p in label_problems(refs, series, known=recorded)]
    assert problems == []


def test_annotations_use_only_labels_the_alert_keeps(scrapes: Scrapes) -> None:
    """``{{ $labels.x }}`` must name a label the alert's series keep after aggregation: those
    of the alert's value in the scenario, or (for an alert that does not fire there) those of
    its first ``by (...)`` clause."""
    for name, rule in alerts_by_name().items():
        used: set[str] = set()
        for text in rule["annotations"].values():
            used |= set(re.findall(r"\$labels\.(\w+)", text))
        result = evaluate(rule["expr"], scrapes)
        kept = {label for key in result for label, _ in key}
        if not result:
            grouping = promql_references(rule["expr"]).groupings
            kept = set(grouping[0].labels) if grouping else set()
        assert used <= kept, f"{name}: annotations use {used - kept}, the alert has {kept}"


# --- a tiny PromQL evaluator over two scrapes ---------------------------------------------------

#: The time between the two scrapes, as rate() and deriv() see it.
WINDOW_SECONDS = 300.0
HOST = {"instance": "host-a:8000", "job": "bulwark"}

Labels = frozenset[tuple[str, str]]
Vector = dict[Labels, float]
Value = float | Vector

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
}


def _divide(a: float, b: float) -> float:
    if b == 0:
        return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a)
    return a / b


_ARITHMETIC: dict[str, Callable[[float, float], float]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": _divide,
}
_AGGREGATE: dict[str, Callable[[list[float]], float]] = {
    "sum": sum,
    "max": max,
    "min": min,
    "avg": lambda values: sum(values) / len(values),
    "count": lambda values: float(len(values)),
}


@dataclass
class _Range:
    """A range selector's series: (value at the first scrape, value at the second)."""

    series: dict[Labels, tuple[float, float]]


class Evaluator:
    """Evaluates the subset of PromQL Bulwark's alerts use: selectors with matchers, ranges
    read as "from the first scrape to the second" (``rate``, ``increase``, ``deriv``,
    ``delta``; a series absent from the first scrape started at 0, no extrapolation),
    ``sum/max/min/avg/count [by|without]``, arithmetic, comparisons (filters, or ``bool``)
    and ``and``/``unless`` on identical label sets. Anything else raises."""

    def __init__(self, expr: str, scrapes: Scrapes) -> None:
        self.tokens = tokenize(expr)
        self.at = 0
        self.scrapes = scrapes

    def run(self) -> Value:
        value = self.logical()
        if self.at != len(self.tokens):
            raise NotImplementedError(f"cannot evaluate from {self.peek()}")
        return value

    # tokens

    def peek(self) -> Token | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, text: str | None = None) -> Token:
        token = self.peek()
        assert token is not None and (text is None or token.text == text), (text, token)
        self.at += 1
        return token

    def accept(self, *texts: str) -> str | None:
        token = self.peek()
        if token is not None and token.text in texts:
            self.at += 1
            return token.text
        return None

    # grammar, loosest first

    def logical(self) -> Value:
        left = self.comparison()
        while (op := self.accept("and", "unless")) is not None:
            right = self.comparison()
            assert isinstance(left, dict) and isinstance(right, dict), "and/unless on vectors"
            keep = op == "and"
            left = {k: v for k, v in left.items() if (k in right) == keep}
        return left

    def comparison(self) -> Value:
        left = self.additive()
        while (op := self.accept(*_COMPARE)) is not None:
            as_bool = self.accept("bool") is not None
            left = self.binary(op, left, self.additive(), as_bool=as_bool)
        return left

    def additive(self) -> Value:
        left = self.multiplicative()
        while (op := self.accept("+", "-")) is not None:
            left = self.binary(op, left, self.multiplicative())
        return left

    def multiplicative(self) -> Value:
        left = self.unary()
        while (op := self.accept("*", "/")) is not None:
            left = self.binary(op, left, self.unary())
        return left

    def unary(self) -> Value:
        token = self.take()
        if token.text == "-":
            return self.binary("*", -1.0, self.unary())
        if token.kind == "number":
            return float(token.text)
        if token.text == "(":
            value = self.logical()
            self.take(")")
            return value
        if token.kind != "ident":
            raise NotImplementedError(f"cannot evaluate {token}")
        if token.text in _AGGREGATE and self.peek() is not None:
            return self.aggregation(token.text)
        if self.accept("(") is not None:
            return self.function(token.text)
        selected = self.selector(token.text)
        assert isinstance(selected, dict), f"a range outside a function: {token.text}"
        return selected

    def aggregation(self, op: str) -> Vector:
        clause, labels = self.grouping()
        self.take("(")
        body = self.logical()
        self.take(")")
        if clause is None:
            clause, labels = self.grouping()
        assert isinstance(body, dict), f"{op} of a scalar"
        groups: dict[Labels, list[float]] = {}
        for key, value in body.items():
            if clause == "by":
                group = frozenset((k, v) for k, v in key if k in labels)
            elif clause == "without":
                group = frozenset((k, v) for k, v in key if k not in labels)
            else:
                group = frozenset()
            groups.setdefault(group, []).append(value)
        return {group: _AGGREGATE[op](values) for group, values in groups.items()}

    def grouping(self) -> tuple[str | None, set[str]]:
        clause = self.accept("by", "without")
        if clause is None:
            return None, set()
        self.take("(")
        labels: set[str] = set()
        while self.accept(")") is None:
            labels.add(self.take().text)
            self.accept(",")
        return clause, labels

    def function(self, name: str) -> Value:
        if name not in ("increase", "delta", "rate", "deriv"):
            raise NotImplementedError(f"function {name}")
        argument = self.selector(self.take().text, allow_range=True)
        self.take(")")
        assert isinstance(argument, _Range), f"{name} needs a range"
        change = {k: (second - first) for k, (first, second) in argument.series.items()}
        if name in ("increase", "delta"):
            return change
        return {k: v / WINDOW_SECONDS for k, v in change.items()}  # rate, deriv

    def selector(self, metric: str, *, allow_range: bool = False) -> Vector | _Range:
        matchers: list[tuple[str, str, str]] = []
        if self.accept("{") is not None:
            while self.accept("}") is None:
                label_name, op, raw = self.take().text, self.take().text, self.take().text
                matchers.append((label_name, op, raw[1:-1]))
                self.accept(",")
        after = self._select(self.scrapes.after, metric, matchers)
        token = self.peek()
        if token is None or token.kind != "range":
            return after
        assert allow_range, f"a range outside a function: {metric}{token.text}"
        self.take()
        before = self._select(self.scrapes.before, metric, matchers)
        return _Range({k: (before.get(k, 0.0), v) for k, v in after.items()})

    @staticmethod
    def _select(samples: Samples, metric: str, matchers: list[tuple[str, str, str]]) -> Vector:
        def matches(labels: dict[str, str]) -> bool:
            for label_name, op, wanted in matchers:
                got = labels.get(label_name, "")
                ok = {
                    "=": got == wanted,
                    "!=": got != wanted,
                    "=~": re.fullmatch(wanted, got) is not None,
                    "!~": re.fullmatch(wanted, got) is None,
                }[op]
                if not ok:
                    return False
            return True

        return {
            frozenset({**labels, **HOST}.items()): value
            for labels, value in samples.get(metric, [])
            if matches(labels)
        }

    def binary(self, op: str, left: Value, right: Value, *, as_bool: bool = False) -> Value:
        compare = _COMPARE.get(op)
        if isinstance(left, float) and isinstance(right, float):
            if compare is not None:
                return float(compare(left, right))
            return _ARITHMETIC[op](left, right)
        if isinstance(left, dict) and isinstance(right, dict):
            pairs = {k: (left[k], right[k]) for k in left.keys() & right.keys()}
        elif isinstance(left, dict):
            assert isinstance(right, float)
            pairs = {k: (v, right) for k, v in left.items()}
        else:
            assert isinstance(left, float) and isinstance(right, dict)
            pairs = {k: (left, v) for k, v in right.items()}
        if compare is None:
            return {k: _ARITHMETIC[op](a, b) for k, (a, b) in pairs.items()}
        if as_bool:
            return {k: float(compare(a, b)) for k, (a, b) in pairs.items()}
        # A filter keeps the vector side's value.
        keep_left = isinstance(left, dict)
        return {k: (a if keep_left else b) for k, (a, b) in pairs.items() if compare(a, b)}


def evaluate(expr: str, scrapes: Scrapes) -> Vector:
    value = Evaluator(expr, scrapes).run()
    assert isinstance(value, dict), f"{expr!r} is not a vector"
    return value


def alerts_by_name() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in rules_of("alert")}


def firing(expr: str, scrapes: Scrapes) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(k)): v for k, v in evaluate(expr, scrapes).items()}


def test_the_breaker_open_alert_selects_the_open_breaker(scrapes: Scrapes) -> None:
    assert firing(alert("BulwarkBreakerOpen")["expr"], scrapes) == {(("target", OPENAI),): 2.0}


def test_the_retry_ratio_alert_fires_when_half_the_requests_are_retried(
    scrapes: Scrapes,
) -> None:
    # OpenAI: 4 requests sent (2 refusals are not requests), 2 retried: 50% > 20%.
    # Anthropic answered at once; the budget target was never retried: no alert for them.
    expr = alert("BulwarkHighRetryRatio")["expr"]
    assert firing(expr, scrapes) == {(("target", OPENAI),): 0.5}
    # The recording rule computes the same ratio. A target never retried has no retries
    # series yet, hence no ratio at all (not 0): Prometheus divides only matching series.
    recorded = next(r for r in rules_of("record") if "retry_ratio" in r["record"])
    assert firing(recorded["expr"], scrapes) == {(("target", OPENAI),): 0.5}


def test_the_other_alerts_fire_on_the_scenario(scrapes: Scrapes) -> None:
    fired = {
        name: firing(alert(name)["expr"], scrapes)
        for name in (
            "BulwarkRetryBudgetExhausted",
            "BulwarkTaskFailureRateHigh",
            "BulwarkQueueGrowing",
            "BulwarkHttpErrors",
            "BulwarkBreakerReopening",
        )
    }
    assert fired == {
        "BulwarkRetryBudgetExhausted": {(("target", BUDGET_TARGET),): 1.0},
        "BulwarkTaskFailureRateHigh": {(("type", "review"),): 0.5},  # 3 of 6; code: 0 of 5
        "BulwarkQueueGrowing": {(): 60.0},
        "BulwarkHttpErrors": {(): pytest.approx(2 / 12)},
        "BulwarkBreakerReopening": {},  # opened once, not three times
    }


def test_the_evaluator_refuses_what_it_does_not_know(scrapes: Scrapes) -> None:
    with pytest.raises(NotImplementedError):
        evaluate("histogram_quantile(0.99, bulwark_llm_call_duration_seconds_bucket)", scrapes)
    assert evaluate("bulwark_tasks_queued > bool 100", scrapes) == {frozenset(HOST.items()): 0.0}
