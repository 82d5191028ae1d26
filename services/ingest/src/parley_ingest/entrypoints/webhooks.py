"""HTTP routes for provider webhooks: verify, archive durably, answer.

The path is lean and stateless: check method, size and content type, verify the signature on
the raw bytes, publish the raw record with acks=all, and only then answer 200. A broker that
does not acknowledge in time gets the provider a 503, so the provider retries.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from datetime import UTC, datetime

import orjson
from opentelemetry.sdk.trace import TracerProvider
from parley_providers.meta import webhook as meta_webhook
from parley_providers.x import webhook as x_webhook
from parley_shared.kafka import EventPublisher
from parley_shared.logging import get_logger
from parley_shared.tracing import span_from_headers
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from parley_ingest import metrics
from parley_ingest.domain import deliveries
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


def receive_route(
    provider: str,
    signature_header: str,
    verify: Verifier,
    settings: IngestSettings,
    publisher: EventPublisher,
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
        metrics.ACK_SECONDS.labels(provider=provider).observe(time.perf_counter() - started)
        return metrics.outcome(provider, "accepted", Response(status_code=200))

    return receive


def meta_routes(
    settings: IngestSettings, publisher: EventPublisher, tracing: TracerProvider | None = None
) -> list[Route]:
    """GET: the subscription handshake. POST: Pages, Instagram and WhatsApp deliveries."""
    secrets = settings.meta_secrets()
    verify_token = settings.meta_verify_token.get_secret_value().encode()

    async def handshake(request: Request) -> Response:
        params = request.query_params
        if params.get("hub.mode") == "subscribe" and hmac.compare_digest(
            params.get("hub.verify_token", "").encode(), verify_token
        ):
            metrics.HANDSHAKES.labels(provider="meta", outcome="accepted").inc()
            return PlainTextResponse(params.get("hub.challenge", ""))
        metrics.HANDSHAKES.labels(provider="meta", outcome="refused").inc()
        return Response(status_code=403)

    def verify(body: bytes, header: str | None) -> bool:
        return meta_webhook.verify_meta(body, header, secrets)

    return [
        Route("/webhooks/meta", handshake, methods=["GET"]),
        Route(
            "/webhooks/meta",
            receive_route("meta", "x-hub-signature-256", verify, settings, publisher, tracing),
            methods=["POST"],
        ),
    ]


def x_routes(
    settings: IngestSettings, publisher: EventPublisher, tracing: TracerProvider | None = None
) -> list[Route]:
    """GET: the CRC check (answered with the current secret). POST: account activity."""
    secrets = settings.x_secrets()
    if not secrets:
        return []

    # one bucket per client address: a caller spending its own checks cannot starve X's hourly one
    buckets = ClientBuckets(settings.x_crc_per_minute, settings.x_crc_per_minute / 60)

    def refuse(reason: str, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        metrics.CRC_REFUSALS.labels(reason=reason).inc()
        metrics.HANDSHAKES.labels(provider="x", outcome="refused").inc()
        body = {"code": f"crc_token_{reason}", "message": message}
        return JSONResponse(body, status_code=status, headers=headers)

    async def crc(request: Request) -> Response:
        # the CRC answer is the HMAC that signs POST bodies: answer only tokens of X's shape, few
        # per client (POST refuses what is not a JSON object, which no token is)
        now = time.monotonic()
        bucket = buckets.bucket(request.client.host if request.client else "", now)
        if not bucket.take(now):
            return refuse(
                "rate_limited",
                429,
                "too many CRC checks from this client; try again later",
                {"retry-after": str(bucket.retry_after())},
            )
        token = request.query_params.get("crc_token")
        if not token:
            return refuse("missing", 400, "crc_token is required")
        if not x_webhook.is_crc_token(token):
            return refuse(
                "malformed",
                400,
                f"crc_token must be 1-{x_webhook.CRC_TOKEN_MAX_CHARS} characters of A-Z a-z 0-9 + / = _ -",
            )
        metrics.HANDSHAKES.labels(provider="x", outcome="accepted").inc()
        return JSONResponse({"response_token": x_webhook.crc_response(token, secrets[0])})

    def verify(body: bytes, header: str | None) -> bool:
        return x_webhook.verify_x(body, header, secrets)

    return [
        Route("/webhooks/x", crc, methods=["GET"]),
        Route(
            "/webhooks/x",
            receive_route("x", "x-twitter-webhooks-signature", verify, settings, publisher, tracing),
            methods=["POST"],
        ),
    ]


def webhook_routes(
    settings: IngestSettings, publisher: EventPublisher, tracing: TracerProvider | None = None
) -> list[Route]:
    return [*meta_routes(settings, publisher, tracing), *x_routes(settings, publisher, tracing)]
