"""Run Parley's console entry points as real processes for e2e tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent


_HANDED_OUT: set[int] = set()
_BLOCK = 1500
"""Ports each test worker (pytest-xdist's gw0, gw1, ...) takes its ports from, below the kernel's
ephemeral range: workers never hand out the same port, and no outgoing connection takes one."""


def block_of(worker: str, ephemeral_low: int) -> range | None:
    """The ports of test worker ``worker`` ("gw3"; anything else counts as the first), below a
    kernel ephemeral range starting at ``ephemeral_low`` (None: no room there)."""
    number = worker.removeprefix("gw")
    start = 15000 + _BLOCK * (int(number) if number.isdigit() else 0)
    return range(start, start + _BLOCK) if start + _BLOCK <= ephemeral_low else None


def _ports_of_this_worker() -> range | None:
    """This process's block of ports (None: the kernel's ephemeral range is unknown or leaves no
    room below it)."""
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return block_of(os.environ.get("PYTEST_XDIST_WORKER", "gw0"), ephemeral_low)


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port free now, never handed out before by this process, and out of other workers' and
    outgoing connections' way.

    The kernel may offer a port it just offered again, and two services started together on one
    port make the second one exit while the first answers its readiness checks (a `make fault`
    run lost a whole routing process that way, 2026-12-01). A port the kernel offers is also
    one it gives outgoing connections as their source port: between the hand-out and the
    service's bind a Kafka or store client took one, and the normalizer of a benchmark run
    exited with "address already in use" (2026-12-01). So ports come from below the ephemeral
    range, in a block per test worker; where that range leaves no room, from the kernel."""
    ports = _ports_of_this_worker()
    if ports is not None:
        for port in ports:
            if port not in _HANDED_OUT and _bindable(port):
                _HANDED_OUT.add(port)
                return port
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


@dataclass
class ServiceProcess:
    """One service process: its port, its log file, and how to stop it."""

    name: str
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    ready_path: str = "/readyz"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.log()}")
            try:
                response = httpx.get(f"{self.url}{self.ready_path}", timeout=2)
                if response.status_code == 200:
                    return
                last = response.text
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.25)
        raise AssertionError(f"{self.name} not ready in {timeout}s ({last}):\n{self.log()}")

    def terminate(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_service(
    command: str,
    env: dict[str, str],
    log_dir: Path,
    *,
    port: int | None = None,
    args: Sequence[str] = (),
    ready_path: str = "/readyz",
) -> ServiceProcess:
    """Start ``command`` (a console script) with PARLEY_* settings on ``port`` (default: a free one).

    ``args`` go on its command line (the sandbox takes its address there); ``ready_path`` is
    what :meth:`ServiceProcess.wait_ready` polls.
    """
    port = free_port() if port is None else port
    log_path = log_dir / f"{command}.log"
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")},
        "PARLEY_METRICS_PORT": "0",
        "PARLEY_METRICS_HOST": "127.0.0.1",
        **env,
        "PARLEY_HTTP_PORT": str(port),
        "PARLEY_HTTP_HOST": "127.0.0.1",
        "PARLEY_LOG_FORMAT": "json",
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(BIN / command), *args], env=full_env, stdout=log, stderr=subprocess.STDOUT
        )
    return ServiceProcess(command, port, log_path, process, ready_path)
