"""Schemathesis against the live ``/openapi.json`` of a real ``p2p dev`` process.

Every operation the document lists is fuzzed, new routes included, with valid and invalid
requests; every answer must be no ``5xx``, documented (status, content type, headers) and
match its documented schema. Every request carries a signed-up caller's key (the
ignored_auth check retries without it). In valid requests, ids, currencies, amounts and
Idempotency-Keys are now and then swapped for real accounts and payments, USD,
affordable sums and fresh keys, so that generated requests also reach the happy path;
invalid ones are sent as generated. Schemathesis's own pytest loader (``from_fixture``)
does not run on pytest 9.2, so each operation is a subtest with a ``@given`` of its own.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import CheckFunction
from schemathesis.core import NOT_SET
from schemathesis.core.parameters import ParameterLocation
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from tests import fuzz_budget
from tests.e2e.harness import ApiClient, Stack, transfer

pytestmark = pytest.mark.postgresql  # runs on SQLite and on PostgreSQL

Operation = schemathesis.APIOperation[Any, Any, Any, Any]
ST = str(Path(sys.executable).with_name("st"))
EXAMPLES_PER_OPERATION = fuzz_budget.examples(40)
# positive_data_acceptance expects every schema-valid request to succeed, but the
# contract refuses more than JSON Schema can say: 7.0 as an amount, unknown currencies,
# same-account transfers, reused keys, cursors we never handed out, reserved email domains.
NOT_CHECKED: list[CheckFunction] = [positive_data_acceptance]


class World:
    """What the fixture made through the API: a caller and real ids to aim at."""

    def __init__(self, api_url: str) -> None:
        self.url = api_url
        with ApiClient(api_url) as client:
            ada = client.customer(deposit=1_000_000)
            carol = client.customer()
            bob = client.customer(deposit=500)
            done = client.accepted(transfer(bob, ada, 200))
            failed = client.accepted(transfer(bob, ada, 10_000))
            client.wait_all_final([(bob, done["id"]), (bob, failed["id"])])
        self.headers = ada.headers
        # Bob's accounts are another user's: ada may pay into them, not from them (404).
        self.ids: dict[str, list[str]] = {
            "account_id": [ada.account_id, bob.account_id],
            "from_account_id": [ada.account_id, bob.account_id],
            "to_account_id": [bob.account_id, carol.account_id],
            "payment_id": [done["id"], failed["id"]],
        }

    def aim(self, values: Any) -> st.SearchStrategy[Any]:
        """``values`` with each known id field kept or replaced by a real id."""
        if not isinstance(values, dict):
            return st.just(values)
        choices: dict[str, st.SearchStrategy[Any]] = {
            name: st.sampled_from([value, *self.ids[name]])
            for name, value in values.items()
            if name in self.ids
        }
        if isinstance(values.get("amount"), int | float):
            choices["amount"] = st.sampled_from([values["amount"], 1, 250, 1_000_000])
        if isinstance(values.get("currency"), str):
            choices["currency"] = st.sampled_from([values["currency"], "USD"])
        if not choices:
            return st.just(values)
        return st.fixed_dictionaries(choices).map(lambda chosen: {**values, **chosen})

    def fresh_keys(self, headers: Any) -> st.SearchStrategy[Any]:
        """Generated keys repeat (replays, reuse with another body); fresh ones get through."""
        if not isinstance(headers, dict) or "Idempotency-Key" not in headers:
            return st.just(headers)
        return st.booleans().map(
            lambda fresh: (
                {**headers, "Idempotency-Key": f"fuzz-{uuid.uuid4()}"} if fresh else headers
            )
        )


@pytest.fixture
def world(dev_stack: Stack) -> World:
    return World(dev_stack.start_dev().url)


@pytest.fixture
def live_schema(world: World) -> schemathesis.BaseSchema:
    # Every request carries the caller's key; the ignored_auth check tries each without.
    config = schemathesis.Config.from_dict({"generation": {"with-security-parameters": False}})
    schema = schemathesis.openapi.from_url(f"{world.url}/openapi.json", config=config, timeout=10)
    return schema


@pytest.fixture
def session(world: World) -> Iterator[requests.Session]:
    with requests.Session() as http:
        http.headers.update(world.headers)
        yield http


def test_every_answer_is_documented_and_never_a_server_error(
    live_schema: schemathesis.BaseSchema,
    world: World,
    session: requests.Session,
    subtests: pytest.Subtests,
) -> None:
    operations = []
    for result in live_schema.get_all_operations():
        assert isinstance(result, Ok), result
        operations.append(result.ok())
    assert len(operations) >= 13
    for operation in operations:
        with subtests.test(operation.label):
            _fuzz(operation, session, world)


def _fuzz(operation: Operation, session: requests.Session, world: World) -> None:
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @hypothesis.settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=fuzz_budget.SEED is None,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(case=cases, data=st.data())
    def fuzz(case: schemathesis.Case[Operation], data: st.DataObject) -> None:
        # Only valid requests are aimed: a negative one must stay invalid to be refused.
        if case.meta is not None and case.meta.generation.mode is GenerationMode.POSITIVE:
            case.path_parameters = data.draw(world.aim(case.path_parameters))
            case.query = data.draw(world.aim(case.query))
            case.body = data.draw(world.aim(case.body))
            case.headers = data.draw(world.fresh_keys(case.headers))
        excluded = NOT_CHECKED
        if _negated_only_by_omitting_an_optional_body(case):
            excluded = [*NOT_CHECKED, negative_data_rejection]
        case.call_and_validate(session=session, excluded_checks=excluded, timeout=40)

    if fuzz_budget.SEED is not None:
        fuzz = hypothesis.seed(fuzz_budget.SEED)(fuzz)
    fuzz()


def _negated_only_by_omitting_an_optional_body(case: schemathesis.Case[Operation]) -> bool:
    """Schemathesis may leave out an optional body (``POST /users/me/api-keys``) in a
    negative case and still count the case negative, though the request is valid."""
    if case.meta is None or case.body is not NOT_SET:
        return False
    negated = [
        location
        for location, component in case.meta.components.items()
        if component.mode is GenerationMode.NEGATIVE
    ]
    return negated == [ParameterLocation.BODY]


def test_a_schemathesis_run_through_every_phase_finds_nothing(world: World, tmp_path: Path) -> None:
    """``st run`` as in a terminal: examples, coverage (boundaries, missing headers, methods
    the path does not have), fuzzing and stateful chains along the links it infers
    (open an account, deposit, transfer, read the payment), with every check."""
    argv = [
        ST,
        "run",
        f"{world.url}/openapi.json",
        "--header",
        f"Authorization: {world.headers['Authorization']}",
        "--max-examples",
        str(fuzz_budget.examples(100)),
        "--checks",
        "all",
        "--exclude-checks",
        ",".join(check.__name__ for check in NOT_CHECKED),
        "--request-timeout",
        "40",
        "--no-color",
    ]
    if fuzz_budget.SEED is None:
        argv.append("--generation-deterministic")
    else:
        argv += ["--seed", str(fuzz_budget.SEED), "--generation-database", "none"]

    run = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=600)

    assert run.returncode == 0, run.stdout + run.stderr
    assert " passed" in run.stdout, run.stdout
