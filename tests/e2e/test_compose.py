"""The compose stack's wiring: no Docker engine runs here, so each service's own command,
environment and healthcheck are started on loopback against a real Redis (and, for the
PostgreSQL override, a fresh database on the machine's PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bench.stack import free_ports
from tests.conftest import RedisServer
from tests.e2e.harness import (
    P2P,
    ApiClient,
    Process,
    free_port,
    poll,
    transfer,
)

ROOT = Path(__file__).resolve().parents[2]
Service = dict[str, Any]


COMPOSE_POSTGRES_URL = "postgresql://p2p:p2p@postgres:5432/p2p"


def _compose_file(name: str) -> dict[str, Any]:
    with (ROOT / name).open() as file:
        compose: dict[str, Any] = yaml.safe_load(file)
    return compose


@pytest.fixture(scope="module")
def services() -> dict[str, Service]:
    """What ``docker compose up`` starts: the services of no profile (``--profile
    observability`` adds prometheus and grafana: tests/deploy/)."""
    found: dict[str, Service] = _compose_file("docker-compose.yml")["services"]
    return {name: service for name, service in found.items() if "profiles" not in service}


@pytest.fixture(scope="module")
def postgres_services(services: dict[str, Service]) -> dict[str, Service]:
    """``docker compose -f docker-compose.yml -f docker-compose.postgres.yml``'s services."""
    profiled = {
        name
        for name, service in _compose_file("docker-compose.yml")["services"].items()
        if "profiles" in service
    }
    override: dict[str, Service] = {
        name: service
        for name, service in _compose_file("docker-compose.postgres.yml")["services"].items()
        if name not in profiled
    }
    return {
        name: _merged(services.get(name, {}), override.get(name, {}))
        for name in services | override
    }


def _merged(base: Service, override: Service) -> Service:
    """Compose's merge, for the keys these files use: mappings merge, ``ports`` and
    ``volumes`` add up, anything else (``command``, ``image``) is replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merged[key] = base[key] | value
        elif key in ("ports", "volumes"):
            merged[key] = [*base.get(key, []), *(v for v in value if v not in base.get(key, []))]
        else:
            merged[key] = value
    return merged


def test_compose_runs_redis_api_and_worker_from_one_image_on_one_volume(
    services: dict[str, Service],
) -> None:
    assert set(services) == {"redis", "api", "worker"}
    for name in ("api", "worker"):
        service = services[name]
        assert service["build"] == "."
        assert service["command"][0] == "p2p"
        assert "p2p-data:/data" in service["volumes"]
        assert service["environment"]["P2P_DATABASE_URL"] == "sqlite:////data/p2p.db"
        assert service["environment"]["P2P_REDIS_URL"] == "redis://redis:6379/0"
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["api"]["command"][:2] == ["p2p", "api"]
    assert services["worker"]["command"] == ["p2p", "worker"]
    worker_env = services["worker"]["environment"]
    assert worker_env["P2P_WORKER_METRICS_HOST"] == "0.0.0.0"
    assert services["worker"]["ports"] == [f"{worker_env['P2P_WORKER_METRICS_PORT']}:9191"]
    for service in services.values():
        assert service["restart"] == "unless-stopped"
        assert service["healthcheck"]["test"][0] == "CMD"
    assert (ROOT / "Dockerfile").read_text().count("pip install") == 1


def test_the_image_holds_every_package_the_p2p_command_is_built_from() -> None:
    with (ROOT / "pyproject.toml").open("rb") as file:
        patterns = tomllib.load(file)["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.removesuffix("*") for pattern in patterns}
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = {line.split()[1] for line in dockerfile.splitlines() if line.startswith("COPY ")}
    assert packages <= copied, f"not copied into the image: {sorted(packages - copied)}"


def test_the_compose_commands_settle_a_payment_and_pass_their_healthchecks(
    services: dict[str, Service], redis_server: RedisServer, tmp_path: Path
) -> None:
    redis_server.flushall()
    port = free_port()
    metrics_port = free_port()
    places = {
        "redis://redis:6379/0": redis_server.url,
        "/data/p2p.db": str(tmp_path / "p2p.db"),
        "/tmp/p2p-worker.heartbeat": str(tmp_path / "worker.heartbeat"),
        "0.0.0.0": "127.0.0.1",
        "8000": str(port),
        "9191": str(metrics_port),
    }
    argv, env = _on_loopback(places)

    processes = [
        Process(
            name, argv(services[name]["command"]), env(services[name]), tmp_path / f"{name}.log"
        )
        for name in ("worker", "api")
    ]
    try:
        poll(lambda: _healthy(port) or None, timeout=20, what="the compose api to answer")
        with ApiClient(f"http://127.0.0.1:{port}") as client:
            payer, payee = client.customer(deposit=1_000), client.customer()
            payment = client.accepted(transfer(payer, payee, 400))
            assert client.wait_final(payer, payment["id"])["status"] == "completed"
        worker_metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        assert 'p2p_payments_settled_total{code="",outcome="completed"} 1.0' in worker_metrics

        for name in ("api", "worker"):
            check = argv(services[name]["healthcheck"]["test"][1:])
            check_env = env(services[name])
            poll(
                lambda: _passes(check, check_env),  # noqa: B023 (polled right here)
                timeout=20,
                what=f"the {name} healthcheck to pass",
            )
    finally:
        for process in processes:
            process.close()


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _metrics(port: int) -> str | None:
    """The text a worker process's metrics endpoint serves, or ``None`` while it does not."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).text
    except httpx.TransportError:
        return None


