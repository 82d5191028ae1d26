"""The ports test and benchmark processes are started on: never twice, never another worker's,
never one the kernel gives outgoing connections."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import processes

pytestmark = pytest.mark.unit


def test_ports_are_handed_out_once_each_and_bindable() -> None:
    ports = [processes.free_port() for _ in range(50)]
    assert len(set(ports)) == 50


def test_ports_come_from_this_workers_block_below_the_ephemeral_range() -> None:
    ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    block = processes.block_of(os.environ.get("PYTEST_XDIST_WORKER", "gw0"), ephemeral_low)
    assert processes._ports_of_this_worker() == block
    port = processes.free_port()
    # a machine whose ephemeral range starts too low for a block gets the kernel's ports, as before
    assert block is None or (port in block and port < ephemeral_low)


def test_each_test_worker_has_a_block_of_its_own_below_the_ephemeral_range() -> None:
    blocks = [processes.block_of(worker, 32768) for worker in ("gw0", "gw1", "gw2", "gw9")]
    assert all(block is not None and block.stop <= 32768 for block in blocks)
    ranges = [block for block in blocks if block is not None]
    assert all(set(a).isdisjoint(b) for i, a in enumerate(ranges) for b in ranges[i + 1 :])
    assert processes.block_of("master", 32768) == processes.block_of("gw0", 32768)


def test_no_block_where_the_ephemeral_range_leaves_no_room() -> None:
    assert processes.block_of("gw0", 1024) is None
    assert processes.block_of("gw20", 32768) is None
