"""The fault suite's TCP proxy does what each mode promises, on a real socket pair."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support.proxy import FaultProxy

pytestmark = pytest.mark.integration


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1024):
        writer.write(data)
        await writer.drain()
    writer.close()


async def round_trip(port: int, payload: bytes, timeout: float = 5.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(len(payload)), timeout)
    finally:
        writer.close()


async def test_each_mode_of_the_proxy() -> None:
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    target = server.sockets[0].getsockname()[1]
    async with FaultProxy("127.0.0.1", target) as proxy:
        assert await round_trip(proxy.port, b"hello") == b"hello"

        proxy.delay(0.3)
        started = time.monotonic()
        assert await round_trip(proxy.port, b"slow") == b"slow"
        assert time.monotonic() - started >= 0.3  # a lower bound the proxy itself imposes

        # an open connection is reset when the proxy starts refusing, and new ones are refused
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        proxy.refusing()
        writer.write(b"x")
        assert await asyncio.wait_for(reader.read(10), 5) == b""
        writer.close()
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await round_trip(proxy.port, b"refused")
        assert proxy.stats.refused >= 1

        # cut: the bytes are held (nothing comes back), then delivered once the network heals
        proxy.passing()
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        proxy.cut()
        writer.write(b"held")
        await writer.drain()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readexactly(4), 0.5)
        proxy.passing()
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"held"
        writer.close()
    server.close()
    await server.wait_closed()