def _passes(command: list[str], env: dict[str, str]) -> bool | None:
    done = subprocess.run(command, env=env, capture_output=True, timeout=30, check=False)
    return True if done.returncode == 0 else None


def test_the_postgres_override_adds_a_healthy_postgres_and_points_api_and_worker_at_it(
    postgres_services: dict[str, Service],
) -> None:
    assert set(postgres_services) == {"redis", "postgres", "api", "worker"}
    postgres = postgres_services["postgres"]
    assert postgres["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert postgres["volumes"] == ["postgres-data:/var/lib/postgresql/data"]
    assert postgres["restart"] == "unless-stopped"
    assert "postgres-data" in _compose_file("docker-compose.postgres.yml")["volumes"]
    for name in ("api", "worker"):
        service = postgres_services[name]
        assert service["environment"]["P2P_DATABASE_URL"] == COMPOSE_POSTGRES_URL
        assert service["environment"]["P2P_REDIS_URL"] == "redis://redis:6379/0"
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert "--processes" in service["command"]
    worker = postgres_services["worker"]
    processes = int(worker["command"][worker["command"].index("--processes") + 1])
    published = _published_ports(worker["ports"])
    assert {9191 + index for index in range(processes)} <= published


def _published_ports(mappings: list[str]) -> set[int]:
    """The host ports of ``"9191:9191"`` and ``"9192-9194:9192-9194"``."""
    found: set[int] = set()
    for mapping in mappings:
        host = mapping.split(":")[0]
        first, _, last = host.partition("-")
        found.update(range(int(first), int(last or first) + 1))
    return found


@pytest.mark.postgresql_only
def test_the_postgres_override_commands_settle_payments_with_several_processes(
    postgres_services: dict[str, Service],
    redis_server: RedisServer,
    tmp_path: Path,
    database_url: str,
) -> None:
    redis_server.flushall()
    worker_command = postgres_services["worker"]["command"]
    processes = int(worker_command[worker_command.index("--processes") + 1])
    port, metrics_port = free_port(), free_ports(processes)
    places = {
        COMPOSE_POSTGRES_URL: database_url,
        "redis://redis:6379/0": redis_server.url,
        "/tmp/p2p-worker.heartbeat": str(tmp_path / "worker.heartbeat"),
        "0.0.0.0": "127.0.0.1",
        "8000": str(port),
        "9191": str(metrics_port),
    }
    argv, env = _on_loopback(places)

    started = {
        name: Process(
            name,
            argv(postgres_services[name]["command"]),
            env(postgres_services[name]),
            tmp_path / f"{name}.log",
        )
        for name in ("worker", "api")
    }
    try:
        poll(lambda: _healthy(port) or None, timeout=20, what="the compose api to answer")
        # Every worker process up before the payments go in: on a busy machine the first
        # ones to start may settle them all before the last one serves its metrics.
        for index in range(processes):
            poll(
                lambda: _metrics(metrics_port + index),  # noqa: B023 (polled right here)
                timeout=30,
                what=f"worker process {index} to serve its metrics",
            )
        with ApiClient(f"http://127.0.0.1:{port}") as client:
            payer, payee = client.customer(deposit=10_000), client.customer()
            ids = [client.accepted(transfer(payer, payee, 10))["id"] for _ in range(20)]
            for payment_id in ids:
                assert client.wait_final(payer, payment_id)["status"] == "completed"
        completed = 0.0
        for index in range(processes):
            text = httpx.get(f"http://127.0.0.1:{metrics_port + index}/metrics", timeout=5).text
            for line in text.splitlines():
                if line.startswith('p2p_payments_settled_total{code="",outcome="completed"}'):
                    completed += float(line.split()[1])
        assert completed == len(ids)

        for name in ("postgres", "api", "worker"):
            check = argv(postgres_services[name]["healthcheck"]["test"][1:])
            check_env = env(postgres_services[name])
            poll(
                lambda: _passes(check, check_env),  # noqa: B023 (polled right here)
                timeout=20,
                what=f"the {name} healthcheck to pass",
            )
        for process in started.values():
            assert process.terminate(timeout=20) == 0
    finally:
        for process in started.values():
            process.close()


def _on_loopback(
    places: dict[str, str],
) -> tuple[Callable[[list[str]], list[str]], Callable[[Service], dict[str, str]]]:
    """A service's command and environment, with compose's names and paths replaced by
    ``places`` (the loopback ports, the test's files and databases)."""

    def here(text: str) -> str:
        for there, local in places.items():
            text = text.replace(there, local)
        return text

    def argv(words: list[str]) -> list[str]:
        programs = {"p2p": P2P, "python": sys.executable}
        return [programs.get(words[0], words[0]), *(here(word) for word in words[1:])]

    def env(service: Service) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("P2P_")}
        return base | {name: here(str(value)) for name, value in service["environment"].items()}

    return argv, env
