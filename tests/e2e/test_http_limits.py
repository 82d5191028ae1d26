"""A real routing process behind uvicorn: body and header limits, and /metrics on its own port.

Security finding 5 (one 200 MiB POST grew routing from about 90 MB to 864 MB) and finding 14
(/metrics on the public port). The body goes over a raw socket so the test controls exactly how
much of it is sent, and sees the answer arrive before the body would have.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import httpx
import pytest
from parley_shared.auth import issue_dev_token

from tests.conftest import Infra
from tests.support.processes import ServiceProcess, free_port, start_service

pytestmark = pytest.mark.e2e

SECRET = "limits-test-secret-of-32-bytes-at-least"


async def raw_request(port: int, head: bytes, body_chunks: int = 0, chunk: bytes = b"") -> bytes:
    """Send a request head and up to ``body_chunks`` chunks; return whatever the server answered.

    The answer is read while the body is still being sent: a server that refuses a body closes
    the connection with the rest unread, and the reset that follows would discard an answer read
    only afterwards.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = bytearray()

    async def read() -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                answer.extend(data)

    reading = asyncio.create_task(read())
    try:
        writer.write(head)
        for _ in range(body_chunks):
            if answer or reading.done():
                break
            try:
                writer.write(chunk)
                await asyncio.wait_for(writer.drain(), 1)
            except (ConnectionError, TimeoutError):
                break
            await asyncio.sleep(0.01)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(reading), 5)
        return bytes(answer)
    finally:
        reading.cancel()
        writer.close()


@pytest.fixture
def routing(infra: Infra, namespace: str, store_url: str, tmp_path: Path) -> ServiceProcess:
    metrics_port = free_port()
    env = {
        "PARLEY_KAFKA_BOOTSTRAP_SERVERS": infra.kafka,
        "PARLEY_STORE_URL": store_url,
        "PARLEY_TOPIC_NAMESPACE": namespace,
        "PARLEY_CONSUMER_GROUP_PREFIX": namespace,
        "PARLEY_JWT_HS256_SECRET": SECRET,
        "PARLEY_METRICS_PORT": str(metrics_port),
        "PARLEY_HTTP_MAX_BODY_BYTES": str(256 * 1024),
        "PARLEY_HTTP_MAX_HEADER_BYTES": "8192",
        "PARLEY_SHUTDOWN_TIMEOUT_S": "5",
    }
    server = start_service("parley-routing", env, tmp_path)
    server.wait_ready(60)
    server.metrics_port = metrics_port  # type: ignore[attr-defined]
    yield server
    server.terminate()


async def test_a_huge_body_is_answered_413_without_being_read(routing: ServiceProcess) -> None:
    token = issue_dev_token(SECRET, "usr-1", "tenant-a", [])
    size = 200 * 1024 * 1024
    head = (
        f"POST /v1/conversations/c1/notes HTTP/1.1\r\nhost: routing\r\nauthorization: Bearer {token}\r\n"
        f"content-type: application/json\r\ncontent-length: {size}\r\n\r\n"
    ).encode()
    answer = await raw_request(routing.port, head, body_chunks=64, chunk=b"a" * 65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"PAYLOAD_TOO_LARGE" in answer


async def test_a_chunked_body_over_the_limit_is_cut_off_with_413(routing: ServiceProcess) -> None:
    # no token at all: the limit comes before authentication
    head = (
        b"POST /v1/conversations/c1/notes HTTP/1.1\r\nhost: routing\r\n"
        b"content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    piece = b"a" * 32768
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    answer = await raw_request(routing.port, head, body_chunks=64, chunk=chunk)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


async def test_a_request_head_that_never_ends_is_refused(routing: ServiceProcess) -> None:
    # at most PARLEY_HTTP_MAX_HEADER_BYTES (8 KiB here) of an unfinished head is held; httptools
    # itself would buffer a header that never ends without a bound
    head = b"GET /healthz HTTP/1.1\r\nhost: routing\r\nx-filler: "
    answer = await raw_request(routing.port, head, body_chunks=3, chunk=b"a" * 4096)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    async with httpx.AsyncClient(timeout=10) as http:
        small = await http.get(f"{routing.url}/healthz", headers={"x-filler": "a" * 1024})
    assert small.status_code == 200


async def test_a_finished_request_head_over_the_limit_is_refused(routing: ServiceProcess) -> None:
    # twelve 1 KiB headers, sent in one piece and complete: 12 KiB of head against 8 KiB
    fillers = "".join(f"x-filler-{i}: {'a' * 1000}\r\n" for i in range(12))
    head = f"GET /healthz HTTP/1.1\r\nhost: routing\r\n{fillers}\r\n".encode()
    answer = await raw_request(routing.port, head, body_chunks=0, chunk=b"")
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    # the same request with seven of them (7 KiB) is served
    fillers = "".join(f"x-filler-{i}: {'a' * 1000}\r\n" for i in range(7))
    head = f"GET /healthz HTTP/1.1\r\nhost: routing\r\nconnection: close\r\n{fillers}\r\n".encode()
    answer = await raw_request(routing.port, head, body_chunks=0, chunk=b"")
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


async def test_metrics_are_served_on_their_own_port_only(routing: ServiceProcess) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        public = await http.get(f"{routing.url}/metrics")
        private = await http.get(f"http://127.0.0.1:{routing.metrics_port}/metrics")  # type: ignore[attr-defined]
    assert public.status_code == 404
    assert private.status_code == 200
    assert "parley_" in private.text
