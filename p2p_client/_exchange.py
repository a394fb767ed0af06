"""What the sync and async clients share around the wire: building a request from a
``Call``, reading its answer or its problem, and deciding whether a failure is retried."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import httpx

from p2p_client import errors, models
from p2p_client._calls import Call, T, list_events
from p2p_client.retry import retry_after

USER_AGENT = "p2p-client/0.1"

_KINDS: dict[int, type[errors.ProblemError]] = {
    400: errors.InvalidRequest,
    401: errors.Unauthorized,
    403: errors.Unauthorized,
    404: errors.NotFound,
    409: errors.Conflict,
    413: errors.InvalidRequest,
    415: errors.InvalidRequest,
    422: errors.InvalidRequest,
    429: errors.RateLimited,
}

# Failures after which the request may or may not have reached the service.
_RETRIED_ERRORS = (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError)
# Failures after which it surely did not: nothing was sent.
_UNSENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def build_request(
    http: httpx.Client | httpx.AsyncClient, call: Call[T], timeout_s: float
) -> httpx.Request:
    headers = {} if call.idempotency_key is None else {"Idempotency-Key": call.idempotency_key}
    return http.build_request(
        call.method,
        call.path,
        params=call.params,
        json=call.body,
        headers=headers,
        timeout=httpx.Timeout(timeout_s, read=timeout_s + call.wait_s),
    )


def read_answer(response: httpx.Response, call: Call[T], wall_clock: Callable[[], float]) -> T:
    """The answer's object; raises the ``ProblemError`` of an error status."""
    if response.is_success:
        if response.status_code == 204 or not response.content:
            return call.read(None)
        try:
            value = response.json()
        except ValueError:
            raise errors.UnexpectedAnswer(
                f"{call.method} {call.path} answered {response.status_code} without JSON"
            ) from None
        return call.read(value)
    raise problem(response, wall_clock)


def problem(response: httpx.Response, wall_clock: Callable[[], float]) -> errors.ProblemError:
    """The exception for an error answer: its kind by status, its fields from the problem
    body (``http_<status>`` as the code when the body is no problem, e.g. a proxy's page)."""
    status = response.status_code
    body: object = None
    with contextlib.suppress(ValueError):
        body = response.json()
    fields = body if isinstance(body, dict) else {}
    code = fields.get("code")
    detail = fields.get("detail")
    title = fields.get("title")
    kind = _KINDS.get(status, errors.ServerError if status >= 500 else errors.ProblemError)
    return kind(
        status,
        code if isinstance(code, str) else f"http_{status}",
        detail if isinstance(detail, str) else response.reason_phrase,
        title=title if isinstance(title, str) else response.reason_phrase,
        errors=_field_errors(fields.get("errors")),
        retry_after=retry_after(response.headers, wall_clock),
        request_id=response.headers.get("x-request-id"),
    )


def _field_errors(value: object) -> tuple[errors.FieldError, ...]:
    if not isinstance(value, list):
        return ()
    found = []
    for item in value:
        if isinstance(item, dict) and isinstance(item.get("msg"), str):
            loc = item.get("loc")
            parts = (
                tuple(p for p in loc if isinstance(p, str | int)) if isinstance(loc, list) else ()
            )
            found.append(errors.FieldError(parts, item["msg"]))
    return tuple(found)


def resend_after_error(call: Call[T], error: httpx.TransportError) -> bool:
    """Whether a request that failed on the network may be sent again."""
    if call.retry_unsent_only:
        return isinstance(error, _UNSENT_ERRORS)
    return isinstance(error, _RETRIED_ERRORS)


def resend_after_problem(call: Call[T], failure: errors.ProblemError) -> bool:
    """Whether a request answered with this problem may be sent again: ``429`` always
    (a refused request recorded nothing), ``5xx`` when sending twice is harmless."""
    if isinstance(failure, errors.RateLimited):
        return True
    return isinstance(failure, errors.ServerError) and not call.retry_unsent_only


def unreachable(call: Call[T], error: httpx.TransportError) -> errors.Unreachable:
    return errors.Unreachable(f"{call.method} {call.path}: {type(error).__name__}: {error}")


@dataclass
class EventFeed:
    """Where an event stream stands: its cursor moves past each page once it is handed out."""

    cursor: str | None
    types: Sequence[str] | None
    limit: int | None
    wait: float | None

    def __post_init__(self) -> None:
        self.call()  # refuses a bad ``wait`` when the stream is made, not when first read

    def call(self) -> Call[models.Page[models.Event]]:
        return list_events(self.cursor, self.types, self.limit, self.wait)

    def events(self, page: models.Page[models.Event]) -> Iterator[models.Event]:
        """The page's events; the cursor moves past the page as its last one is handed
        out, so a consumer that saves it after handling an event never skips one."""
        for index, event in enumerate(page.data):
            if index == len(page.data) - 1:
                self._move(page)
            yield event
        if not page.data:
            self._move(page)

    def more(self, page: models.Page[models.Event]) -> bool:
        """Whether to ask for another page after ``page``: there are more, or we follow."""
        return page.has_more or self.wait is not None

    def _move(self, page: models.Page[models.Event]) -> None:
        if page.next_cursor is not None:
            self.cursor = page.next_cursor
