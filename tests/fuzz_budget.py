"""How hard the property-based tests try: CI's budget, or a longer campaign on demand.

``FUZZ_SCALE=n`` (a whole number, default 1) multiplies every example budget;
``FUZZ_SEED=n`` explores from another seed instead of the fixed one CI uses.
"""

from __future__ import annotations

import os


def _whole(name: str, default: int | None) -> int | None:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit():
        raise ValueError(f"{name} must be a whole number, not {text!r}")
    return int(text)


SCALE = _whole("FUZZ_SCALE", 1) or 1
SEED = _whole("FUZZ_SEED", None)
"""``None``: derandomized, the same examples on every run."""


def examples(ci_budget: int) -> int:
    return ci_budget * SCALE
