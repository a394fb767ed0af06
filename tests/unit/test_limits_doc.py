"""docs/limits.md names every setting that bounds what a client may do."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.settings import Settings

LIMITS = Path(__file__).parents[2] / "docs" / "limits.md"
CLIENT_LIMITS = [
    "max_amount",
    "max_body_bytes",
    "max_header_bytes",
    "max_head_bytes",
    "header_timeout_s",
    "body_timeout_s",
    "rate_limit_per_s",
    "rate_limit_burst",
    "max_api_keys",
    "signup_rate_limit_per_hour",
    "signup_rate_limit_burst",
]


@pytest.mark.parametrize("name", CLIENT_LIMITS)
def test_docs_limits_names_each_client_limit_setting(name: str) -> None:
    assert name in Settings.model_fields, f"{name} is no longer a setting"
    assert f"`P2P_{name.upper()}`" in LIMITS.read_text()
