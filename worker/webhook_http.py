"""One webhook ``POST``, to addresses checked beforehand (``shared.webhook_urls``).

The connection goes to the checked ``Target.addresses`` themselves, never to a second
lookup of the name: the URL's host goes into the ``Host`` header and, for ``https``,
into TLS's SNI and the certificate check. Redirects are not followed, proxies from the
environment are not used (they would connect elsewhere), and at most ``KEPT_BYTES`` of
the answer is read.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass

import certifi
import httpx

from shared.webhook_urls import Target, is_address

KEPT_BYTES = 1024
USER_AGENT = "p2p-webhooks/1"


@dataclass(frozen=True, slots=True)
class Answer:
    """What one attempt got: a status (``None`` without an answer), the first
    ``KEPT_BYTES`` of the body, and why it failed when it did."""

    status_code: int | None
    body: bytes
    error: str | None

    @property
    def succeeded(self) -> bool:
        return self.error is None and self.status_code is not None and 200 <= self.status_code < 300


def tls_context() -> ssl.SSLContext:
    """The certificate check of every delivery: one context, built once per sender."""
    return ssl.create_default_context(cafile=certifi.where())


def post(
    target: Target,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout_s: float,
    tls: ssl.SSLContext,
) -> Answer:
    """``POST`` ``body`` to ``target``, to its next address only when one refuses the
    connection; an answer after ``timeout_s`` is a failure too."""
    url = httpx.URL(target.url.url)
    extensions: dict[str, str] = {}
    if url.scheme == "https" and not is_address(target.url.host):
        extensions["sni_hostname"] = target.url.host
    sent = {
        **headers,
        "Host": target.url.netloc,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }
    started = time.monotonic()
    deadline = started + timeout_s
    answer = Answer(None, b"", "no address to connect to")
    with httpx.Client(
        verify=tls, trust_env=False, follow_redirects=False, timeout=timeout_s
    ) as client:
        for address in target.addresses:
            pinned = url.copy_with(host=str(address))
            try:
                with client.stream(
                    "POST", pinned, content=body, headers=sent, extensions=extensions
                ) as response:
                    answered_after = time.monotonic() - started
                    kept = _first_bytes(response, deadline)
            except httpx.ConnectError as error:
                answer = Answer(None, b"", f"cannot connect to {address}: {error}"[:KEPT_BYTES])
                continue
            except httpx.TimeoutException:
                return Answer(None, b"", f"no answer within {timeout_s:g} s")
            except httpx.HTTPError as error:
                return Answer(None, b"", f"{type(error).__name__}: {error}"[:KEPT_BYTES])
            return _judged(response.status_code, kept, answered_after, timeout_s)
    return answer


def _judged(status_code: int, kept: bytes, answered_after: float, timeout_s: float) -> Answer:
    if answered_after > timeout_s:
        return Answer(status_code, kept, f"answered after {answered_after:.1f} s")
    if not 200 <= status_code < 300:
        text = kept.decode("utf-8", errors="replace")
        return Answer(status_code, kept, f"HTTP {status_code}: {text}".strip())
    return Answer(status_code, kept, None)


def _first_bytes(response: httpx.Response, deadline: float) -> bytes:
    """At most ``KEPT_BYTES`` of the body, and nothing after the deadline."""
    kept = b""
    try:
        for chunk in response.iter_raw():
            kept += chunk
            if len(kept) >= KEPT_BYTES or time.monotonic() > deadline:
                break
    except httpx.HTTPError:
        pass  # the status is what counts; the body is only kept to show
    return kept[:KEPT_BYTES]
