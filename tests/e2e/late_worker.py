"""``p2p worker`` whose clock runs ``--ahead`` seconds ahead of the machine's.

Started exactly like ``cli/main.py``'s ``worker`` command, except for the clock its
expiry pass (and webhook sender) reads: the holds authorized before it started come due
at once, instead of after the shortest hold the API takes. Run as
``python late_worker.py --ahead S`` with the usual ``P2P_*`` environment.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta

from shared.clock import utcnow
from shared.logs import configure_logging
from shared.settings import Settings
from worker.runtime import run_worker


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ahead", type=float, required=True, help="seconds")
    ahead = timedelta(seconds=parser.parse_args().ahead)

    def late() -> datetime:
        return utcnow() + ahead

    settings = Settings()
    configure_logging(settings.log_level, settings.log_format or "json")
    run_worker(settings, clock=late)


if __name__ == "__main__":
    main()
