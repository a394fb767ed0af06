"""Everything the client raises: one flat tree under ``P2PError``.

A problem answer (RFC 9457) is a ``ProblemError`` of the kind its status says; program
against its ``code``, which is stable, rather than its ``detail``, which is for people.
"""

from __future__ import annotations

from dataclasses import dataclass


class P2PError(Exception):
    """Base of every error this client raises."""


@dataclass(frozen=True)
class FieldError:
    """One refused field of a validation problem: where it is, and why."""

    loc: tuple[str | int, ...]
    msg: str


class ProblemError(P2PError):
    """The service answered with a problem (an error status)."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        title: str = "",
        errors: tuple[FieldError, ...] = (),
        retry_after: float | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title
        self.errors = errors
        self.retry_after = retry_after
        """Seconds the service asked to wait before trying again (``Retry-After``)."""
        self.request_id = request_id
        """The answer's ``X-Request-ID``: quote it when asking about a request."""


class InvalidRequest(ProblemError):
    """The request was refused as malformed or breaking a rule (400, 413, 415, 422)."""


class Unauthorized(ProblemError):
    """The API key is missing, unknown or revoked, or a signature is invalid (401, 403)."""


class NotFound(ProblemError):
    """No such resource, or not the caller's (404)."""


class Conflict(ProblemError):
    """The resource's state forbids the request, e.g. a frozen account (409)."""


class RateLimited(ProblemError):
    """The API key's rate limit was reached, still so after the retries (429)."""


class ServerError(ProblemError):
    """The service failed, still so after the retries (5xx)."""


class Unreachable(P2PError):
    """No answer came from the service, still none after the retries (network errors)."""


class UnexpectedAnswer(P2PError):
    """The service answered with something this client cannot read."""


class WebhookVerificationFailed(P2PError):
    """A webhook's signature, timestamp or headers do not verify against the secret."""
