"""How every ``p2p`` process logs: one JSON object per line, or text for a person.

Lines carry the fields of the work in hand (``request_id``, ``user_id``, ``payment_id``)
from a context variable, so code deep in a request or a message never passes them
around. Whatever the format, the finished line is scrubbed of anything shaped like an
API key or a Bearer credential: a secret that slipped into a message or an exception
still never reaches the log.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import IO, Any, Literal

LogFormat = Literal["json", "text"]

REDACTED = "[redacted]"

# An API key is p2p_ + 64 hex, a signing secret sks_ + 64 hex; 16 hex already name a key,
# so a truncated one goes too.
_SECRET = re.compile(r"(p2p_|sks_)[0-9a-f]{16,}|(bearer)(?:\s|\\[trn])+[^\s\"\\]+", re.IGNORECASE)

# What every LogRecord has; anything else on a record came from ``extra=``. uvicorn
# passes its message again with terminal colours as ``color_message``: not a field.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}

_fields: ContextVar[dict[str, str] | None] = ContextVar("p2p_log_fields", default=None)

Fields = Token[dict[str, str] | None]


def begin(**fields: str) -> Fields:
    """Start the fields of a unit of work (a request, a message); ``end`` restores."""
    return _fields.set(dict(fields))


def end(token: Fields) -> None:
    _fields.reset(token)


@contextmanager
def fields_of(**fields: str) -> Iterator[None]:
    """``begin`` … ``end`` around a block."""
    token = begin(**fields)
    try:
        yield
    finally:
        end(token)


def bind(**fields: str) -> None:
    """Add fields to every line logged from here to the end of the unit of work.

    Inside ``begin`` the fields are shared by the unit of work, including what it runs
    in worker threads (they copy the context, not the fields), so a route handler's
    ``bind`` shows on the request's access line too.
    """
    current = _fields.get()
    if current is None:
        _fields.set(dict(fields))
    else:
        current.update(fields)


def current_fields() -> Mapping[str, str]:
    return _fields.get() or {}


def redact(line: str) -> str:
    """``line`` with API keys, signing secrets and Bearer credentials replaced by
    ``[redacted]``."""
    return _SECRET.sub(_redacted, line)


def _redacted(match: re.Match[str]) -> str:
    return f"{match[2]} {REDACTED}" if match[2] else f"{match[1]}{REDACTED}"


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _structured(record: logging.LogRecord) -> dict[str, Any]:
    """The context's fields, then the record's ``extra=`` fields (which win)."""
    found: dict[str, Any] = dict(current_fields())
    for key, value in vars(record).items():
        if key not in _RECORD_ATTRIBUTES:
            found[key] = value
    return found


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", "pid", …fields, "exception"?}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            # Several processes (``--processes N``) may write one stream.
            "pid": record.process,
        }
        line.update(_structured(record))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return redact(json.dumps(line, default=str, separators=(",", ":")))


class TextFormatter(logging.Formatter):
    """``<ts> <LEVEL> <logger>: <message> key=value …``, a traceback below."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{_timestamp(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        for key, value in _structured(record).items():
            if value is None:
                continue
            shown = str(value)
            text += f" {key}={json.dumps(shown) if not shown or ' ' in shown else shown}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return redact(text)


def configure_logging(level: str, log_format: LogFormat, stream: IO[str] | None = None) -> None:
    """Send every logger (ours, uvicorn's, Dramatiq's, warnings, uncaught exceptions)
    through one handler writing ``log_format`` to ``stream`` (stderr)."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "dramatiq"):
        library = logging.getLogger(name)
        for old in list(library.handlers):
            library.removeHandler(old)
        library.propagate = True
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def _log_uncaught(kind: type[BaseException], error: BaseException, traceback: Any) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, error, traceback)
        return
    logging.getLogger("p2p").critical("uncaught exception", exc_info=(kind, error, traceback))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit or args.exc_value is None:
        return
    logging.getLogger("p2p").critical(
        "uncaught exception in thread %s",
        args.thread.name if args.thread is not None else "?",
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )
