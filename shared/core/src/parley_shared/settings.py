"""Settings: one pydantic-settings class per service, all read from ``PARLEY_*`` variables.

Nothing else in Parley reads the environment. Defaults match ``make infra-up``; secrets have
no default, so a service without them refuses to start with a one-line error naming them.
"""

from __future__ import annotations

import sys
from typing import Literal, NoReturn, TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "PARLEY_"

LOCAL_POSTGRES_URL = "postgresql://postgres@127.0.0.1:54329/parley"
"""The PostgreSQL of ``make infra-up`` (scripts/infra.sh): the store when no URL is set."""


class ServiceSettings(BaseSettings):
    """What every Parley process needs: where Kafka and the store are, and how to serve."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    mongodb_url: str = Field(
        default="mongodb://127.0.0.1:27017/parley",
        description="The MongoDB (or FerretDB) store, used when it is set and PARLEY_STORE_URL is not.",
    )
    store_url: str | None = Field(
        default=None,
        description="The store, whose scheme picks the adapters: postgresql://... (PostgreSQL) or "
        "mongodb://... (MongoDB, FerretDB); unset: PARLEY_MONGODB_URL if set, else the local "
        f"PostgreSQL of make infra-up, {LOCAL_POSTGRES_URL} (docs/storage.md).",
    )
    topic_namespace: str = Field(
        default="",
        description="Prefix for every topic name (shared clusters, isolated test runs).",
    )
    consumer_group_prefix: str = Field(default="parley", description="Prefix of group ids.")
    http_host: str = "0.0.0.0"
    http_port: int = 8080
    http_max_body_bytes: int = Field(
        default=1024 * 1024,
        gt=0,
        description="Largest request body any API accepts, counted while it streams in and before "
        "anything parses it or authenticates the caller; larger ones get 413 (docs/security.md).",
    )
    http_limit_concurrency: int = Field(
        default=1000,
        gt=0,
        description="Connections and requests served at once by this process; past it uvicorn answers 503.",
    )
    http_keep_alive_timeout_s: int = Field(
        default=5, gt=0, description="An idle keep-alive connection is closed after this many seconds."
    )
    http_max_header_bytes: int = Field(
        default=16 * 1024,
        ge=1024,
        description="Largest request line plus headers; larger gets 400.",
    )
    http_forwarded_allow_ips: str = Field(
        default="127.0.0.1",
        description="Comma-separated addresses (or *) of the proxies whose X-Forwarded-For and "
        "X-Forwarded-Proto uvicorn trusts; the client address every per-client limit uses comes "
        "from there (docs/security.md).",
    )
    metrics_host: str = "0.0.0.0"
    metrics_port: int = Field(
        default=9464,
        ge=0,
        le=65535,
        description="/metrics is served here, on its own port apart from the API (0: any free port, "
        "for tests), so a network policy can open it to the monitoring system alone.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    kafka_ack_timeout_s: float = Field(default=5.0, gt=0)
    kafka_max_batch_bytes: int = Field(
        default=512 * 1024,
        ge=16 * 1024,
        le=1024 * 1024,
        description="Producer batch size per partition. aiokafka keeps one open batch per "
        "partition and makes every other send wait for it to drain, so small batches throttle "
        "a hot partition (benchmarks: docs/performance.md). At most the broker's message.max.bytes.",
    )
    shutdown_timeout_s: float = Field(default=20.0, gt=0)
    consumer_max_attempts: int = Field(
        default=5, ge=1, description="Attempts for a failing record before it goes to its DLQ."
    )
    consumer_retry_backoff_s: float = Field(default=0.2, ge=0)
    consumer_retry_backoff_max_s: float = Field(default=10.0, ge=0)
    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP traces endpoint, e.g. http://collector:4318/v1/traces; unset = off.",
    )

    @property
    def store(self) -> str:
        """The URL of the store this process opens: ``store_url``, else ``mongodb_url`` when it was
        set, else the local PostgreSQL (the default store; ``mongodb_url``'s own default is kept
        for the tools that read it, but no longer chooses the store)."""
        if self.store_url:
            return self.store_url
        return self.mongodb_url if "mongodb_url" in self.model_fields_set else LOCAL_POSTGRES_URL

    def group_id(self, name: str) -> str:
        """The consumer group id of one of this service's subscribers."""
        return f"{self.consumer_group_prefix}.{name}"


S = TypeVar("S", bound=ServiceSettings)


def _die(message: str) -> NoReturn:
    print(message, file=sys.stderr)
    raise SystemExit(2)


def load_settings(cls: type[S]) -> S:
    """Build a settings object or stop the process with one clear line per bad variable."""
    try:
        return cls()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = ENV_PREFIX + "_".join(str(part) for part in error["loc"][:1]).upper()
            if error["type"] == "missing":
                problems.append(f"{name} is required but not set")
            else:
                problems.append(f"{name} is invalid: {error['msg']}")
        _die(f"{cls.__name__}: " + "; ".join(problems))
