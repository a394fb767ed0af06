"""What settling does for batches: an atomic batch is claimed whole, and a batch is
marked settled by the transaction that settles the last of its pending payments.

A group of payments is the oldest pending ones, up to a count, so its boundary can fall
inside a batch. For an independent batch that changes nothing: each payment is judged
against the accounts as the payments before it left them, in this group or an earlier
one. An atomic batch is judged all together (``shared.engine``), so a group that
reaches into one takes all of its pending payments, however many that adds.

On PostgreSQL several workers claim payments at once (each skips the rows another
holds), so two of them could each hold part of one atomic batch: the batch's row is
locked to claim it, by one of them only (the others skip it and leave its payments
alone), which then waits for the rest of its payments. A batch's row is locked again,
in id order, before the settling transaction looks at whether any of its payments is
still pending: so two transactions settling the last payments of one independent batch
at once do not each see the other's as pending, and one of them marks it settled.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence

from shared.store import Connection, Row, chunks, marks


def claim_whole_batches(conn: Connection, claimed: Sequence[Row]) -> tuple[list[Row], set[str]]:
    """The claimed pending payments (oldest first), each atomic batch among them with
    all of its pending payments, together at the place of its first; and the ids of
    those atomic batches. An atomic batch that another transaction claimed is left out
    whole."""
    batch_ids = sorted({row["batch_id"] for row in claimed if row["batch_id"] is not None})
    if not batch_ids:
        return list(claimed), set()
    atomic = _ids(conn, "SELECT id FROM batches WHERE id IN ({}) AND atomic", batch_ids)
    if not atomic:
        return list(claimed), set()
    claim = conn.engine.select_to_claim("SELECT id FROM batches WHERE id IN ({}) ORDER BY id")
    mine = _ids(conn, claim, sorted(atomic))
    whole: defaultdict[str, list[Row]] = defaultdict(list)
    for chunk in chunks(sorted(mine)):
        select = conn.engine.select_for_update(
            "SELECT * FROM payments WHERE status = 'pending'"
            f" AND batch_id IN ({marks(len(chunk))}) ORDER BY seq"
        )
        for row in conn.execute(select, chunk):
            whole[row["batch_id"]].append(row)
    taken: list[Row] = []
    for row in claimed:
        batch_id = row["batch_id"]
        if batch_id not in atomic:
            taken.append(row)
        elif batch_id in whole:
            taken.extend(whole.pop(batch_id))
    return taken, mine


def mark_settled(conn: Connection, batch_ids: Collection[str], now: str) -> None:
    """Set ``settled_at`` of those of these batches none of whose payments is pending
    any more (``now``: when the transaction settled them)."""
    ordered = sorted(batch_ids)
    for chunk in chunks(ordered):
        conn.execute(
            conn.engine.select_for_update(
                f"SELECT id FROM batches WHERE id IN ({marks(len(chunk))}) ORDER BY id"
            ),
            chunk,
        ).fetchall()
    for chunk in chunks(ordered):
        conn.execute(
            f"UPDATE batches SET settled_at = ? WHERE id IN ({marks(len(chunk))})"
            " AND settled_at IS NULL AND NOT EXISTS (SELECT 1 FROM payments"
            " WHERE payments.batch_id = batches.id AND payments.status = 'pending')",
            [now, *chunk],
        )


def _ids(conn: Connection, select: str, ids: Sequence[str]) -> set[str]:
    """The ids ``select`` (with ``{}`` where the placeholders of ``ids`` go) returns."""
    found: set[str] = set()
    for chunk in chunks(ids):
        found |= {row["id"] for row in conn.execute(select.format(marks(len(chunk))), chunk)}
    return found
