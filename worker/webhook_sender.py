"""Sends webhook deliveries: the sweep that hands out due ones, and one attempt.

Every ``P2P_WEBHOOK_SWEEP_INTERVAL_S`` the sweep claims the due deliveries
(``shared.webhook_attempts.claim_due``) and sends a ``deliver_webhook`` message for
each on the webhook queue; the actor hands it to the ``Dispatcher``, whose threads make
the attempt: check the URL and its addresses again, sign, ``POST``, record. When the
broker cannot take the messages, the sweep hands the deliveries to this process's
dispatcher itself: the queue only spreads the work over the workers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from shared import logs
from shared.clock import utcnow
from shared.enums import DeliveryStatus
from shared.errors import WebhookUrlNotAllowed
from shared.settings import Settings
from shared.store import Database
from shared.webhook_attempts import (
    Claimed,
    Outcome,
    Outgoing,
    Recorded,
    claim_due,
    record_outcome,
    start_attempt,
)
from shared.webhook_signing import signed_headers
from shared.webhook_urls import Resolver, UrlPolicy, check_target, parse_url, resolve
from worker.webhook_http import post, tls_context

log = logging.getLogger(__name__)

SWEEP_BATCH = 500
"""Deliveries one sweep pass hands out at most; a full batch runs the next pass at once."""

Clock = Callable[[], datetime]
Observer = Callable[[Outgoing, Outcome, Recorded, datetime], None]


class WebhookSender:
    """One attempt of a delivery, from start to recorded outcome."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        clock: Clock = utcnow,
        resolver: Resolver = resolve,
        observe: Observer | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._resolver = resolver
        self._observe = observe
        self._policy = UrlPolicy(settings.webhook_allow_http, settings.webhook_allow_private)
        self._timeout_s = settings.webhook_timeout_s
        self._delays = settings.webhook_retry_delays
        self._disable_after = timedelta(seconds=settings.webhook_disable_after_s)
        # Long enough for the call and its recording; a worker killed during the call
        # leaves the delivery due again once this has passed.
        self._hold = timedelta(seconds=settings.webhook_timeout_s + settings.webhook_claim_s)
        self._tls = tls_context()

    def attempt(self, claimed: Claimed) -> Recorded | None:
        """Make the attempt ``claimed`` names, unless it was made already; returns what
        it recorded (``None``: nothing was sent, or a later attempt overtook it)."""
        outgoing = start_attempt(self._db, claimed, now=self._clock(), hold=self._hold)
        if outgoing is None:
            return None
        with logs.fields_of(
            delivery_id=outgoing.delivery_id,
            event_id=outgoing.event_id,
            webhook_endpoint_id=outgoing.endpoint_id,
        ):
            outcome = self._send(outgoing)
            now = self._clock()
            recorded = record_outcome(
                self._db,
                outgoing,
                outcome,
                now=now,
                delays=self._delays,
                disable_after=self._disable_after,
            )
            self._log(outgoing, outcome, recorded)
        if recorded is not None and self._observe is not None:
            self._observe(outgoing, outcome, recorded, now)
        return recorded

    def _send(self, outgoing: Outgoing) -> Outcome:
        try:
            # Again at every attempt: the name may resolve elsewhere since it was saved.
            target = check_target(
                parse_url(outgoing.url, self._policy), self._policy, self._resolver
            )
        except WebhookUrlNotAllowed as refused:
            return Outcome(False, None, refused.detail)
        headers = signed_headers(
            outgoing.secrets, outgoing.event_id, int(time.time()), outgoing.body
        )
        answer = post(target, outgoing.body, headers, timeout_s=self._timeout_s, tls=self._tls)
        return Outcome(answer.succeeded, answer.status_code, answer.error)

    @staticmethod
    def _log(outgoing: Outgoing, outcome: Outcome, recorded: Recorded | None) -> None:
        extra = {
            "event_type": outgoing.event_type,
            "attempt": outgoing.attempt,
            "status_code": outcome.status_code,
        }
        if recorded is None:
            log.info("webhook attempt %d overtaken; not recorded", outgoing.attempt, extra=extra)
        elif recorded.status is DeliveryStatus.SUCCEEDED:
            log.info("webhook delivered (attempt %d)", outgoing.attempt, extra=extra)
        elif recorded.status is DeliveryStatus.PENDING:
            log.warning(
                "webhook attempt %d failed (%s); next at %s",
                outgoing.attempt,
                outcome.error,
                recorded.next_attempt_at,
                extra=extra,
            )
        else:
            log.warning(
                "webhook delivery failed after %d attempts (%s)",
                outgoing.attempt,
                outcome.error,
                extra=extra,
            )
        if recorded is not None and recorded.endpoint_disabled:
            log.warning(
                "webhook endpoint disabled: every attempt has failed for too long", extra=extra
            )


class WebhookSweep:
    """A daemon thread handing out due deliveries every interval."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        hand_out: Callable[[Sequence[Claimed]], None],
        *,
        clock: Clock = utcnow,
    ) -> None:
        self._db = db
        self._hand_out = hand_out
        self._clock = clock
        self._lease = timedelta(seconds=settings.webhook_claim_s)
        self._interval = settings.webhook_sweep_interval_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="p2p-webhook-sweep", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()

    def sweep_once(self) -> int:
        """Claim the due deliveries and hand them out; returns how many."""
        claimed = claim_due(self._db, now=self._clock(), lease=self._lease, limit=SWEEP_BATCH)
        if claimed:
            self._hand_out(claimed)
        return len(claimed)

    def _run(self) -> None:
        while True:
            try:
                found = self.sweep_once()
            except Exception:
                log.exception("webhook sweep failed; trying again next pass")
                found = 0
            if self._stopping.wait(0 if found == SWEEP_BATCH else self._interval):
                return
