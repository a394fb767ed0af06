"""Every metric and label the shipped alerts and dashboard query is one the real ``p2p
api`` and ``p2p worker`` export: scraped from the processes after real traffic, matched
against the queries' selectors by name, label and (for ``=``) value."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import promql_parser
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.queries import (
    PROMETHEUS,
    Query,
    Selector,
    alert_queries,
    groupings,
    panel_queries,
    selectors,
)
from tests.e2e.harness import ApiClient, Stack, free_port, poll, transfer

# job -> metric -> label -> values seen
Exported = dict[str, dict[str, dict[str, set[str]]]]
SCRAPE_TIMEOUT_S = 20.0
# Labels Prometheus adds to every series it scrapes (the target's), and its own series.
TARGET_LABELS = {"job", "instance"}
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


def _jobs() -> set[str]:
    jobs: set[str] = set()
    for path in Path(PROMETHEUS).glob("prometheus*.yml"):
        with path.open() as file:
            config: dict[str, Any] = yaml.safe_load(file)
        jobs.update(scrape["job_name"] for scrape in config["scrape_configs"])
    return jobs


def _scrape(url: str) -> dict[str, dict[str, set[str]]]:
    response = httpx.get(url, timeout=5)
    assert response.status_code == 200, response.text
    metrics: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = metrics[sample.name]
            for label, value in sample.labels.items():
                labels[label].add(value)
    return metrics


def _exported(stack: Stack) -> Exported:
    """Both processes' metrics, after traffic that touches submit, settle and a refusal."""
    worker_port = free_port()
    stack.overrides["P2P_WORKER_METRICS_PORT"] = str(worker_port)
    stack.start_worker(wait_started=True)
    api = stack.start_api()
    with ApiClient(api.url) as client:
        payer, payee = client.customer(deposit=1_000), client.customer()
        paid = client.accepted(transfer(payer, payee, 100))["id"]
        refused = client.accepted(transfer(payer, payee, 10_000))["id"]
        client.wait_all_final([(payer, paid), (payer, refused)])
        missing = httpx.get(f"{api.url}/payments/pay_missing", headers=payer.headers)
        assert missing.status_code == 404

    def reconciled() -> dict[str, dict[str, set[str]]] | None:
        metrics = _scrape(f"http://127.0.0.1:{worker_port}/metrics")
        return metrics if "p2p_reconciliation_last_run_timestamp_seconds" in metrics else None

    worker = poll(reconciled, timeout=SCRAPE_TIMEOUT_S, what="the worker's first reconciliation")
    return {"p2p-api": _scrape(f"{api.url}/metrics"), "p2p-worker": worker}


def _problems(query: Query, exported: Exported, jobs: set[str]) -> list[str]:
    expr = promql_parser.parse(query.expr)
    problems: list[str] = []
    for selector in selectors(expr):
        problems.extend(_selector_problems(selector, exported, jobs))
    for grouping in groupings(expr):
        for selector in grouping.selectors:
            known = _labels_of(selector, exported)
            problems.extend(
                f"groups by {label!r}, which {selector.name} does not have"
                for label in grouping.labels
                if known is not None and label not in known
            )
    return [f"{query.where}: {query.expr!r}: {problem}" for problem in problems]


def _selector_problems(selector: Selector, exported: Exported, jobs: set[str]) -> list[str]:
    job_values = [value for label, op, value in selector.matchers if label == "job" and op == "="]
    for label, op, value in selector.matchers:
        if label == "job":
            if op == "=" and value not in jobs:
                return [f"job {value!r} is not scraped (jobs: {sorted(jobs)})"]
            if op == "=~" and not any(re.fullmatch(value, job) for job in jobs):
                return [f"job =~ {value!r} matches no scraped job"]
    if selector.name in PROMETHEUS_SERIES:
        return []
    from_jobs = [job for job in (job_values or exported) if selector.name in exported[job]]
    if not from_jobs:
        where = job_values or sorted(exported)
        return [f"{selector.name} is exported by none of {where}"]
    problems: list[str] = []
    for label, op, value in selector.matchers:
        if label in TARGET_LABELS:
            continue
        seen = set().union(*(exported[job][selector.name].get(label, set()) for job in from_jobs))
        if not seen:
            problems.append(f"{selector.name} has no label {label!r}")
        elif op == "=" and value not in seen:
            problems.append(f"{selector.name}{{{label}={value!r}}}: only {sorted(seen)} exported")
    return problems


def _labels_of(selector: Selector, exported: Exported) -> set[str] | None:
    if selector.name in PROMETHEUS_SERIES:
        return set(TARGET_LABELS)
    found = [exported[job][selector.name] for job in exported if selector.name in exported[job]]
    return {label for labels in found for label in labels} | TARGET_LABELS


def test_every_metric_an_alert_or_panel_queries_is_exported_with_its_labels(
    stack: Stack,
) -> None:
    exported = _exported(stack)
    jobs = _jobs()
    assert jobs == {"p2p-api", "p2p-worker"}
    queries = alert_queries() + panel_queries()
    problems = [problem for query in queries for problem in _problems(query, exported, jobs)]
    assert problems == []
    used = {s.name for query in queries for s in selectors(promql_parser.parse(query.expr))}
    # The queries read both processes, the database-wide gauges and the money checks.
    assert {"p2p_http_requests_total", "p2p_reconciliation_violations", "up"} <= used


def test_the_check_itself_catches_a_misspelt_metric_a_wrong_label_and_an_unknown_value(
    stack: Stack,
) -> None:
    exported = _exported(stack)
    jobs = _jobs()
    wrong = [
        Query("misspelt", "sum(rate(p2p_payment_settled_total[5m]))"),
        Query("wrong job", 'p2p_payments_pending{job="p2p-api"}'),
        Query("no such label", 'p2p_queue_messages{status="ready"}'),
        Query("no such value", 'p2p_queue_messages{state="stuck"}'),
        Query("no such grouping", "sum by (route) (p2p_payments_pending)"),
        Query("unscraped job", 'up{job="p2p-workers"}'),
    ]
    for query in wrong:
        assert _problems(query, exported, jobs), f"{query.where} went unnoticed"
