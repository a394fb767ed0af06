"""``argparse`` types shared by ``p2p``'s commands and ``p2p bench``."""

from __future__ import annotations

import argparse


def positive_count(text: str) -> int:
    """A whole number of at least 1."""
    count = int(text)
    if count < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return count
