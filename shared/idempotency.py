"""Request fingerprints: the same key with another body must be told apart."""

from __future__ import annotations

import hashlib
import json


def fingerprint(**fields: object) -> str:
    """A stable digest of a request's meaning (its parsed fields, not its bytes)."""
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()
