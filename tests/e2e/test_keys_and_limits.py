"""Two real ``p2p api`` processes on one database and one Redis: a key revoked through one
is refused by the other on the very next request, and they share one rate limit."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.harness import ApiClient, Stack, transfer

pytestmark = pytest.mark.postgresql  # runs on SQLite and on PostgreSQL


def test_a_key_revoked_through_one_api_is_refused_by_the_other_at_once(stack: Stack) -> None:
    first, second = stack.start_api(), stack.start_api()
    with ApiClient(first.url) as setup:
        ada = setup.customer()
    old = {"Authorization": f"Bearer {ada.api_key}"}
    with httpx.Client(base_url=first.url) as one, httpx.Client(base_url=second.url) as other:
        assert other.get("/accounts", headers=old).status_code == 200
        created = one.post("/users/me/api-keys", headers=old)
        assert created.status_code == 201, created.text
        new = {"Authorization": f"Bearer {created.json()['api_key']}"}
        key_id = "key_" + ada.api_key[4:20]

        assert one.delete(f"/users/me/api-keys/{key_id}", headers=new).status_code == 204
        refused = other.get("/accounts", headers=old)

        assert refused.status_code == 401, refused.text
        assert refused.json()["code"] == "unauthorized"
        assert other.get("/accounts", headers=new).status_code == 200


def test_two_apis_share_one_rate_limit_through_redis(stack: Stack) -> None:
    stack.overrides.update(P2P_RATE_LIMIT_PER_S="0.01", P2P_RATE_LIMIT_BURST="3")
    first, second = stack.start_api(), stack.start_api()
    with ApiClient(first.url) as setup:
        ada, bob = setup.customer(), setup.customer()  # sign-ups are not limited
    with httpx.Client(base_url=first.url) as one, httpx.Client(base_url=second.url) as other:

        def submit(client: httpx.Client) -> httpx.Response:
            fresh = transfer(ada, bob, 1)
            return client.post("/payments/transfer", json=fresh.body(), headers=fresh.headers())

        answers = [submit(one), submit(other), submit(one), submit(other), submit(one)]

        assert [a.status_code for a in answers] == [202, 202, 202, 429, 429]
        assert answers[2].headers["RateLimit"] == '"burst";r=0;t=300'
        assert answers[3].headers["Retry-After"] == "100"
        assert answers[3].headers["RateLimit-Policy"] == '"burst";q=3;w=300'
        assert answers[3].json()["code"] == "rate_limited"
    assert stack.database().scalar("SELECT count(*) FROM payments") == 3


def test_p2p_dev_limits_in_its_process_without_redis(dev_stack: Stack) -> None:
    dev_stack.overrides.update(P2P_RATE_LIMIT_PER_S="0.01", P2P_RATE_LIMIT_BURST="2")
    dev = dev_stack.start_dev()
    with ApiClient(dev.url) as setup:
        ada, bob = setup.customer(), setup.customer()
    with httpx.Client(base_url=dev.url) as client:
        answers = []
        for _ in range(3):
            request = transfer(ada, bob, 1)
            answers.append(
                client.post("/payments/transfer", json=request.body(), headers=request.headers())
            )

    assert [a.status_code for a in answers] == [202, 202, 429]
    assert answers[2].headers["Retry-After"] == "100"
    assert "Redis failed" not in dev.process.log_text()
