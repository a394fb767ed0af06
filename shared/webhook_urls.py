"""Where a webhook may be sent: the URL rules, and the addresses its host may resolve to.

The service calls URLs its users choose, from inside its own network: unchecked, that is
server-side request forgery (an endpoint at ``http://169.254.169.254/`` reads the cloud's
metadata service, one at ``http://10.0.0.5:6379/`` talks to Redis). So an endpoint is
``https`` unless ``P2P_WEBHOOK_ALLOW_HTTP``, carries no credentials, and its host must
resolve only to public addresses unless ``P2P_WEBHOOK_ALLOW_PRIVATE``. That is checked
when the URL is saved and again before every delivery, whose connection then goes to
the addresses checked (``Target.addresses``): a name that resolves elsewhere a moment later
(DNS rebinding) changes nothing.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from shared.errors import WebhookUrlNotAllowed

MAX_URL_LENGTH = 2048

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]
"""``(host, port)`` to the addresses it resolves to, as text; raises ``OSError`` when it
does not resolve."""


@dataclass(frozen=True, slots=True)
class UrlPolicy:
    allow_http: bool = False
    allow_private: bool = False


@dataclass(frozen=True, slots=True)
class WebhookUrl:
    """A URL that passed the rules that need no lookup."""

    url: str
    scheme: str
    host: str
    """The host name or address, without brackets."""
    port: int
    netloc: str
    """``host[:port]`` as the URL writes it: the ``Host`` header."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where one delivery connects: ``addresses``, all checked, for ``url``'s host (the
    next one only when the one before refused the connection)."""

    url: WebhookUrl
    addresses: tuple[Address, ...]


def resolve(host: str, port: int) -> list[str]:
    """The system resolver's addresses for ``host``, every family."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in found))


def parse_url(url: str, policy: UrlPolicy) -> WebhookUrl:
    """``url``, if the rules that need no lookup allow it.

    Raises:
        WebhookUrlNotAllowed: too long, not absolute, a scheme other than ``https`` (or
            ``http`` when allowed), credentials, no host, or a bad port.
    """
    if len(url) > MAX_URL_LENGTH:
        raise WebhookUrlNotAllowed(f"a webhook URL is at most {MAX_URL_LENGTH} characters")
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in url):
        raise WebhookUrlNotAllowed("a webhook URL holds no spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise WebhookUrlNotAllowed(f"not a URL: {error}") from None
    schemes = ("https", "http") if policy.allow_http else ("https",)
    if parts.scheme not in schemes:
        allowed = " or ".join(f"{scheme}://" for scheme in schemes)
        raise WebhookUrlNotAllowed(f"a webhook URL starts with {allowed}")
    if parts.username is not None or parts.password is not None:
        raise WebhookUrlNotAllowed("a webhook URL carries no credentials (user:password@)")
    host = parts.hostname
    if not host:
        raise WebhookUrlNotAllowed("a webhook URL names a host")
    if parts.fragment:
        raise WebhookUrlNotAllowed("a webhook URL has no #fragment: it is never sent")
    if port == 0:
        raise WebhookUrlNotAllowed("port 0 cannot be called")
    return WebhookUrl(
        url=url,
        scheme=parts.scheme,
        host=host,
        port=port or (443 if parts.scheme == "https" else 80),
        netloc=_netloc(parts),
    )


def refusal(address: Address) -> str | None:
    """Why the service must not connect to ``address``, or ``None`` when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return refusal(address.ipv4_mapped)
    for reason, matches in (
        ("loopback", address.is_loopback),
        ("unspecified", address.is_unspecified),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        # Shared (100.64/10), documentation, 6to4 and the like: nobody's public host.
        ("not global", not address.is_global),
    ):
        if matches:
            return reason
    return None


def check_target(
    webhook_url: WebhookUrl, policy: UrlPolicy, resolver: Resolver = resolve
) -> Target:
    """Where to connect for ``webhook_url``: the addresses its host resolves to, once
    every one is an address the service may reach.

    Raises:
        WebhookUrlNotAllowed: the host does not resolve, or one of its addresses is
            refused (a name with one private address among public ones is refused too:
            which one a client picks is not ours to know).
    """
    try:
        texts = [webhook_url.host] if is_address(webhook_url.host) else []
        texts = texts or list(resolver(webhook_url.host, webhook_url.port))
        addresses = [ipaddress.ip_address(text.partition("%")[0]) for text in texts]
    except (OSError, UnicodeError, ValueError) as error:
        raise WebhookUrlNotAllowed(f"{webhook_url.host} does not resolve ({error})") from None
    if not addresses:
        raise WebhookUrlNotAllowed(f"{webhook_url.host} does not resolve")
    if not policy.allow_private:
        for address in addresses:
            reason = refusal(address)
            if reason is not None:
                raise WebhookUrlNotAllowed(
                    f"{webhook_url.host} resolves to {address}, a {reason} address,"
                    " which webhooks may not reach"
                )
    return Target(webhook_url, tuple(addresses))


def check_url(url: str, policy: UrlPolicy, resolver: Resolver = resolve) -> Target:
    """``parse_url`` and ``check_target`` in one: what saving an endpoint checks.

    Raises:
        WebhookUrlNotAllowed: see ``parse_url`` and ``check_target``.
    """
    return check_target(parse_url(url, policy), policy, resolver)


def is_address(host: str) -> bool:
    """Whether ``host`` is an IP address rather than a name."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _netloc(parts: SplitResult) -> str:
    # Without credentials (there are none) and as written: what Host must say.
    return parts.netloc.rpartition("@")[2]
