"""Settings, read from the environment (``P2P_*``) once per process entry point."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

KIB = 1024
MIB = 1024 * KIB
_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class Settings(BaseSettings):
    """Every knob of the processor. ``markdown_table()`` renders the descriptions into
    docs/operations.md, and a test keeps the two equal."""

    model_config = SettingsConfigDict(env_prefix="P2P_", frozen=True, extra="ignore")

    database_url: str = Field(
        default="sqlite:///./p2p.db",
        description="The SQLite file (`sqlite:////abs/path.db` for an absolute path), or a"
        " PostgreSQL database: `postgresql://user:password@host:5432/db`.",
    )
    redis_url: str = Field(
        default="redis://localhost:6379/0",
        description="The broker of `p2p api` and `p2p worker`, and the API's rate limits.",
    )
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

    sqlite_synchronous: Literal["FULL", "EXTRA", "NORMAL"] = Field(
        default="FULL",
        description="`FULL` or `EXTRA`; `NORMAL` trades G5 durability on power loss for speed.",
    )
    sqlite_busy_timeout_ms: int = Field(
        default=5000, ge=0, description="How long a SQLite connection waits for the write lock."
    )
    postgres_pool_size: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="PostgreSQL connections each process keeps, at most.",
    )
    postgres_event_loop_pool_size: int = Field(
        default=4,
        ge=1,
        le=1000,
        description="PostgreSQL connections each API process keeps, at most, besides"
        " `P2P_POSTGRES_POOL_SIZE`, for the reads it runs on its event loop (the API-key lookup"
        " of every request): lookups wait for one of them, so at most this many per"
        " round trip to the server.",
    )

    redis_timeout_s: float = Field(
        default=0.5,
        gt=0,
        description="The API's Redis connect and command timeout: short, so that a submit"
        " still answers `202` quickly while Redis is away. Also bounds the worker's queue"
        " reads when its metrics are scraped.",
    )
    queue_name: str = Field(default="payments", description="The Dramatiq queue.")

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

    worker_threads: int = Field(
        default=1,
        ge=1,
        description="Worker threads per process: a group settles hundreds of payments per"
        " message, so more threads only wait for the write lock.",
    )
    worker_prefetch: int = Field(
        default=64,
        ge=1,
        description="Messages a worker process prefetches: Dramatiq's default (twice the threads)"
        " makes the consumer back off once full and caps a worker near 300 messages/s.",
    )
    worker_timeout_ms: int = Field(
        default=1000,
        ge=10,
        description="How long an idle worker thread waits for a message; also the worst"
        " case of a stop.",
    )
    retry_min_backoff_ms: int = Field(
        default=100, ge=1, description="First backoff of a message that raised."
    )
    retry_max_backoff_ms: int = Field(
        default=10_000, ge=1, description="Longest backoff of a message that raised."
    )
    retry_max: int = Field(
        default=20,
        ge=0,
        description="Retries of a message that raised (database locked, disk); business"
        " failures are outcomes and never retried.",
    )

    settle_group: int = Field(
        default=256,
        ge=1,
        le=10_000,
        description="Payments the worker settles per transaction.",
    )

    sweep_interval_s: float = Field(
        default=1.0, gt=0, description="How often the sweep looks for stuck payments."
    )
    sweep_grace_s: float = Field(
        default=2.0,
        ge=0,
        description="How long a payment may stay pending before the sweep settles it itself.",
    )
    sweep_batch: int = Field(
        default=100,
        ge=1,
        description="Payments settled per sweep pass; a full batch runs the next pass at once.",
    )
    hold_seconds: int = Field(
        default=7 * 24 * 3600,
        ge=60,
        le=2_592_000,
        description="How long an authorization (`capture: manual`) holds when the transfer"
        " names no `hold_seconds`.",
    )
    expiry_interval_s: float = Field(
        default=1.0,
        gt=0,
        description="How often the worker looks for authorizations past their `expires_at`.",
    )
    expiry_batch: int = Field(
        default=500,
        ge=1,
        description="Authorizations expired per pass; a full batch runs the next pass at once.",
    )
    heartbeat_path: str | None = Field(
        default=None,
        description="A file the sweep touches every pass, for a healthcheck. Under"
        " `--processes N` child `i` touches `<path>.i` and the supervisor gives the path"
        " the oldest of their times.",
    )

    worker_metrics_host: str = Field(
        default="127.0.0.1", description="The address `p2p worker` serves its metrics on."
    )
    worker_metrics_port: int = Field(
        default=9191,
        ge=0,
        le=65535,
        description="The port of `p2p worker`'s `/metrics`; `0` serves none. Under"
        " `--processes N`, child `i` serves on this port + `i`.",
    )

    reconcile_interval_s: float = Field(
        default=60.0,
        ge=0,
        description="How often the worker reconciles the next slice of the ledger; `0`"
        " turns reconciliation off.",
    )
    reconcile_batch: int = Field(
        default=1000,
        ge=1,
        description="Accounts, payments and deposits checked per reconciliation run (each kind).",
    )

    event_retention_days: int = Field(
        default=30,
        ge=1,
        le=3650,
        description="How long events stay in the feed (`GET /events`); the worker prunes"
        " older ones.",
    )
    event_prune_interval_s: float = Field(
        default=3600.0,
        ge=0,
        description="How often the worker prunes events past `P2P_EVENT_RETENTION_DAYS`;"
        " `0` never prunes.",
    )

    max_webhook_endpoints: int = Field(
        default=16,
        ge=1,
        le=1000,
        description="Webhook endpoints one user may have: one more is"
        " `409 too_many_webhook_endpoints`.",
    )
    webhook_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="Seconds an endpoint has to answer a delivery: a `2xx` within them is"
        " success, anything else a failed attempt.",
    )
    webhook_retry_schedule_s: str = Field(
        default="5,300,1800,7200,18000,36000,36000",
        description="Seconds before each retry of a failed delivery, comma-separated: one"
        " first attempt, then one retry per entry, then the delivery is `failed`.",
    )
    webhook_disable_after_s: float = Field(
        default=5 * 24 * 3600.0,
        gt=0,
        description="An endpoint whose every attempt has failed for this long is `disabled`.",
    )
    webhook_secret_overlap_s: float = Field(
        default=24 * 3600.0,
        ge=0,
        description="After a secret rotation, how long deliveries are also signed with the"
        " secret before.",
    )
    webhook_allow_http: bool = Field(
        default=False,
        description="Accept `http://` endpoint URLs (by default `https://` only): for a"
        " local receiver in development.",
    )
    webhook_allow_private: bool = Field(
        default=False,
        description="Accept endpoints whose host resolves to a loopback, private,"
        " link-local, multicast or reserved address (refused by default, when saved and"
        " at every delivery): for a local receiver in development.",
    )
    webhook_queue_name: str = Field(
        default="webhooks", description="The Dramatiq queue that wakes the webhook sender."
    )
    webhook_sweep_interval_s: float = Field(
        default=1.0,
        gt=0,
        description="How often the worker looks for webhook deliveries that are due.",
    )
    webhook_claim_s: float = Field(
        default=60.0,
        gt=0,
        description="How long a due delivery handed to the queue waits before the sweep"
        " hands it again: what a lost message or a killed worker delays a delivery by.",
    )
    webhook_concurrency: int = Field(
        default=16,
        ge=1,
        le=1000,
        description="Deliveries a worker process sends at once, all endpoints together.",
    )
    webhook_endpoint_concurrency: int = Field(
        default=2,
        ge=1,
        le=100,
        description="Deliveries a worker process sends at once to one endpoint: a slow"
        " endpoint holds no more threads than this.",
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="`DEBUG`, `INFO`, `WARNING` or `ERROR`."
    )
    log_format: Literal["json", "text"] | None = Field(
        default=None,
        description="`json` (one object per line) or `text`. Unset: `json` for `p2p api` and"
        " `p2p worker`, `text` for the commands people run (`dev`, `verify`, `bench`).",
    )

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

    @field_validator("webhook_retry_schedule_s")
    @classmethod
    def _retry_schedule(cls, schedule: str) -> str:
        _delays(schedule)
        return schedule

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
    def webhook_retry_delays(self) -> tuple[float, ...]:
        """``webhook_retry_schedule_s`` as seconds, in order."""
        return _delays(self.webhook_retry_schedule_s)

    @property
    def sqlite_path(self) -> str:
        """The file behind ``database_url``: ``sqlite:///./a.db`` is ``./a.db``."""
        return self.database_url.removeprefix("sqlite:///")


def _delays(schedule: str) -> tuple[float, ...]:
    """``"5,300"`` as ``(5.0, 300.0)``; ``""`` as no retry at all."""
    if not schedule.strip():
        return ()
    try:
        delays = tuple(float(part) for part in schedule.split(","))
    except ValueError:
        raise ValueError("must be seconds, comma-separated, e.g. 5,300,1800") from None
    if any(not 0 <= delay <= 30 * 24 * 3600 for delay in delays):
        raise ValueError("each delay must be 0 to 2592000 seconds (30 days)")
    return delays


def markdown_table() -> str:
    """The settings as the Markdown table of docs/operations.md: variable, default, meaning.

    Raises:
        ValueError: a field has no description.
    """
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    prefix = str(Settings.model_config.get("env_prefix", "")).upper()
    for name, field in Settings.model_fields.items():
        if not field.description:
            raise ValueError(f"Settings.{name} has no description: Field(description=...)")
        default = "unset" if field.default is None else f"`{field.default}`"
        meaning = field.description.replace("|", "\\|")
        lines.append(f"| `{prefix}{name.upper()}` | {default} | {meaning} |")
    return "\n".join(lines) + "\n"
