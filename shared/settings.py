"""Settings, read from the environment (``P2P_*``) once per process entry point."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

KIB = 1024
MIB = 1024 * KIB
_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class Settings(BaseSettings):
    """Every knob of the processor; each one is documented in the README."""

    model_config = SettingsConfigDict(env_prefix="P2P_", frozen=True, extra="ignore")

    database_url: str = "sqlite:///./p2p.db"
    redis_url: str = "redis://localhost:6379/0"
    max_amount: int = Field(
        default=10**12,
        ge=1,
        le=2**62,
        description="The largest `amount` a transfer or deposit may carry, in minor units:"
        " past it, `422 validation_error`.",
    )
    max_body_bytes: int = Field(
        default=MIB,
        ge=1024,
        description="The largest request body, declared or streamed: past it,"
        " `413 payload_too_large`.",
    )

    # What the HTTP server itself refuses, before the application sees a request.
    max_header_bytes: int = Field(
        default=8 * KIB,
        ge=256,
        le=MIB,
        description="The largest header field (name and value) a request may carry:"
        " past it, `431`.",
    )
    max_head_bytes: int = Field(
        default=32 * KIB,
        ge=1024,
        le=16 * MIB,
        description="The largest request head (request line and every header field"
        " together): past it, `431`.",
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="Seconds a connection has to send a whole request head, from its"
        " first byte (or from connecting): then `408` and the connection is closed.",
    )
    body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Seconds a request has to send its whole body once its head is in:"
        " then `408` and the connection is closed.",
    )

    sqlite_synchronous: Literal["FULL", "EXTRA", "NORMAL"] = "FULL"
    sqlite_busy_timeout_ms: int = Field(default=5000, ge=0)
    # Connections each process keeps to PostgreSQL, at most (P2P_DATABASE_URL=postgresql://).
    postgres_pool_size: int = Field(default=10, ge=1, le=1000)

    # Short, so that a submit still answers 202 quickly while Redis is away.
    redis_timeout_s: float = Field(default=0.5, gt=0)
    queue_name: str = "payments"

    # Per user (all of its API keys together), on transfers and deposits: a sustained
    # rate and the burst allowed on top of it (GCRA). Either one 0 turns the limit off.
    rate_limit_per_s: float = Field(
        default=100.0,
        ge=0,
        le=1_000_000,
        description="Transfers and deposits per second one user may make (all of its API"
        " keys together), sustained; `0` turns the limit off.",
    )
    rate_limit_burst: int = Field(
        default=100,
        ge=0,
        le=1_000_000,
        description="Transfers and deposits one user may make at once, from idle;"
        " `0` turns the limit off.",
    )

    max_api_keys: int = Field(
        default=10,
        ge=1,
        le=10_000,
        description="Live (not revoked) API keys one user may hold: one more is"
        " `409 too_many_api_keys`.",
    )
    signup_rate_limit_per_hour: float = Field(
        default=10.0,
        ge=0,
        le=1_000_000_000,
        description="Sign-ups (`POST /users`) per hour from one client address,"
        " sustained; `0` turns the limit off.",
    )
    signup_rate_limit_burst: int = Field(
        default=10,
        ge=0,
        le=1_000_000_000,
        description="Sign-ups one client address may make at once, from idle;"
        " `0` turns the limit off.",
    )

    worker_threads: int = Field(default=1, ge=1)
    worker_prefetch: int = Field(default=64, ge=1)
    # How long idle worker threads wait for a message; also the worst case of a stop.
    worker_timeout_ms: int = Field(default=1000, ge=10)
    retry_min_backoff_ms: int = Field(default=100, ge=1)
    retry_max_backoff_ms: int = Field(default=10_000, ge=1)
    retry_max: int = Field(default=20, ge=0)

    # Payments settled per transaction by the worker.
    settle_group: int = Field(default=256, ge=1, le=10_000)

    sweep_interval_s: float = Field(default=1.0, gt=0)
    sweep_grace_s: float = Field(default=2.0, ge=0)
    sweep_batch: int = Field(default=100, ge=1)
    heartbeat_path: str | None = None

    # The worker's Prometheus endpoint; port 0 serves none.
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = Field(default=9191, ge=0, le=65535)

    # The rolling audit in the worker: every interval, the next batch of accounts,
    # payments and deposits; interval 0 turns it off.
    reconcile_interval_s: float = Field(default=60.0, ge=0)
    reconcile_batch: int = Field(default=1000, ge=1)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Unset: JSON lines for `p2p api` and `p2p worker`, text for the commands people run.
    log_format: Literal["json", "text"] | None = None

    @model_validator(mode="after")
    def _head_holds_a_header(self) -> Settings:
        if self.max_header_bytes > self.max_head_bytes:
            raise ValueError("max_header_bytes must not exceed max_head_bytes")
        return self

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, url: str) -> str:
        if url.startswith(_POSTGRES_SCHEMES):
            if not url.partition("://")[2]:
                raise ValueError("must name a server, e.g. postgresql://p2p@localhost:5432/p2p")
            return url
        if not url.startswith("sqlite:///") or url in ("sqlite:///", "sqlite:///:memory:"):
            raise ValueError(
                "must be sqlite:///<path to a file>, e.g. sqlite:///./p2p.db,"
                " or postgresql://user@host:port/database"
            )
        return url

    @field_validator("worker_metrics_host")
    @classmethod
    def _host(cls, host: str) -> str:
        if not host or any(char.isspace() for char in host):
            raise ValueError("must be a host name or address to bind, e.g. 0.0.0.0")
        return host

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, url: str) -> str:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis:// URL, e.g. redis://localhost:6379/0")
        return url

    @property
    def postgres_url(self) -> str | None:
        """``database_url`` when it names a PostgreSQL server, else ``None``."""
        return self.database_url if self.database_url.startswith(_POSTGRES_SCHEMES) else None

    @property
    def sqlite_path(self) -> str:
        """The file behind ``database_url``: ``sqlite:///./a.db`` is ``./a.db``."""
        return self.database_url.removeprefix("sqlite:///")
