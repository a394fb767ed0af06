"""Capture what the processes would log: the finished JSON lines, and the raw records."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from shared.logs import JsonFormatter

Line = dict[str, Any]


class _Records(logging.Handler):
    def __init__(self, into: list[logging.LogRecord]) -> None:
        super().__init__(logging.NOTSET)
        self._into = into

    def emit(self, record: logging.LogRecord) -> None:
        self._into.append(record)


@dataclass
class Captured:
    stream: io.StringIO = field(default_factory=io.StringIO)
    records: list[logging.LogRecord] = field(default_factory=list)

    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[Line]:
        """Every line written, each parsed as the JSON object it must be."""
        parsed = []
        for raw in self.text().splitlines():
            line = json.loads(raw)
            assert isinstance(line, dict), raw
            parsed.append(line)
        return parsed

    def with_message(self, message: str) -> list[Line]:
        return [line for line in self.lines() if line["message"] == message]

    def raw_text(self) -> str:
        """Everything the records hold before any formatting or scrubbing: message,
        arguments, ``extra=`` fields and exception text."""
        parts = []
        for record in self.records:
            parts.append(record.getMessage())
            parts.extend(repr(value) for value in vars(record).values())
            if record.exc_info and record.exc_info[1] is not None:
                parts.append(logging.Formatter().formatException(record.exc_info))
        return "\n".join(parts)


@contextmanager
def capture_logs(level: int = logging.INFO) -> Iterator[Captured]:
    """Every record at ``level`` or above, from any logger, while the block runs."""
    captured = Captured()
    lines = logging.StreamHandler(captured.stream)
    lines.setFormatter(JsonFormatter())
    records = _Records(captured.records)
    root = logging.getLogger()
    previous = root.level
    root.addHandler(lines)
    root.addHandler(records)
    root.setLevel(level)
    try:
        yield captured
    finally:
        root.setLevel(previous)
        root.removeHandler(records)
        root.removeHandler(lines)
