"""The log formats, their context fields, and the scrubbing of secrets."""

from __future__ import annotations

import contextvars
import io
import json
import logging
import logging.config
import os
import sys
import threading
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError
from uvicorn.config import LOGGING_CONFIG

from shared import logs
from shared.logs import JsonFormatter, TextFormatter, configure_logging, redact
from shared.settings import Settings

KEY = "p2p_" + "0123456789abcdef" * 4


def _record(
    message: str = "hello",
    *args: object,
    level: int = logging.INFO,
    name: str = "p2p.test",
    **extra: object,
) -> logging.LogRecord:
    record = logging.LogRecord(name, level, __file__, 1, message, args or None, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def _json(record: logging.LogRecord) -> dict[str, object]:
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert isinstance(parsed, dict)
    return parsed


def test_a_json_line_has_the_time_in_utc_the_level_the_logger_and_the_message() -> None:
    line = _json(_record("settled %d payment(s)", 3, level=logging.WARNING))

    assert line["level"] == "warning"
    assert line["logger"] == "p2p.test"
    assert line["message"] == "settled 3 payment(s)"
    ts = line["ts"]
    assert isinstance(ts, str)
    assert ts.endswith("Z")
    moment = datetime.fromisoformat(ts)
    assert moment.tzinfo is not None
    assert moment.utcoffset() == UTC.utcoffset(None)
    assert abs((datetime.now(UTC) - moment).total_seconds()) < 60


def test_a_json_line_names_the_process_that_wrote_it() -> None:
    # Several processes (``--processes N``) write one stream: each line says whose it is.
    assert _json(_record())["pid"] == os.getpid()


def test_extra_fields_keep_their_json_types() -> None:
    line = _json(_record(status=202, duration_ms=1.25, route=None, payment_id="pay_1"))

    assert line["status"] == 202
    assert line["duration_ms"] == 1.25
    assert line["route"] is None
    assert line["payment_id"] == "pay_1"


def test_an_exception_stays_on_one_line_with_its_traceback() -> None:
    try:
        raise RuntimeError("disk on fire")
    except RuntimeError:
        record = _record(level=logging.ERROR)
        record.exc_info = sys.exc_info()

    line = _json(record)

    exception = line["exception"]
    assert isinstance(exception, str)
    assert "Traceback" in exception
    assert "RuntimeError: disk on fire" in exception


def test_context_fields_are_on_every_line_of_the_unit_of_work_and_gone_after() -> None:
    with logs.fields_of(request_id="req-1"):
        logs.bind(user_id="usr_1")
        inside = _json(_record())
    after = _json(_record())

    assert inside["request_id"] == "req-1"
    assert inside["user_id"] == "usr_1"
    assert "request_id" not in after
    assert "user_id" not in after


def test_a_field_bound_in_a_copied_context_shows_in_the_unit_of_work() -> None:
    """What a route running in a worker thread binds reaches the request's access line."""
    with logs.fields_of(request_id="req-1"):
        context = contextvars.copy_context()
        thread = threading.Thread(target=context.run, args=(logs.bind,), kwargs={"payment_id": "p"})
        thread.start()
        thread.join()
        line = _json(_record())

    assert line["payment_id"] == "p"


def test_units_of_work_nest_and_restore() -> None:
    with logs.fields_of(message_id="m1"):
        with logs.fields_of(request_id="r2"):
            inner = _json(_record())
        outer = _json(_record())

    assert "message_id" not in inner
    assert inner["request_id"] == "r2"
    assert outer["message_id"] == "m1"
    assert "request_id" not in outer


def test_a_field_passed_with_the_line_wins_over_the_context() -> None:
    with logs.fields_of(payment_id="pay_of_the_message"):
        line = _json(_record(payment_id="pay_settled_in_its_group"))

    assert line["payment_id"] == "pay_settled_in_its_group"


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        (f"key {KEY} leaked", "key p2p_[redacted] leaked"),
        (f"key {KEY.upper()}", "key P2P_[redacted]"),
        (f"truncated {KEY[:24]}", "truncated p2p_[redacted]"),
        (f"Authorization: Bearer {KEY}", "Authorization: Bearer [redacted]"),
        ("authorization: bearer some.jwt-token", "authorization: bearer [redacted]"),
        ("BEARER\tabc", "BEARER [redacted]"),
        ('{"h":"Bearer\\tabc"}', '{"h":"Bearer [redacted]"}'),
        (f"secret sks_{'4f' * 32}", "secret sks_[redacted]"),
        ("webhook whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw= end", "webhook whsec_[redacted] end"),
    ],
)
def test_redact_scrubs_api_keys_and_bearer_credentials(text: str, scrubbed: str) -> None:
    assert redact(text) == scrubbed


@pytest.mark.parametrize(
    "text",
    [
        "p2p_enqueue_failures_total",
        "pay_0123456789abcdef0123456789abcdef",
        "key_0123456789abcdef",
        "request_id=0123456789abcdef0123456789abcdef",
    ],
)
def test_redact_leaves_ids_and_metric_names_alone(text: str) -> None:
    assert redact(text) == text


def test_a_secret_in_a_message_a_field_or_a_traceback_never_reaches_the_line() -> None:
    try:
        raise ValueError(f"bad header Authorization: Bearer {KEY}")
    except ValueError:
        record = _record("saw %s", KEY, level=logging.ERROR, header=f"Bearer {KEY}")
        record.exc_info = sys.exc_info()

    for formatter in (JsonFormatter(), TextFormatter()):
        line = formatter.format(record)
        assert KEY not in line
        assert KEY[4:20] not in line
        assert "[redacted]" in line


def test_the_text_format_is_one_readable_line_with_its_fields() -> None:
    with logs.fields_of(request_id="req-1"):
        line = TextFormatter().format(_record("request", status=202, route="/payments/{id}"))

    assert " INFO " in line
    assert "p2p.test: request" in line
    assert "request_id=req-1" in line
    assert "status=202" in line
    assert "route=/payments/{id}" in line
    assert "\n" not in line


def test_uvicorn_and_dramatiq_log_through_the_one_json_handler() -> None:
    logging.config.dictConfig(LOGGING_CONFIG)  # what uvicorn would set up on its own
    stream = io.StringIO()

    configure_logging("INFO", "json", stream)
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
    logging.getLogger("dramatiq.worker.WorkerThread").warning("Retrying message")
    logging.getLogger("p2p.access").debug("filtered out by the level")

    lines = [json.loads(raw) for raw in stream.getvalue().splitlines()]
    assert [(line["logger"], line["message"]) for line in lines] == [
        ("uvicorn.error", "Started server process [42]"),
        ("dramatiq.worker.WorkerThread", "Retrying message"),
    ]


def test_an_uncaught_exception_in_a_thread_is_one_json_line() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream)

    def crash() -> None:
        raise RuntimeError("thread died")

    thread = threading.Thread(target=crash, name="doomed")
    thread.start()
    thread.join()

    [line] = [json.loads(raw) for raw in stream.getvalue().splitlines()]
    assert line["level"] == "critical"
    assert line["message"] == "uncaught exception in thread doomed"
    assert "RuntimeError: thread died" in line["exception"]


def test_the_text_format_is_chosen_by_its_name() -> None:
    stream = io.StringIO()
    configure_logging("WARNING", "text", stream)

    logging.getLogger("p2p").warning("careful", extra={"payment_id": "pay_1"})
    logging.getLogger("p2p").info("not shown")

    [line] = stream.getvalue().splitlines()
    assert line.endswith("WARNING p2p: careful payment_id=pay_1")


def test_the_log_format_setting_takes_json_or_text_only(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().log_format is None
    monkeypatch.setenv("P2P_LOG_FORMAT", "text")
    assert Settings().log_format == "text"
    monkeypatch.setenv("P2P_LOG_FORMAT", "xml")
    with pytest.raises(ValidationError, match="log_format"):
        Settings()
