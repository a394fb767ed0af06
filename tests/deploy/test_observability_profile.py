"""The observability profile's wiring, read from the files as Docker Compose, Prometheus
and Grafana would read them (no Docker engine runs here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from tests.deploy.queries import DASHBOARDS, PROMETHEUS, ROOT, alert_queries, panel_queries

Service = dict[str, Any]
PROFILE = "observability"


def _yaml(path: Path) -> dict[str, Any]:
    with path.open() as file:
        loaded: dict[str, Any] = yaml.safe_load(file)
    return loaded


def _services(*files: str) -> dict[str, Service]:
    """The services of ``docker compose -f …`` with these files: mappings merge, anything
    else (``command``) the later file replaces (what these files need of Compose's merge)."""
    merged: dict[str, Service] = {}
    for name in files:
        for service, definition in _yaml(ROOT / name)["services"].items():
            base = merged.setdefault(service, {})
            for key, value in definition.items():
                if isinstance(value, dict) and isinstance(base.get(key), dict):
                    base[key] = base[key] | value
                else:
                    base[key] = value
    return merged


def _flag(command: list[str], name: str) -> str:
    return next(arg.split("=", 1)[1] for arg in command if arg.startswith(f"{name}="))


def _bind(service: Service, target: str) -> Path:
    """The repository folder a service mounts at ``target``."""
    for volume in service["volumes"]:
        source, _, rest = volume.partition(":")
        if rest.split(":")[0] == target:
            assert source.startswith("./"), volume
            return ROOT / str(source)
    raise AssertionError(f"nothing mounted at {target}: {service['volumes']}")


def _targets(config: dict[str, Any], job: str) -> list[str]:
    (scrape,) = [s for s in config["scrape_configs"] if s["job_name"] == job]
    return [target for static in scrape["static_configs"] for target in static["targets"]]


def test_prometheus_and_grafana_start_only_with_the_observability_profile() -> None:
    services = _services("docker-compose.yml")
    profiled = {name for name, service in services.items() if "profiles" in service}
    assert profiled == {"prometheus", "grafana"}
    for name in profiled:
        assert services[name]["profiles"] == [PROFILE]
        assert services[name]["restart"] == "unless-stopped"
    assert set(services["prometheus"]["depends_on"]) == {"api", "worker"}
    assert services["grafana"]["depends_on"] == ["prometheus"]


@pytest.mark.parametrize(
    ("files", "worker_processes"),
    [(["docker-compose.yml"], 1), (["docker-compose.yml", "docker-compose.postgres.yml"], 4)],
)
def test_prometheus_scrapes_the_api_and_every_worker_process_compose_runs(
    files: list[str], worker_processes: int
) -> None:
    services = _services(*files)
    prometheus = services["prometheus"]
    folder = _bind(prometheus, "/etc/prometheus")
    assert folder == PROMETHEUS
    config_path = _flag(prometheus["command"], "--config.file")
    config = _yaml(folder / Path(config_path).relative_to("/etc/prometheus"))
    assert config["rule_files"] == ["alerts.yml"]

    api_command = services["api"]["command"]
    api_port = api_command[api_command.index("--port") + 1]
    assert _targets(config, "p2p-api") == [f"api:{api_port}"]

    worker = services["worker"]
    assert worker["command"][:2] == ["p2p", "worker"]
    if worker_processes > 1:
        assert worker["command"][2:] == ["--processes", str(worker_processes)]
    first = int(worker["environment"]["P2P_WORKER_METRICS_PORT"])
    assert worker["environment"]["P2P_WORKER_METRICS_HOST"] == "0.0.0.0"
    assert _targets(config, "p2p-worker") == [
        f"worker:{first + i}" for i in range(worker_processes)
    ]


def test_grafana_provisions_the_prometheus_datasource_and_the_dashboards() -> None:
    grafana = _services("docker-compose.yml")["grafana"]
    provisioning = _bind(grafana, "/etc/grafana/provisioning")
    (datasource,) = _yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    (provider,) = _yaml(provisioning / "dashboards" / "p2p.yml")["providers"]
    mounted = provider["options"]["path"]
    assert _bind(grafana, mounted) == DASHBOARDS
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (DASHBOARDS / Path(home).relative_to(mounted)).exists()

    for path in DASHBOARDS.glob("*.json"):
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
                for target in panel["targets"]:
                    assert target["datasource"]["uid"] == datasource["uid"], panel["title"]


def test_the_dashboard_answers_the_on_call_questions() -> None:
    dashboard = json.loads((DASHBOARDS / "p2p.json").read_text())
    rows = [panel["title"] for panel in dashboard["panels"] if panel["type"] == "row"]
    assert rows == [
        "Is money adding up?",
        "Is the backlog draining?",
        "How fast are submit and settle?",
        "Errors",
    ]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_every_alert_and_panel_query_is_valid_promql() -> None:
    queries = alert_queries() + panel_queries()
    assert len(queries) > 20
    for query in queries:
        try:
            promql_parser.parse(query.expr)
        except Exception as error:  # the parser raises a plain ValueError/RuntimeError
            pytest.fail(f"{query.where}: {query.expr!r} does not parse: {error}")


def test_every_alert_says_how_bad_and_what_it_means() -> None:
    groups = _yaml(PROMETHEUS / "alerts.yml")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert {rule["alert"] for rule in rules} >= {
        "P2PLedgerDoesNotHold",
        "P2POldestPendingPaymentTooOld",
        "P2PEnqueueFailures",
        "P2PDeadLettersGrowing",
        "P2PWorkerDown",
        "P2PWorkerMetricsAbsent",
        "P2PServerErrors",
    }
    for rule in rules:
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]
