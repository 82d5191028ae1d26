"""Domain errors with stable, machine-readable codes."""

from __future__ import annotations


class DomainError(ValueError):
    """A rule refused the request; ``code`` is stable, ``message`` is for people."""

    status = 422

    def __init__(self, code: str, message: str, **details: object) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


class Conflict(DomainError):
    """The request contradicts the current state (a step out of order, a duplicate)."""

    status = 409
