"""An open-loop sender of signed webhook POSTs that costs little CPU per request.

httpx spends about a millisecond of Python per request, and more as connections pile up: posting
to the bare baseline app from one core, it kept 500 requests a second (p99 2.4 ms) but at 1,000 a
second it took 31 s to send 4 s of requests (measured 2026-12-01). The end-to-end benchmark then
measured its own client. Here each request is prebuilt bytes written on one of a fixed set of
keep-alive HTTP/1.1 connections, and the answer is read by its status line and Content-Length.

Open loop: request ``n`` is due at ``start + n / rate`` whether or not earlier ones were answered,
and its latency counts from that moment, so a server (or this sender) falling behind shows in the
figures instead of slowing the offered rate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

RETRIES = 5
"""Answers other than 200 are retried after :data:`RETRY_PAUSE_S`, as a provider retries."""
RETRY_PAUSE_S = 0.5


@dataclass(frozen=True, slots=True)
class Post:
    key: str
    path: str
    body: bytes
    headers: dict[str, str]


@dataclass(slots=True)
class Sent:
    """When each request was due (monotonic and wall clock) and what it was last answered."""

    due: dict[str, float] = field(default_factory=dict)
    due_wall: dict[str, float] = field(default_factory=dict)
    status: dict[str, int] = field(default_factory=dict)
    retries: int = 0


def _request(host: str, post: Post) -> bytes:
    lines = [f"POST {post.path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(post.body)}"]
    lines += [f"{name}: {value}" for name, value in post.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + post.body


async def _answer(reader: asyncio.StreamReader) -> int:
    """The status of one response, its body (by length or in chunks) read and dropped."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    length, chunked = 0, False
    for line in header_lines:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value:
            chunked = True
    if chunked:
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            await reader.readexactly(size + 2)
        await reader.readuntil(b"\r\n")  # the empty trailer
    elif length:
        await reader.readexactly(length)
    return int(status_line.split(" ", 2)[1])


async def send_open_loop(url: str, posts: Sequence[Post], rate: float, connections: int = 64) -> Sent:
    """POST every request on schedule over ``connections`` keep-alive connections; return when
    each was due and how it was answered."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    authority = f"{host}:{port}"
    queue: asyncio.Queue[tuple[Post, bytes] | None] = asyncio.Queue()
    sent = Sent()

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while (item := await queue.get()) is not None:
                post, request = item
                for attempt in range(RETRIES):
                    try:
                        writer.write(request)
                        status = await _answer(reader)
                    except (ConnectionError, asyncio.IncompleteReadError):
                        writer.close()
                        reader, writer = await asyncio.open_connection(host, port)
                        status = 0
                    sent.status[post.key] = status
                    if status == 200:
                        break
                    if attempt + 1 < RETRIES:
                        sent.retries += 1
                        await asyncio.sleep(RETRY_PAUSE_S)
        finally:
            writer.close()

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    requests = [(post, _request(authority, post)) for post in posts]
    start, start_wall = time.monotonic(), time.time()
    for n, item in enumerate(requests):
        due = start + n / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        sent.due[item[0].key] = due
        sent.due_wall[item[0].key] = start_wall + (due - start)
        queue.put_nowait(item)
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    return sent
