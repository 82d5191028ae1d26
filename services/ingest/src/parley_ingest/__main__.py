"""Console entry points: ``parley-ingest`` and ``parley-normalizer``."""

from __future__ import annotations

from parley_shared.http import run_service

from parley_ingest.settings import IngestSettings, NormalizerSettings


def main() -> None:
    run_service(IngestSettings, "parley_ingest.bootstrap:create_ingest_app")


def normalizer() -> None:
    run_service(NormalizerSettings, "parley_ingest.bootstrap:create_normalizer_app")


if __name__ == "__main__":
    main()
