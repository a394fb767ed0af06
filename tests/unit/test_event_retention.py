"""Retention: events older than ``P2P_EVENT_RETENTION_DAYS`` go, oldest first, in
batches; the feed loses a prefix and never an event between two it keeps."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.clock import to_text, utcnow
from shared.errors import InvalidCursor
from shared.event_feed import prune_events, read_events
from shared.settings import Settings
from shared.store import Database
from tests.unit.helpers import Customer, count_rows, fund
from worker.pruner import EventPruner


def _age(db: Database, days: float) -> None:
    """Make every event so far look ``days`` old."""
    db.connection().execute(
        "UPDATE events SET created_at = ?", (to_text(utcnow() - timedelta(days=days)),)
    )


def test_events_past_the_retention_are_pruned_in_batches_and_newer_ones_kept(
    db: Database, alice: Customer
) -> None:
    for amount in range(1, 6):
        fund(db, alice.main, amount)
    _age(db, 31)
    kept = [fund(db, alice.main, amount).id for amount in (7, 8)]
    old = count_rows(db, "events") - 2

    pruned = prune_events(db, older_than=timedelta(days=30), batch=2)

    assert pruned == old
    page = read_events(db, alice.user.id, after=None, limit=100)
    assert [event.object["id"] for event in page.data] == kept


def test_an_old_event_behind_a_newer_one_waits_for_it_to_go(db: Database, alice: Customer) -> None:
    fund(db, alice.main, 1)
    fund(db, alice.main, 2)
    # The newest event looks old, the one before it does not: a prefix goes, or nothing.
    db.connection().execute(
        "UPDATE events SET created_at = ? WHERE seq = (SELECT max(seq) FROM events)",
        (to_text(utcnow() - timedelta(days=40)),),
    )
    before = count_rows(db, "events")

    assert prune_events(db, older_than=timedelta(days=30)) == 0
    assert count_rows(db, "events") == before


def test_a_cursor_whose_event_was_pruned_is_refused(db: Database, alice: Customer) -> None:
    fund(db, alice.main, 1)
    cursor = read_events(db, alice.user.id, after=None, limit=100).next_cursor
    _age(db, 31)
    prune_events(db, older_than=timedelta(days=30))

    with pytest.raises(InvalidCursor):
        read_events(db, alice.user.id, after=cursor, limit=100)


def test_the_worker_prunes_by_the_setting(db: Database, alice: Customer, database_url: str) -> None:
    fund(db, alice.main, 1)
    _age(db, 3)
    old = count_rows(db, "events")
    fund(db, alice.main, 2)
    settings = Settings(database_url=database_url, event_retention_days=2)

    assert EventPruner(db, settings).prune_once() == old
    assert count_rows(db, "events") == 1
