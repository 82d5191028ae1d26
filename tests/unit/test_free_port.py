"""The ports test and benchmark processes are started on: never twice, never another worker's,
never one the kernel gives outgoing connections."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import processes

pytestmark = pytest.mark.unit


def ephemeral_low() -> int:
    return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])


def test_ports_are_handed_out_once_each_and_below_the_ephemeral_range() -> None:
    ports = [processes.free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    if processes._ports_of_this_worker() is not None:
        assert max(ports) < ephemeral_low()


def test_each_test_worker_has_a_block_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    blocks: list[range] = []
    for worker in ("gw0", "gw1", "gw2"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        block = processes._ports_of_this_worker()
        if block is None:
            pytest.skip("this machine's ephemeral range leaves no room below it")
        blocks.append(block)
    assert all(set(a).isdisjoint(b) for i, a in enumerate(blocks) for b in blocks[i + 1 :])
    assert all(block.stop <= ephemeral_low() for block in blocks)
