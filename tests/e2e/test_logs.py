"""Real ``p2p api`` and ``p2p worker`` processes write one JSON object per line, with ids."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.harness import SETTLE_TIMEOUT_S, Process, Stack, poll

pytestmark = pytest.mark.postgresql  # runs on SQLite and on PostgreSQL

Line = dict[str, Any]
FIELDS = {"ts", "level", "logger", "message"}


def _lines(process: Process) -> list[Line]:
    """Every line the process wrote, stdout and stderr, each a JSON object."""
    parsed = []
    for raw in process.log_text().splitlines():
        line = json.loads(raw)
        assert isinstance(line, dict), raw
        assert line.keys() >= FIELDS, raw
        parsed.append(line)
    return parsed


def _sign_up(http: httpx.Client) -> tuple[str, dict[str, str]]:
    email = f"logs-{uuid.uuid4().hex}@example.com"
    response = http.post("/users", json={"name": "Logs", "email": email})
    assert response.status_code == 201, response.text
    user: Line = response.json()
    return user["id"], {"Authorization": f"Bearer {user['api_key']}"}


def _account(http: httpx.Client, auth: dict[str, str]) -> str:
    response = http.post("/accounts", json={"currency": "EUR"}, headers=auth)
    assert response.status_code == 201, response.text
    account_id: str = response.json()["id"]
    return account_id


def test_api_and_worker_log_json_lines_with_request_user_and_payment_ids(stack: Stack) -> None:
    api = stack.start_api()
    worker = stack.start_worker(wait_started=True)
    with httpx.Client(base_url=api.url, timeout=30) as http:
        user_id, auth = _sign_up(http)
        _, other_auth = _sign_up(http)
        sender, receiver = _account(http, auth), _account(http, other_auth)
        funded = http.post(
            f"/accounts/{sender}/deposits",
            json={"amount": 1_000},
            headers={**auth, "Idempotency-Key": "fund"},
        )
        assert funded.status_code == 201, funded.text
        submitted = http.post(
            "/payments/transfer",
            json={
                "from_account_id": sender,
                "to_account_id": receiver,
                "amount": 250,
                "currency": "EUR",
            },
            headers={**auth, "Idempotency-Key": "pay-1", "X-Request-ID": "e2e-submit"},
        )
        assert submitted.status_code == 202, submitted.text
        assert submitted.headers["X-Request-ID"] == "e2e-submit"
        payment_id: str = submitted.json()["id"]
        settled = http.get(f"/payments/{payment_id}", params={"wait": 10}, headers=auth)
        assert settled.json()["status"] == "completed", settled.text
        refused = http.get(
            "/accounts", headers={"Authorization": "Bearer p2p_" + "0" * 64, "X-Request-ID": "bad"}
        )
        assert refused.status_code == 401
        assert refused.headers["X-Request-ID"] == "bad"
    keys = [auth["Authorization"], other_auth["Authorization"]]

    def settlement_logged() -> Line | None:
        for line in _lines(worker):
            if line["message"] == "payment settled" and line["payment_id"] == payment_id:
                return line
        return None

    settlement = poll(settlement_logged, timeout=SETTLE_TIMEOUT_S, what="the settlement line")
    assert api.process.terminate(timeout=30) == 0
    assert worker.terminate(timeout=30) == 0

    api_lines, worker_lines = _lines(api.process), _lines(worker)
    assert settlement["status"] == "completed"
    assert settlement["level"] == "info"
    assert any(line["message"].startswith("worker started") for line in worker_lines)
    assert any(line["logger"].startswith("dramatiq") for line in worker_lines)
    started = [line for line in api_lines if line["message"].startswith("Uvicorn running on")]
    assert [line["logger"] for line in started] == ["uvicorn.error"]
    assert "color_message" not in started[0]
    access = {line["request_id"]: line for line in api_lines if line["logger"] == "p2p.access"}
    submit = access["e2e-submit"]
    assert submit["method"] == "POST"
    assert submit["route"] == "/payments/transfer"
    assert submit["status"] == 202
    assert submit["user_id"] == user_id
    assert submit["payment_id"] == payment_id
    assert submit["duration_ms"] >= 0
    assert (access["bad"]["status"], access["bad"].get("user_id")) == (401, None)
    for process in (api.process, worker):
        text = process.log_text()
        for key in keys:
            assert key.removeprefix("Bearer ") not in text
        assert "Bearer" not in text
        assert "p2p_" + "0" * 64 not in text


def test_dev_logs_text_for_a_person_unless_told_json(dev_stack: Stack) -> None:
    dev = dev_stack.start_dev()
    dev_stack.overrides["P2P_LOG_FORMAT"] = "json"
    dev_json = dev_stack.start_dev()
    for api in (dev, dev_json):
        with httpx.Client(base_url=api.url, timeout=30) as http:
            assert http.get("/healthz", headers={"X-Request-ID": "dev-1"}).status_code == 200
        assert api.process.terminate(timeout=30) == 0

    text = dev.process.log_text()
    assert " INFO    p2p.access: request request_id=dev-1 method=GET route=/healthz" in text
    assert not any(raw.startswith("{") for raw in text.splitlines())
    [access] = [line for line in _lines(dev_json.process) if line.get("request_id") == "dev-1"]
    assert (access["logger"], access["status"]) == ("p2p.access", 200)
