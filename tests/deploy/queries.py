"""The PromQL the shipped alerts and dashboard run, and what each query reads: metric
names, label matchers, and the labels it groups by."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
# Grafana fills these in before a query reaches Prometheus.
_GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


@dataclass(frozen=True)
class Query:
    where: str
    """The alert or the dashboard panel it is from."""
    expr: str


@dataclass(frozen=True)
class Selector:
    """``name{label op "value", …}`` in a query."""

    name: str
    matchers: tuple[tuple[str, str, str], ...]
    """``(label, op, value)``, op one of ``=``, ``!=``, ``=~``, ``!~``."""


@dataclass(frozen=True)
class Grouping:
    """``by (labels)`` or ``on (labels)`` over the selectors beneath it."""

    labels: tuple[str, ...]
    selectors: tuple[Selector, ...]


def alert_queries() -> list[Query]:
    with (PROMETHEUS / "alerts.yml").open() as file:
        groups: list[dict[str, Any]] = yaml.safe_load(file)["groups"]
    return [
        Query(f"alert {rule.get('alert') or rule['record']}", str(rule["expr"]))
        for group in groups
        for rule in group["rules"]
    ]


def panel_queries() -> list[Query]:
    found: list[Query] = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard: dict[str, Any] = json.loads(path.read_text())
        for panel in _panels(dashboard["panels"]):
            for target in panel.get("targets", []):
                expr = str(target["expr"])
                for variable, value in _GRAFANA_VARIABLES.items():
                    expr = expr.replace(variable, value)
                found.append(Query(f"{path.name} panel {panel['title']!r}", expr))
    return found


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    return [item for panel in panels for item in [panel, *_panels(panel.get("panels", []))]]


_OPS = (
    (promql_parser.MatchOp.Equal, "="),
    (promql_parser.MatchOp.NotEqual, "!="),
    (promql_parser.MatchOp.Re, "=~"),
    (promql_parser.MatchOp.NotRe, "!~"),
)


def _op(matcher: promql_parser.Matcher) -> str:
    # The parser's MatchOp compares equal but does not hash: no dict.
    return next(text for op, text in _OPS if matcher.op == op)


def selectors(expr: promql_parser.Expr) -> list[Selector]:
    found: list[Selector] = []

    def visit(node: promql_parser.Expr) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name, f"a selector without a metric name: {node}"
            matchers = tuple((m.name, _op(m), m.value) for m in node.matchers.matchers)
            found.append(Selector(node.name, matchers))
        return True

    promql_parser.walk(expr, visit)
    return found


def groupings(expr: promql_parser.Expr) -> list[Grouping]:
    """Each ``by (…)`` of an aggregation and ``on (…)`` of a binary operation."""
    found: list[Grouping] = []

    def visit(node: promql_parser.Expr) -> bool:
        if (
            isinstance(node, promql_parser.AggregateExpr)
            and node.modifier is not None
            and node.modifier.type == promql_parser.AggModifierType.By
        ):
            found.append(Grouping(tuple(node.modifier.labels), tuple(selectors(node.expr))))
        if isinstance(node, promql_parser.BinaryExpr) and node.modifier is not None:
            matching = node.modifier.matching
            if matching is not None and matching.type == promql_parser.LabelModifierType.Include:
                under = (*selectors(node.lhs), *selectors(node.rhs))
                found.append(Grouping(tuple(matching.labels), under))
        return True

    promql_parser.walk(expr, visit)
    return found
