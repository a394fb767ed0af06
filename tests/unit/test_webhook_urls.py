"""The webhook URL rules and address checks, without I/O (the resolver is the test's)."""

from __future__ import annotations

import ipaddress
import re

import pytest

from shared.errors import WebhookUrlNotAllowed
from shared.webhook_urls import Resolver, UrlPolicy, check_url, parse_url, refusal

STRICT = UrlPolicy()
RELAXED = UrlPolicy(allow_http=True, allow_private=True)


def resolving_to(*addresses: str) -> Resolver:
    return lambda host, port: list(addresses)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("10.0.0.1", "private"),
        ("192.168.0.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "not global"),
        ("93.184.215.14", None),
        ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", None),
    ],
)
def test_each_address_is_judged_by_what_it_is(address: str, reason: str | None) -> None:
    assert refusal(ipaddress.ip_address(address)) == reason


def test_a_name_with_one_private_address_among_public_ones_is_refused() -> None:
    with pytest.raises(WebhookUrlNotAllowed, match=re.escape("10.0.0.7, a private address")):
        check_url("https://hooks.example/x", STRICT, resolving_to("93.184.215.14", "10.0.0.7"))


def test_a_name_resolving_to_public_addresses_only_is_accepted_with_every_address() -> None:
    target = check_url(
        "https://hooks.example:8443/x?y=1", STRICT, resolving_to("93.184.215.14", "2606:2800::1")
    )

    assert [str(a) for a in target.addresses] == ["93.184.215.14", "2606:2800::1"]
    assert (target.url.host, target.url.port, target.url.netloc) == (
        "hooks.example",
        8443,
        "hooks.example:8443",
    )


def test_a_name_that_does_not_resolve_is_refused() -> None:
    def nowhere(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    with pytest.raises(WebhookUrlNotAllowed, match="does not resolve"):
        check_url("https://hooks.example/x", STRICT, nowhere)


def test_the_relaxed_policy_takes_http_and_private_addresses() -> None:
    target = check_url("http://hooks.example/x", RELAXED, resolving_to("127.0.0.1"))

    assert target.url.port == 80
    assert [str(a) for a in target.addresses] == ["127.0.0.1"]


def test_credentials_are_refused_even_under_the_relaxed_policy() -> None:
    with pytest.raises(WebhookUrlNotAllowed, match="credentials"):
        parse_url("http://me:secret@127.0.0.1/x", RELAXED)
