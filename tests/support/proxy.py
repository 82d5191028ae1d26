"""A TCP proxy the fault suite controls: pass, slow down, refuse or black-hole a connection.

It stands between a process and what it talks to (the store, Kafka) on the loopback device, so a
test can make one path slow or unreachable without touching the machine's network (``tc`` on the
loopback device would slow every other process too). Modes apply to connections already open as
well as new ones:

- ``passing``: bytes flow both ways;
- ``delay(s)``: every chunk from the client waits ``s`` seconds before it is forwarded, so each
  request-response round trip costs at least ``s`` (a slow store);
- ``refusing``: open connections are closed and new ones are accepted and closed at once (the
  client sees a reset or EOF: a store that refuses connections);
- ``cut``: connections stay open and new ones are accepted, but nothing is forwarded either way
  (a network partition: the client hears nothing until its own timeouts fire); restoring
  ``passing`` lets the held bytes through, as a healed network would deliver its retransmits.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from enum import Enum


class Mode(Enum):
    PASSING = "passing"
    DELAY = "delay"
    REFUSING = "refusing"
    CUT = "cut"


@dataclass
class ProxyStats:
    accepted: int = 0
    refused: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


@dataclass
class FaultProxy:
    """``await proxy.start()``; clients connect to ``proxy.port``; switch modes while they run."""

    target_host: str
    target_port: int
    listen_host: str = "127.0.0.1"
    port: int = 0
    mode: Mode = Mode.PASSING
    delay_s: float = 0.0
    stats: ProxyStats = field(default_factory=ProxyStats)
    _server: asyncio.Server | None = None
    _open: set[asyncio.StreamWriter] = field(default_factory=set)
    _flowing: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> FaultProxy:
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, self.listen_host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self._drop_all()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    # --- modes ------------------------------------------------------------------------------

    def passing(self) -> None:
        self.mode = Mode.PASSING
        self._flowing.set()

    def delay(self, seconds: float) -> None:
        self.mode = Mode.DELAY
        self.delay_s = seconds
        self._flowing.set()

    def refusing(self) -> None:
        self.mode = Mode.REFUSING
        self._flowing.set()
        self._drop_all()

    def cut(self) -> None:
        self.mode = Mode.CUT
        self._flowing.clear()

    # --- plumbing ---------------------------------------------------------------------------

    def _drop_all(self) -> None:
        for writer in list(self._open):
            writer.transport.abort()  # a reset, not a polite close: the peer is gone
        self._open.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode is Mode.REFUSING:
            self.stats.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            self.stats.refused += 1
            writer.transport.abort()
            return
        self.stats.accepted += 1
        self._open.update((writer, up_writer))
        up = asyncio.ensure_future(self._pump(reader, up_writer, upstream=True))
        down = asyncio.ensure_future(self._pump(up_reader, writer, upstream=False))
        self._tasks.update((up, down))
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (up, down):
                task.cancel()
            for stream in (writer, up_writer):
                self._open.discard(stream)
                stream.transport.abort()
            self._tasks.difference_update((up, down))

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            await self._flowing.wait()  # cut: hold the bytes until the network heals
            if upstream and self.mode is Mode.DELAY and self.delay_s > 0:
                await asyncio.sleep(self.delay_s)
            if self.mode is Mode.REFUSING:
                return
            writer.write(chunk)
            await writer.drain()
            if upstream:
                self.stats.bytes_up += len(chunk)
            else:
                self.stats.bytes_down += len(chunk)
