"""What every provider client raises, and what a caller should do about it.

A provider package classifies its own error numbers (``meta.errors``, ``x.errors``); the kinds
and the error type are shared, so services handle every provider's failures the same way.
Classification looks only at status codes and numeric codes, never at message text.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

__all__ = ["ErrorKind", "ProviderError", "classify_status"]


class ErrorKind(StrEnum):
    """What a caller should do about a failed provider call."""

    REAUTH_REQUIRED = "reauth_required"  # the token is dead: the user must connect again
    PERMISSION_MISSING = "permission_missing"  # a scope, page task or role is missing
    RATE_LIMITED = "rate_limited"  # back off (``retry_after_s`` when the provider said)
    RETRYABLE = "retryable"  # transient: the same call may succeed later
    WINDOW_CLOSED = "window_closed"  # outside the customer-service window: needs a template/tag
    INVALID_REQUEST = "invalid_request"  # this request will never succeed as it is
    SENDING_RESTRICTED = "sending_restricted"  # the provider holds the account's sends for a while:
    # no retry (each one would fail the same); the account must wait, or appeal, before sending again


def classify_status(status: int) -> ErrorKind:
    """The kind of a failure known only by its HTTP status (no provider code to go by)."""
    if status == 429:
        return ErrorKind.RATE_LIMITED
    if status >= 500:
        return ErrorKind.RETRYABLE
    return ErrorKind.INVALID_REQUEST


class ProviderError(Exception):
    """A provider call that did not succeed. ``status`` is 0 when no HTTP answer arrived.

    Without a ``kind`` the status alone decides it; the provider packages pass the kind their
    own codes mean (:func:`parley_providers.meta.errors.meta_error`, ``x.errors.x_error``)."""

    def __init__(
        self,
        provider: str,
        status: int,
        code: int | None,
        subcode: int | None,
        message: str,
        kind: ErrorKind | None = None,
        *,
        error_type: str | None = None,
        trace_id: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        self.provider = provider
        self.status = status
        self.code = code
        self.subcode = subcode
        self.message = message
        self.kind = kind if kind is not None else classify_status(status)
        self.error_type = error_type
        self.trace_id = trace_id
        self.retry_after_s = retry_after_s
        super().__init__(self._describe())

    def _describe(self) -> str:
        numbers = f" code={self.code}" if self.code is not None else ""
        numbers += f" subcode={self.subcode}" if self.subcode is not None else ""
        return f"{self.provider} HTTP {self.status}{numbers} [{self.kind}]: {self.message}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_error,
            (
                self.provider,
                self.status,
                self.code,
                self.subcode,
                self.message,
                self.kind,
                self.error_type,
                self.trace_id,
                self.retry_after_s,
            ),
        )


def _rebuild_error(
    provider: str,
    status: int,
    code: int | None,
    subcode: int | None,
    message: str,
    kind: ErrorKind,
    error_type: str | None,
    trace_id: str | None,
    retry_after_s: float | None,
) -> ProviderError:
    return ProviderError(
        provider,
        status,
        code,
        subcode,
        message,
        kind,
        error_type=error_type,
        trace_id=trace_id,
        retry_after_s=retry_after_s,
    )
