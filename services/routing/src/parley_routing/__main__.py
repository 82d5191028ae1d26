"""Console entry point: ``parley-routing``."""

from __future__ import annotations

from parley_shared.http import run_service

from parley_routing.settings import RoutingSettings


def main() -> None:
    run_service(RoutingSettings, "parley_routing.bootstrap:create_routing_app")


if __name__ == "__main__":
    main()
