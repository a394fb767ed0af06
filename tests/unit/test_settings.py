from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from shared.settings import Settings


@pytest.mark.parametrize(
    "url",
    ["mysql://x", "postgresql://", "sqlite://relative.db", "sqlite:///", "sqlite:///:memory:", ""],
)
def test_a_database_url_that_is_not_a_sqlite_file_or_postgres_server_is_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="database_url"):
        Settings(database_url=url)


@pytest.mark.parametrize("url", ["postgresql://p2p@db:5432/p2p", "postgres://p2p:pw@db/p2p"])
def test_a_postgres_url_selects_postgres(url: str) -> None:
    settings = Settings(database_url=url)
    assert settings.postgres_url == url
    assert Settings(database_url="sqlite:///./p2p.db").postgres_url is None


def test_sqlite_path_strips_the_url_prefix() -> None:
    assert Settings(database_url="sqlite:///./data/p2p.db").sqlite_path == "./data/p2p.db"
    assert Settings(database_url="sqlite:////var/lib/p2p.db").sqlite_path == "/var/lib/p2p.db"


def test_max_amount_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P2P_MAX_AMOUNT", "5000")

    assert Settings().max_amount == 5000


def test_a_max_amount_below_one_in_the_environment_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("P2P_MAX_AMOUNT", "0")

    with pytest.raises(ValidationError, match="max_amount"):
        Settings()


def test_the_defaults_are_the_documented_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("P2P_DATABASE_URL", "P2P_MAX_AMOUNT", "P2P_SQLITE_SYNCHRONOUS"):
        monkeypatch.delenv(name, raising=False)

    settings = Settings()

    assert settings.database_url == "sqlite:///./p2p.db"
    assert settings.max_amount == 10**12
    assert settings.sqlite_synchronous == "FULL"


def test_a_redis_url_of_another_scheme_is_refused() -> None:
    with pytest.raises(ValidationError, match="redis_url"):
        Settings(redis_url="http://localhost:6379")


def test_rate_limits_default_to_100_a_second_per_key(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("P2P_RATE_LIMIT_PER_S", "P2P_RATE_LIMIT_BURST"):
        monkeypatch.delenv(name, raising=False)

    settings = Settings()

    assert (settings.rate_limit_per_s, settings.rate_limit_burst) == (100.0, 100)


def test_the_worker_metrics_and_reconciliation_defaults_are_the_documented_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HOST", "PORT"):
        monkeypatch.delenv(f"P2P_WORKER_METRICS_{name}", raising=False)
    for name in ("INTERVAL_S", "BATCH"):
        monkeypatch.delenv(f"P2P_RECONCILE_{name}", raising=False)

    settings = Settings()

    assert (settings.worker_metrics_host, settings.worker_metrics_port) == ("127.0.0.1", 9191)
    assert (settings.reconcile_interval_s, settings.reconcile_batch) == (60.0, 1000)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("P2P_RATE_LIMIT_PER_S", "-1"),
        ("P2P_RATE_LIMIT_BURST", "-1"),
        ("P2P_RATE_LIMIT_BURST", "1.5"),
    ],
)
def test_a_negative_or_fractional_rate_limit_is_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)

    with pytest.raises(ValidationError, match=name.removeprefix("P2P_").lower()):
        Settings()


def test_a_fractional_rate_is_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P2P_RATE_LIMIT_PER_S", "0.5")

    assert Settings().rate_limit_per_s == 0.5


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("worker_metrics_port", -1),
        ("worker_metrics_port", 65536),
        ("worker_metrics_host", ""),
        ("worker_metrics_host", "0.0.0.0 "),
        ("reconcile_interval_s", -1),
        ("reconcile_batch", 0),
    ],
)
def test_bad_worker_metrics_and_reconciliation_settings_are_refused(
    name: str, value: object
) -> None:
    with pytest.raises(ValidationError, match=name):
        Settings.model_validate({name: value})


def test_a_header_field_bound_larger_than_the_head_bound_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("P2P_MAX_HEADER_BYTES", "65536")
    monkeypatch.setenv("P2P_MAX_HEAD_BYTES", "32768")

    with pytest.raises(ValidationError, match="max_header_bytes must not exceed max_head_bytes"):
        Settings()


def test_the_server_and_abuse_limits_have_sane_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("P2P_"):
            monkeypatch.delenv(name)

    settings = Settings()

    assert (settings.max_header_bytes, settings.max_head_bytes) == (8192, 32768)
    assert (settings.header_timeout_s, settings.body_timeout_s) == (10.0, 30.0)
    assert settings.max_api_keys == 10
    assert (settings.signup_rate_limit_per_hour, settings.signup_rate_limit_burst) == (10, 10)
