"""The connection settings both clients take, turned into httpx's."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from p2p_client._exchange import USER_AGENT
from p2p_client.signing import RequestSigner, Target

API_KEY_PREFIX = "p2p_"
KEY_ID_CHARS = 16


def key_id_of(api_key: str) -> str:
    """The id (``key_…``) of an API key: its first 16 characters after ``p2p_``."""
    if not api_key.startswith(API_KEY_PREFIX):
        raise ValueError("an API key starts with p2p_")
    return "key_" + api_key[len(API_KEY_PREFIX) : len(API_KEY_PREFIX) + KEY_ID_CHARS]


def headers_of(api_key: str | None) -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if api_key is not None:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def signer_of(
    api_key: str | None,
    signing_secret: str | None,
    signing_key_id: str | None,
    sign_target: Target,
    wall_clock: Callable[[], float],
) -> httpx.Auth | None:
    """The request signer when a signing secret is given (the key id defaults to the API
    key's own), else ``None``."""
    if signing_secret is None:
        if signing_key_id is not None:
            raise ValueError("signing_key_id needs a signing_secret")
        return None
    if signing_key_id is None:
        if api_key is None:
            raise ValueError("signing needs signing_key_id or an api_key to take it from")
        signing_key_id = key_id_of(api_key)
    return RequestSigner(signing_key_id, signing_secret, target=sign_target, clock=wall_clock)
