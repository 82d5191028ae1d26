"""JWT verification against a JWKS URL (security #13, finding 11), with a real local HTTP server.

The keys are made here (ES256); the server counts its fetches. Nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from parley_shared.auth import ApiSettings, TokenVerifier, Unauthorized
from pydantic import ValidationError

pytestmark = pytest.mark.integration

AUDIENCE = "parley-api"
ISSUER = "https://id.parley.test/"


class Jwks:
    """A JWKS document served over HTTP, and how often it was fetched."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}
        self.fetches = 0
        self.gate: threading.Event | None = None  # when set up, a fetch is held until it is set
        self.events: list[str] = []  # what the server did, in order (tests add the client's)

    def add_key(self, kid: str) -> Any:
        private = ec.generate_private_key(ec.SECP256R1())
        public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
        self.keys[kid] = {**public, "kid": kid, "use": "sig", "alg": "ES256"}
        return private


@contextlib.contextmanager
def serve(jwks: Jwks) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            jwks.fetches += 1
            if jwks.gate is not None:
                jwks.events.append("fetch held")
                jwks.gate.wait(timeout=60)
            body = json.dumps({"keys": list(jwks.keys.values())}).encode()
            jwks.events.append("fetch answered")
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    finally:
        server.shutdown()
        server.server_close()


def token(private: Any, kid: str, **claims: Any) -> str:
    now = int(time.time())
    body = {"sub": "usr-1", "tenant_id": "tenant-a", "roles": [], "aud": AUDIENCE, "iss": ISSUER}
    body.update(iat=now, exp=now + 600, **claims)
    return "Bearer " + jwt.encode(body, private, algorithm="ES256", headers={"kid": kid})


def verifier(url: str, min_refetch_s: float = 30.0) -> TokenVerifier:
    return TokenVerifier(
        ApiSettings(
            jwt_jwks_url=url, jwt_audience=AUDIENCE, jwt_issuer=ISSUER, jwt_jwks_min_refetch_s=min_refetch_s
        )
    )


async def test_a_token_signed_by_a_published_key_is_verified_and_the_keys_are_cached() -> None:
    jwks = Jwks()
    key = jwks.add_key("k1")
    with serve(jwks) as url:
        check = verifier(url)
        principal = await check.verify(token(key, "k1", scope="parley:automation"))
        assert (principal.user_id, principal.tenant_id, principal.is_automation) == (
            "usr-1",
            "tenant-a",
            True,
        )
        for _ in range(5):
            await check.verify(token(key, "k1"))
        assert jwks.fetches == 1
        with pytest.raises(Unauthorized):
            await check.verify(token(key, "k1", aud="someone-else"))
        with pytest.raises(Unauthorized):
            await check.verify(token(key, "k1", iss="https://elsewhere.test/"))


async def test_an_unknown_key_id_refetches_at_most_once_per_interval() -> None:
    jwks = Jwks()
    key = jwks.add_key("k1")
    with serve(jwks) as url:
        check = verifier(url, min_refetch_s=30.0)
        await check.verify(token(key, "k1"))
        assert jwks.fetches == 1
        # a flood of forged key ids: refused, and not one of them reaches the identity provider
        stranger = jwks.add_key("k-forged")
        del jwks.keys["k-forged"]
        for n in range(20):
            with pytest.raises(Unauthorized):
                await check.verify(token(stranger, f"forged-{n}"))
        assert jwks.fetches == 1
        # once the interval has passed, a new key (rotation) is fetched on first sight, once
        assert check.jwks is not None
        check.jwks.clock = lambda: time.monotonic() + 31
        rotated = jwks.add_key("k2")
        assert (await check.verify(token(rotated, "k2"))).user_id == "usr-1"
        assert jwks.fetches == 2
        for n in range(5):
            with pytest.raises(Unauthorized):
                await check.verify(token(stranger, f"again-{n}"))
        assert jwks.fetches == 2


async def settled(task: asyncio.Task[Any]) -> bool:
    """Whether ``task`` finished; the bound only keeps a broken build from hanging the suite (a
    right one finishes at once, a wrong one waits for a fetch the test never lets go)."""
    done, _ = await asyncio.wait({task}, timeout=10)
    return task in done


async def until(event: Callable[[], bool]) -> None:
    for _ in range(1000):
        if event():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the refresh never reached the identity provider")


async def test_a_known_key_is_answered_from_the_cache_while_the_refresh_is_in_flight() -> None:
    jwks = Jwks()
    key = jwks.add_key("k1")
    with serve(jwks) as url:
        check = verifier(url)
        assert check.jwks is not None
        check.jwks.timeout_s = 120  # the held fetch is never cut short by the client
        await check.verify(token(key, "k1"))
        assert jwks.fetches == 1
        rotated = jwks.add_key("k2")
        jwks.gate = threading.Event()
        jwks.events.clear()
        check.jwks.clock = lambda: time.monotonic() + 301  # the cached keys are stale
        try:
            first = asyncio.create_task(check.verify(token(key, "k1")))
            assert await settled(first), "a known key waited for the refresh"
            jwks.events.append("answered")
            await until(lambda: "fetch held" in jwks.events)
            # more requests while the identity provider holds the refresh: answered, no new fetch
            for _ in range(5):
                again = asyncio.create_task(check.verify(token(key, "k1")))
                assert await settled(again)
                assert again.result().user_id == "usr-1"
            jwks.events.append("answered 5 more")
            assert first.result().user_id == "usr-1"
            assert jwks.fetches == 2
        finally:
            jwks.gate.set()
        await check.jwks.wait_for_fetch()
        assert jwks.events == ["answered", "fetch held", "answered 5 more", "fetch answered"]
        # the refresh landed: the rotated key is known without another fetch
        assert (await check.verify(token(rotated, "k2"))).user_id == "usr-1"
        assert jwks.fetches == 2


async def test_an_unknown_key_id_waits_for_the_fetch_in_flight_instead_of_starting_another() -> None:
    jwks = Jwks()
    key = jwks.add_key("k1")
    with serve(jwks) as url:
        check = verifier(url)
        assert check.jwks is not None
        check.jwks.timeout_s = 120
        await check.verify(token(key, "k1"))
        rotated = jwks.add_key("k2")
        jwks.gate = threading.Event()
        check.jwks.clock = lambda: time.monotonic() + 301
        try:
            await check.verify(token(key, "k1"))  # starts the background refresh
            await until(lambda: "fetch held" in jwks.events)
            waiting = asyncio.create_task(check.verify(token(rotated, "k2")))
            await asyncio.sleep(0.05)
            assert not waiting.done()  # it needs the keys being fetched
        finally:
            jwks.gate.set()
        assert (await waiting).user_id == "usr-1"
        assert jwks.fetches == 2


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({}, ["PARLEY_JWT_AUDIENCE", "PARLEY_JWT_ISSUER"]),
        ({"jwt_audience": AUDIENCE}, ["PARLEY_JWT_ISSUER"]),
        ({"jwt_issuer": ISSUER}, ["PARLEY_JWT_AUDIENCE"]),
    ],
)
def test_a_jwks_url_needs_an_audience_and_an_issuer(extra: dict[str, str], named: list[str]) -> None:
    with pytest.raises(ValidationError) as refused:
        ApiSettings(jwt_jwks_url="https://id.parley.test/jwks", **extra)
    for name in named:
        assert name in str(refused.value)
