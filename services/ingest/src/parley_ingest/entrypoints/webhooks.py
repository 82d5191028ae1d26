"""HTTP routes for provider webhooks: verify, archive durably, answer.

The path is lean and stateless: check method, size and content type, verify the signature on
the raw bytes, publish the raw record with acks=all, and only then answer 200. A broker that
does not acknowledge in time gets the provider a 503, so the provider retries; so does a delivery
that finds every publish place taken (``domain/admission.py``), at once and with Retry-After.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from datetime import UTC, datetime

import orjson
from opentelemetry.sdk.trace import TracerProvider
from parley_providers import registry
from parley_providers.base import WebhookEndpoint, WebhookSecrets
from parley_shared.kafka import Publishes
from parley_shared.logging import get_logger
from parley_shared.tracing import span_from_headers
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from parley_ingest import metrics
from parley_ingest.domain import deliveries
from parley_ingest.domain.admission import Admission
from parley_ingest.domain.ratelimit import ClientBuckets
from parley_ingest.settings import IngestSettings

log = get_logger(__name__)


class BodyTooLarge(Exception):
    """The request body is over the configured limit."""


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


Verifier = Callable[[bytes, str | None], bool]


def overloaded(provider: str, settings: IngestSettings) -> Response:
    """503 with Retry-After: every publish place is taken (the provider sends it again)."""
    return metrics.outcome(
        provider,
        "overloaded",
        JSONResponse(
            {"code": "overloaded", "message": "too many deliveries in flight; retry shortly"},
            status_code=503,
            headers={"retry-after": str(settings.overload_retry_after_s)},
        ),
    )


def receive_route(
    provider: str,
    signature_header: str,
    verify: Verifier,
    settings: IngestSettings,
    publisher: Publishes,
    admission: Admission,
    tracing: TracerProvider | None = None,
) -> Callable[[Request], Awaitable[Response]]:
    """The POST handler shared by every provider: checks in order, archive, then 200."""

    async def receive(request: Request) -> Response:
        started = time.perf_counter()
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return metrics.outcome(provider, "unsupported_media_type", Response(status_code=415))
        try:
            body = await read_body(request, settings.max_body_bytes)
        except BodyTooLarge:
            return metrics.outcome(provider, "too_large", Response(status_code=413))
        if not verify(body, request.headers.get(signature_header)):
            metrics.SIGNATURE_FAILURES.labels(provider=provider).inc()
            return metrics.outcome(provider, "bad_signature", Response(status_code=401))
        if admission.full:
            # refused before the body is parsed and its record built: cheap enough that a
            # process over its capacity still answers promptly
            return overloaded(provider, settings)
        if not deliveries.is_json_object(body):
            # signed but not a delivery: for X, a CRC answer replayed as a POST signature
            log.warning("signed body is not a JSON object, refused", provider=provider, size=len(body))
            return metrics.outcome(
                provider,
                "not_json_object",
                JSONResponse(
                    {"code": "body_not_json_object", "message": "a delivery is a JSON object"},
                    status_code=400,
                ),
            )
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            payload = None  # a broken object, archived all the same: the normalizer dead-letters it
        record = deliveries.archive_record(provider, body, dict(request.headers), datetime.now(UTC), payload)
        if not admission.enter():
            return overloaded(provider, settings)
        metrics.PUBLISHES_IN_FLIGHT.inc()
        try:
            # the trace starts here (or continues the caller's traceparent) and travels in Kafka headers
            with (
                span_from_headers(tracing, f"webhook {provider}", request.headers)
                if tracing
                else nullcontext()
            ):
                await publisher.publish(record, event_id=record.delivery_id, time=record.received_at)
        except Exception as exc:
            log.error("raw archive not acknowledged, asking the provider to retry", error=repr(exc))
            return metrics.outcome(provider, "broker_unavailable", Response(status_code=503))
        finally:
            admission.leave()
            metrics.PUBLISHES_IN_FLIGHT.dec()
        metrics.ACK_SECONDS.labels(provider=provider).observe(time.perf_counter() - started)
        return metrics.outcome(provider, "accepted", Response(status_code=200))

    return receive


def endpoint_routes(
    endpoint: WebhookEndpoint,
    secrets: WebhookSecrets,
    settings: IngestSettings,
    publisher: Publishes,
    admission: Admission,
    tracing: TracerProvider | None = None,
) -> list[Route]:
    """GET: the provider's handshake. POST: its deliveries, verified and archived."""
    name = endpoint.name
    per_minute = settings.handshakes_per_minute(name)
    # one bucket per client address: a caller spending its own checks cannot starve the provider's
    buckets = ClientBuckets(per_minute, per_minute / 60) if endpoint.rate_limited_code else None

    def refused(reason: str) -> None:
        metrics.HANDSHAKE_REFUSALS.labels(provider=name, reason=reason).inc()
        metrics.HANDSHAKES.labels(provider=name, outcome="refused").inc()

    async def handshake(request: Request) -> Response:
        if buckets is not None and endpoint.rate_limited_code is not None:
            now = time.monotonic()
            bucket = buckets.bucket(request.client.host if request.client else "", now)
            if not bucket.take(now):
                refused("rate_limited")
                return JSONResponse(
                    {
                        "code": endpoint.rate_limited_code,
                        "message": "too many handshakes from this client; try again later",
                    },
                    status_code=429,
                    headers={"retry-after": str(bucket.retry_after())},
                )
        answer = endpoint.handshake(request.query_params, secrets)
        if answer.status != 200:
            refused(answer.refusal or "refused")
        else:
            metrics.HANDSHAKES.labels(provider=name, outcome="accepted").inc()
        if answer.json is not None:
            return JSONResponse(dict(answer.json), status_code=answer.status)
        if answer.text is not None:
            return PlainTextResponse(answer.text, status_code=answer.status)
        return Response(status_code=answer.status)

    def verify(body: bytes, header: str | None) -> bool:
        return endpoint.verify(body, header, secrets)

    path = f"/webhooks/{name}"
    return [
        Route(path, handshake, methods=["GET"]),
        Route(
            path,
            receive_route(name, endpoint.signature_header, verify, settings, publisher, admission, tracing),
            methods=["POST"],
        ),
    ]


def webhook_routes(
    settings: IngestSettings, publisher: Publishes, tracing: TracerProvider | None = None
) -> list[Route]:
    """Every provider's endpoint from the registry; one without secrets configured is not served.

    The endpoints share one :class:`Admission`: the broker's capacity is the process's, not a
    provider's."""
    admission = Admission(settings.max_publishes_in_flight)
    routes: list[Route] = []
    for name, endpoint in registry.webhook_endpoints().items():
        secrets = settings.webhook_secrets(name)
        if secrets is not None:
            routes += endpoint_routes(endpoint, secrets, settings, publisher, admission, tracing)
    return routes
