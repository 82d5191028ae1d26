"""Console entry point: ``parley-reports`` serves; ``parley-reports rebuild`` recomputes."""

from __future__ import annotations

import sys

from parley_shared.http import run_service

from parley_reports.settings import ReportsSettings


def main() -> None:
    if sys.argv[1:2] == ["rebuild"]:
        from parley_reports.entrypoints.cli import main as rebuild

        raise SystemExit(rebuild(sys.argv[2:]))
    run_service(ReportsSettings, "parley_reports.bootstrap:create_reports_app")


if __name__ == "__main__":
    main()
