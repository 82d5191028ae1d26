"""Contract tests, one folder per provider package (docs/architecture.md, "Adding a provider").

Each provider's client and sender run against the provider sandbox (``shared/sandbox``, a real
HTTP server, one per test with fresh state), and its webhook endpoint, found through the
registry, checks signatures and parses every recorded-shape fixture of tests/fixtures/providers.
Sandbox tests are marked ``integration`` (they need no broker or store, only the sandbox),
parser and signature tests ``unit``; all of them ``contract``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.sandbox import Sandbox, running_sandbox


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    """A fresh provider sandbox over HTTP, with Parley's clients and senders pointed at it."""
    async with running_sandbox() as running:
        yield running
