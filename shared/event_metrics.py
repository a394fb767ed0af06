"""``p2p_events_written_total``: the events this process has recorded, by type. The API
and the worker each expose it (``p2p dev``, one process, on the worker's side only)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from shared.enums import EventType
from shared.events import written_counts


class EventsWritten(Collector):
    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "p2p_events_written",
            "Events recorded, by type (each user an event is told to counts once).",
            labels=["type"],
        )
        counts = written_counts()
        # Every type from the start, so that rate() and alerts see the first event.
        for event_type in EventType:
            family.add_metric([event_type.value], counts.get(event_type, 0))
        yield family
