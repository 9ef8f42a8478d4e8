"""The Grafana dashboard (docs/grafana/bulwark-dashboard.json) against the metrics Bulwark
defines: it parses, its datasource is the templated ``${DS_PROMETHEUS}``, its panel ids are
unique, and every query names only series that :class:`BulwarkMetrics` exports, with labels
those series carry.

The small PromQL reader here (:func:`promql_references`) is also used by
``tests/integration/test_alert_rules.py``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from backend.metrics import BulwarkMetrics
from backend.metrics.multiprocess import ENV_VAR

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "bulwark-dashboard.json"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}

# --- a small PromQL reader ---------------------------------------------------------------------


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: PromQL's functions (Prometheus 2.x and 3.x); an identifier followed by "(" must be one.
PROMQL_FUNCTIONS = _words(
    """
    abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes
    clamp clamp_max clamp_min cos cosh count_over_time days_in_month day_of_month day_of_week
    day_of_year deg delta deriv double_exponential_smoothing exp floor
    histogram_avg histogram_count histogram_fraction histogram_quantile histogram_stddev
    histogram_stdvar histogram_sum holt_winters hour idelta increase info irate label_join
    label_replace last_over_time ln log10 log2 mad_over_time max_over_time min_over_time minute
    month pi predict_linear present_over_time quantile_over_time rad rate resets round scalar
    sgn sin sinh sort sort_by_label sort_by_label_desc sort_desc sqrt stddev_over_time
    stdvar_over_time sum_over_time tan tanh time timestamp vector year
    """
)
#: Aggregation operators: ``op [by|without (labels)] (body) [by|without (labels)]``.
AGGREGATIONS = _words(
    "sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk "
    "limit_ratio"
)
#: Words that are never metric names.
KEYWORDS = _words("by without on ignoring group_left group_right bool and or unless offset atan2")

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
    | (?P<comment>\#[^\n]*)
    | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
    | (?P<range>\[[^\]]*\])
    | (?P<var>\$\{[^}]*\}|\$[A-Za-z_]\w*)
    | (?P<duration>\d+(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*(?![\w.]))
    | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|(?i:inf|nan)(?![\w:]))
    | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    | (?P<op>==|!=|=~|!~|>=|<=|[-+*/%^<>=(){},@])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str
    text: str


def tokenize(expr: str) -> list[Token]:
    """PromQL tokens, without blanks and comments. A range (``[5m]``, ``[$__rate_interval]``)
    is one token; Grafana variables (``$target``) are ``var`` tokens."""
    tokens: list[Token] = []
    position = 0
    while position < len(expr):
        match = _TOKEN.match(expr, position)
        if match is None:
            raise ValueError(
                f"cannot read PromQL at {expr[position : position + 20]!r} in {expr!r}"
            )
        kind = match.lastgroup
        assert kind is not None
        if kind not in ("ws", "comment"):
            tokens.append(Token(kind, match.group()))
        position = match.end()
    return tokens


@dataclass(frozen=True)
class Selector:
    """A series selector: the metric name and the labels its matchers test."""

    metric: str
    labels: frozenset[str]
    position: int


@dataclass(frozen=True)
class Grouping:
    """A ``by``/``without``/``on``/``ignoring``/``group_*`` clause, its labels, and the
    metrics whose series it groups (``scope``)."""

    clause: str
    labels: tuple[str, ...]
    scope: frozenset[str]


@dataclass
class References:
    """What one expression refers to."""

    selectors: list[Selector] = field(default_factory=list)
    groupings: list[Grouping] = field(default_factory=list)
    functions: set[str] = field(default_factory=set)

    @property
    def metrics(self) -> set[str]:
        return {s.metric for s in self.selectors}


def _closing(tokens: list[Token], open_at: int) -> int:
    """The index of the ``)`` that closes the ``(`` at ``open_at``."""
    depth = 0
    for index in range(open_at, len(tokens)):
        if tokens[index].text == "(":
            depth += 1
        elif tokens[index].text == ")":
            depth -= 1
            if depth == 0:
                return index
    raise ValueError("unbalanced parentheses")


def _label_list(tokens: list[Token], open_at: int) -> tuple[tuple[str, ...], int]:
    """The labels of ``(a, b)`` starting at ``open_at``, and the index after ``)``."""
    end = _closing(tokens, open_at)
    labels = tuple(t.text for t in tokens[open_at + 1 : end] if t.text != ",")
    for name in labels:
        if not re.fullmatch(r"[A-Za-z_]\w*", name):
            raise ValueError(f"not a label name: {name!r}")
    return labels, end + 1


def _enclosing(tokens: list[Token], index: int) -> tuple[int, int]:
    """The token range of the innermost parentheses around ``index`` (or the whole)."""
    depth = 0
    for start in range(index - 1, -1, -1):
        if tokens[start].text == ")":
            depth += 1
        elif tokens[start].text == "(":
            if depth == 0:
                return start, _closing(tokens, start)
            depth -= 1
    return 0, len(tokens)


def promql_references(expr: str) -> References:
    """The metrics, matcher labels, grouping labels and functions of a PromQL expression.

    Raises ``ValueError`` on an unknown function or a selector without a metric name (this
    reader is for Bulwark's own rules and dashboards, which name their metrics)."""
    tokens = tokenize(expr)
    found = References()
    # (clause, labels, the token range of the series it groups)
    pending: list[tuple[str, tuple[str, ...], tuple[int, int]]] = []
    trailing: dict[int, int] = {}  # a trailing "by (...)" already read: its start -> its end
    index = 0
    while index < len(tokens):
        if index in trailing:
            index = trailing[index]
            continue
        token = tokens[index]
        after = tokens[index + 1] if index + 1 < len(tokens) else None
        if token.kind == "op" and token.text == "{":
            raise ValueError(f"a selector without a metric name in {expr!r}")
        if token.kind != "ident":
            index += 1
            continue
        name = token.text
        if name in AGGREGATIONS and after is not None and after.text in ("(", "by", "without"):
            cursor = index + 1
            clauses: list[tuple[str, tuple[str, ...]]] = []
            if tokens[cursor].text in ("by", "without"):
                labels, cursor = _label_list(tokens, cursor + 1)
                clauses.append((tokens[index + 1].text, labels))
            body_end = _closing(tokens, cursor)
            body = (cursor, body_end)
            tail = body_end + 1
            if tail < len(tokens) and tokens[tail].text in ("by", "without"):
                labels, trailing[tail] = _label_list(tokens, tail + 1)
                clauses.append((tokens[tail].text, labels))
            pending.extend((clause, labels, body) for clause, labels in clauses)
            index = cursor + 1
        elif name in ("on", "ignoring", "group_left", "group_right"):
            matching: tuple[str, ...] = ()
            next_index = index + 1
            if after is not None and after.text == "(":
                matching, next_index = _label_list(tokens, index + 1)
            pending.append((name, matching, _enclosing(tokens, index)))
            index = next_index
        elif name in KEYWORDS:
            index += 1
        elif after is not None and after.text == "(":
            if name not in PROMQL_FUNCTIONS:
                raise ValueError(f"unknown PromQL function {name!r} in {expr!r}")
            found.functions.add(name)
            index += 1
        elif after is not None and after.text == "{":
            end = next(i for i in range(index + 1, len(tokens)) if tokens[i].text == "}")
            inside = tokens[index + 2 : end]
            labels_tested = {
                t.text
                for i, t in enumerate(inside)
                if t.kind == "ident" and i + 1 < len(inside) and inside[i + 1].kind == "op"
            }
            found.selectors.append(Selector(name, frozenset(labels_tested), index))
            index = end + 1
        else:
            found.selectors.append(Selector(name, frozenset(), index))
            index += 1
    for clause, labels, (start, end) in pending:
        scope = frozenset(s.metric for s in found.selectors if start <= s.position <= end)
        found.groupings.append(Grouping(clause, labels, scope))
    return found


#: Labels every scraped series has in Prometheus, though no exposition shows them.
TARGET_LABELS = frozenset({"instance", "job", "__name__"})


def label_problems(
    refs: References, series: dict[str, frozenset[str]], *, known: frozenset[str] = frozenset()
) -> list[str]:
    """What ``refs`` uses that ``series`` (sample name -> its label names) lacks. Names in
    ``known`` (e.g. recording rules) are accepted without a label check."""
    problems: list[str] = []
    for selector in refs.selectors:
        if selector.metric in known:
            continue
        if selector.metric not in series:
            problems.append(f"metric {selector.metric} is not exported")
            continue
        for name in sorted(selector.labels - series[selector.metric] - TARGET_LABELS):
            problems.append(f"{selector.metric} has no label {name!r}")
    for grouping in refs.groupings:
        checked = [m for m in sorted(grouping.scope) if m in series and m not in known]
        wanted = [name for name in grouping.labels if name not in TARGET_LABELS]
        if grouping.clause in ("group_left", "group_right"):
            for name in wanted:
                if checked and not any(name in series[m] for m in checked):
                    problems.append(f"{grouping.clause}({name}): no metric of {checked} has it")
            continue
        for metric in checked:
            for name in wanted:
                if name not in series[metric]:
                    problems.append(f"{grouping.clause} ({name}): {metric} has no such label")
    return problems


@pytest.mark.parametrize(
    ("expr", "metrics", "groupings"),
    [
        ("up", {"up"}, []),
        (
            'sum by (target) (rate(a_total{outcome!="refused"}[5m])) / sum(b_total) by (target)',
            {"a_total", "b_total"},
            [("by", ("target",), {"a_total"}), ("by", ("target",), {"b_total"})],
        ),
        (
            "histogram_quantile(0.99, sum by (target, le) "
            "(rate(x_seconds_bucket[$__rate_interval])))",
            {"x_seconds_bucket"},
            [("by", ("target", "le"), {"x_seconds_bucket"})],
        ),
        (
            "max(deriv(q[15m])) > 0 and max(q offset 5m) > 50 unless on (job) absent(r)",
            {"q", "r"},
            [("on", ("job",), {"q", "r"})],
        ),
        ('x{a="b", c=~"$target"} * on (a) group_left (z) y', {"x", "y"}, None),
        ("1e3 * NaN + 0x1f - sum without (le) (h_bucket)", {"h_bucket"}, None),
    ],
)
def test_the_promql_reader_finds_metrics_and_groupings(
    expr: str, metrics: set[str], groupings: list[tuple[str, tuple[str, ...], set[str]]] | None
) -> None:
    refs = promql_references(expr)
    assert refs.metrics == metrics
    if groupings is not None:
        assert [(g.clause, g.labels, set(g.scope)) for g in refs.groupings] == groupings


def test_the_promql_reader_reports_matcher_labels_and_refuses_unknown_functions() -> None:
    refs = promql_references('rate(a_total{target="x", outcome!~"refused|none"}[5m])')
    assert refs.selectors[0].labels == {"target", "outcome"}
    assert refs.functions == {"rate"}
    with pytest.raises(ValueError, match="unknown PromQL function"):
        promql_references("rates(a_total[5m])")
    with pytest.raises(ValueError, match="without a metric name"):
        promql_references('{__name__="a"}')


def test_label_problems_reports_missing_metrics_and_labels() -> None:
    series = {"a_total": frozenset({"target"}), "h_bucket": frozenset({"target", "le"})}
    fine = "sum by (target, le, instance) (h_bucket)"
    assert label_problems(promql_references(fine), series) == []
    problems = label_problems(promql_references('sum by (agent) (a_total{x="1"}) + b'), series)
    assert problems == [
        "a_total has no label 'x'",
        "metric b is not exported",
        "by (agent): a_total has no such label",
    ]


# --- what BulwarkMetrics defines -------------------------------------------------------------


def defined_series(registry: CollectorRegistry | None = None) -> dict[str, frozenset[str]]:
    """Every sample name a fresh :class:`BulwarkMetrics` exports, with its label names:
    counters as ``_total``, histograms as ``_bucket`` (with ``le``), ``_count`` and ``_sum``,
    gauges as they are (``_created`` series are left out: dashboards must not need them)."""
    metrics = BulwarkMetrics(registry if registry is not None else CollectorRegistry())
    wrappers = [v for v in vars(metrics).values() if isinstance(v, MetricWrapperBase)]
    families = {family.name: family.type for family in metrics.registry.collect()}
    # Every metric registered on the registry is an attribute of BulwarkMetrics.
    assert {w._name for w in wrappers} == set(families)
    series: dict[str, frozenset[str]] = {}
    for wrapper in wrappers:
        labels = frozenset(wrapper._labelnames)
        kind = families[wrapper._name]
        if kind == "counter":
            series[f"{wrapper._name}_total"] = labels
        elif kind == "histogram":
            series[f"{wrapper._name}_bucket"] = labels | {"le"}
            series[f"{wrapper._name}_count"] = labels
            series[f"{wrapper._name}_sum"] = labels
        elif kind == "gauge":
            series[wrapper._name] = labels
        else:  # pragma: no cover - a new kind of metric needs a rule here
            raise AssertionError(f"{wrapper._name}: metric type {kind} not handled")
    return series


# --- the dashboard ---------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))  # collapsed rows hold their panels


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target."""
    for panel in all_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield f"panel {panel['id']} {panel['title']!r} {target['refId']}", target["expr"]


def test_the_dashboard_is_a_grafana_dashboard(dashboard: dict[str, Any]) -> None:
    assert dashboard["title"] and dashboard["uid"]
    assert isinstance(dashboard["schemaVersion"], int)
    assert "id" not in dashboard or dashboard["id"] is None  # importable into any Grafana
    panels = list(all_panels(dashboard["panels"]))
    assert panels
    for panel in panels:
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}, panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        assert panel["type"] == "row" or panel.get("targets"), panel["title"]


def test_panel_ids_are_unique(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in all_panels(dashboard["panels"])]
    assert all(isinstance(i, int) for i in ids)
    assert len(ids) == len(set(ids)), sorted(ids)
    refs = [
        (panel["id"], target["refId"])
        for panel in all_panels(dashboard["panels"])
        for target in panel.get("targets", [])
    ]
    assert len(refs) == len(set(refs))


def _datasources(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield value
            yield from _datasources(value)
    elif isinstance(node, list):
        for item in node:
            yield from _datasources(item)


def test_the_datasource_is_the_templated_ds_prometheus(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    ds = variables["DS_PROMETHEUS"]
    assert (ds["type"], ds["query"]) == ("datasource", "prometheus")
    for panel in all_panels(dashboard["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", DATASOURCE) == DATASOURCE, panel["title"]
    # No datasource is hard-coded anywhere (Grafana's own annotation source aside).
    for value in _datasources({k: v for k, v in dashboard.items() if k != "annotations"}):
        assert value == DATASOURCE, value


def test_every_query_names_only_defined_metrics_and_labels(dashboard: dict[str, Any]) -> None:
    series = defined_series()
    problems = []
    for where, expr in queries(dashboard):
        refs = promql_references(expr)
        assert refs.metrics, f"{where}: no metric in {expr!r}"
        problems += [f"{where}: {p}" for p in label_problems(refs, series)]
    assert problems == []


def test_template_variables_query_defined_metrics_and_labels(dashboard: dict[str, Any]) -> None:
    series = defined_series()
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else ""
        query = query or variable["definition"]
        match = re.fullmatch(r"label_values\((\w+)\s*,\s*(\w+)\)", query)
        assert match is not None, f"${variable['name']}: unexpected query {query!r}"
        metric, label_name = match.groups()
        assert label_name in series[metric], f"${variable['name']}: {metric} has no {label_name}"
        assert variable["datasource"] == DATASOURCE


def test_the_dashboard_shows_every_metric(dashboard: dict[str, Any]) -> None:
    """A metric added to BulwarkMetrics needs a panel (or a reason in this test)."""
    used = {m for _, expr in queries(dashboard) for m in promql_references(expr).metrics}
    families = {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in defined_series()}
    shown = {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in used}
    assert families - shown == set()


def test_the_panels_the_operators_need_are_there(dashboard: dict[str, Any]) -> None:
    exprs = [expr for _, expr in queries(dashboard)]
    joined = "\n".join(exprs)
    assert "bulwark_breaker_state" in joined
    assert re.search(r"by \(target, outcome, category\) \(rate\(bulwark_llm_attempts_total", joined)
    assert any(
        "bulwark_llm_retries_total" in e and "bulwark_llm_attempts_total" in e for e in exprs
    ), "a retry ratio panel"
    for quantile in ("0.5", "0.99"):
        assert f"histogram_quantile({quantile}, sum by (target, le) " in joined
    assert re.search(r"by \(route, status\) \(rate\(bulwark_http_requests_total", joined)
    assert re.search(r"by \(type, status\) \(rate\(bulwark_tasks_total", joined)


@pytest.mark.skipif(
    shutil.which("promtool") is None and not os.environ.get("CI"),
    reason="promtool is not installed (apt-get install prometheus); CI installs it",
)
def test_promtool_parses_every_query(dashboard: dict[str, Any], tmp_path: Path) -> None:
    """Each query, with Grafana's variables filled in, as a recording rule promtool checks."""
    variables = {"$__rate_interval": "5m", "$__interval": "1m", "$target": ".*"}
    rules = []
    for number, (_, expr) in enumerate(queries(dashboard)):
        for name, value in variables.items():
            expr = expr.replace(name, value)
        rules.append({"record": f"dashboard:query:{number}", "expr": expr})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        ["promtool", "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
