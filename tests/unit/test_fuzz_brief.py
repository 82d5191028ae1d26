"""A brief run of the normalizers' fuzz target (tests/fuzz), and proof that it catches bugs.

No broker or store: the target runs as a subprocess on the committed seed corpus for a bounded
number of inputs with a fixed seed (a few seconds), so ``make test`` fails on a regression the
seeds reach. ``make fuzz`` is the long run. Crash files go to a temporary directory, never the
repository. Two deliberately broken normalizers (``PARLEY_FUZZ_PLANTED_BUG``) show that an
unexpected exception and a broken invariant both end the run with a crash report.
"""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

FUZZ = Path(__file__).resolve().parents[1] / "fuzz"
TARGET = FUZZ / "fuzz_normalizers.py"
SEEDS = FUZZ / "corpus"
DICTIONARY = FUZZ / "normalizers.dict"
RUNS = 3000


def fuzz(
    tmp_path: Path, *inputs: Path, runs: int = RUNS, planted_bug: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the target: on a fresh working corpus plus the seeds, or on the given input files."""
    env = {k: v for k, v in os.environ.items() if k != "PARLEY_FUZZ_PLANTED_BUG"}
    if planted_bug is not None:
        env["PARLEY_FUZZ_PLANTED_BUG"] = planted_bug
    work = tmp_path / "corpus"
    work.mkdir(exist_ok=True)
    crashes = tmp_path / "crashes"
    crashes.mkdir(exist_ok=True)
    corpus = [str(p) for p in inputs] if inputs else [str(work), str(SEEDS)]
    return subprocess.run(
        [
            sys.executable,
            str(TARGET),
            f"-runs={runs}",
            "-seed=1",
            "-timeout=10",
            f"-dict={DICTIONARY}",
            f"-artifact_prefix={crashes}/",
            *corpus,
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def report(result: subprocess.CompletedProcess[str]) -> str:
    """Atheris prints the Python traceback on stdout, libFuzzer its summary on stderr."""
    return result.stdout + result.stderr


def crash_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "crashes").glob("crash-*"))


def test_the_committed_seed_corpus_is_what_the_fixtures_give(tmp_path: Path) -> None:
    written = subprocess.run(
        [sys.executable, str(FUZZ / "write_corpus.py"), str(tmp_path / "seeds"), str(tmp_path / "dict")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert written.returncode == 0, written.stderr

    compared = filecmp.dircmp(tmp_path / "seeds", SEEDS)
    stale = compared.left_only + compared.right_only + compared.diff_files
    assert stale == [], "run `.venv/bin/python tests/fuzz/write_corpus.py` and commit tests/fuzz"
    assert (tmp_path / "dict").read_text() == DICTIONARY.read_text()


def test_a_brief_fuzz_run_finds_no_crash(tmp_path: Path) -> None:
    result = fuzz(tmp_path)

    assert result.returncode == 0, report(result)[-4000:]
    assert f"Done {RUNS} runs" in result.stderr
    assert crash_files(tmp_path) == []


def test_an_unexpected_exception_is_a_crash_with_a_reproducible_report(tmp_path: Path) -> None:
    result = fuzz(tmp_path, runs=500, planted_bug="crash")

    assert result.returncode != 0
    assert "Uncaught Python exception" in report(result)
    assert "in careless" in report(result)  # the traceback names the broken stand-in
    [crash] = crash_files(tmp_path)
    # the crash file alone reproduces it; the real normalizer refuses the same input clearly
    with ThreadPoolExecutor() as pool:
        replayed = pool.submit(fuzz, tmp_path, crash, planted_bug="crash")
        real = pool.submit(fuzz, tmp_path, crash)
        assert replayed.result().returncode != 0
        assert real.result().returncode == 0, report(real.result())


def test_a_broken_invariant_is_a_crash(tmp_path: Path) -> None:
    result = fuzz(tmp_path, runs=500, planted_bug="nondeterministic")

    assert result.returncode != 0
    assert "AssertionError" in report(result)
    assert "gave two results" in report(result) or "gave different events" in report(result)
    assert len(crash_files(tmp_path)) == 1
