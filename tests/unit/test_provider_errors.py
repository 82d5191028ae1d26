"""Provider error classification and parsing: pure, no network (httpx.MockTransport at most)."""

from __future__ import annotations

import json
import pickle
import time
from typing import Any

import httpx
import pytest
from parley_providers import ErrorKind, ProviderError, UserToken
from parley_providers.meta.client import GraphClient
from parley_providers.meta.errors import classify_graph_error, graph_error, meta_error
from parley_providers.meta.errors import reauth_reason as meta_reauth_reason
from parley_providers.x.client import XClient
from parley_providers.x.errors import classify_x_error, x_error

pytestmark = pytest.mark.unit

K = ErrorKind


@pytest.mark.parametrize(
    ("status", "code", "subcode", "expected"),
    [
        # the token is dead, whatever the subcode
        (400, 190, None, K.REAUTH_REQUIRED),
        (400, 190, 458, K.REAUTH_REQUIRED),  # app not installed
        (400, 190, 460, K.REAUTH_REQUIRED),  # password changed
        (400, 190, 463, K.REAUTH_REQUIRED),  # expired
        (400, 190, 467, K.REAUTH_REQUIRED),  # invalid session
        (401, 190, None, K.REAUTH_REQUIRED),
        (400, 102, None, K.REAUTH_REQUIRED),
        # permissions: code 10 and the 200-299 range
        (403, 10, None, K.PERMISSION_MISSING),
        (400, 10, 1234, K.PERMISSION_MISSING),
        (403, 200, None, K.PERMISSION_MISSING),
        (403, 210, None, K.PERMISSION_MISSING),
        (403, 230, None, K.PERMISSION_MISSING),
        (403, 299, None, K.PERMISSION_MISSING),
        (400, 300, None, K.INVALID_REQUEST),
        (400, 199, None, K.INVALID_REQUEST),
        # Messenger and Instagram: a closed window is code 10 with its own subcode
        (400, 10, 2018278, K.WINDOW_CLOSED),
        (400, 10, 2534022, K.WINDOW_CLOSED),
        # rate limits: app, user, page, custom, business use case, WhatsApp
        (400, 4, None, K.RATE_LIMITED),
        (400, 17, None, K.RATE_LIMITED),
        (400, 32, None, K.RATE_LIMITED),
        (400, 613, None, K.RATE_LIMITED),
        (400, 80001, None, K.RATE_LIMITED),
        (400, 80006, None, K.RATE_LIMITED),
        (400, 80009, None, K.RATE_LIMITED),
        (400, 80010, None, K.INVALID_REQUEST),
        (400, 130429, None, K.RATE_LIMITED),
        (400, 131056, None, K.RATE_LIMITED),
        (400, 131048, None, K.RATE_LIMITED),
        # WhatsApp re-engagement
        (400, 131047, None, K.WINDOW_CLOSED),
        # transient
        (500, 1, None, K.RETRYABLE),
        (400, 1, None, K.RETRYABLE),
        (500, 2, None, K.RETRYABLE),
        (500, 131000, None, K.RETRYABLE),
        (400, 131016, None, K.RETRYABLE),
        # a Page temporarily restricted from sending: neither a lost permission nor transient
        (400, 10, 1893063, K.SENDING_RESTRICTED),
        (403, 10, 1893063, K.SENDING_RESTRICTED),
        (500, 10, 1893063, K.SENDING_RESTRICTED),
        # the codes win over the status
        (500, 190, 463, K.REAUTH_REQUIRED),
        (429, 131047, None, K.WINDOW_CLOSED),
        # no recognised code: the status decides
        (429, None, None, K.RATE_LIMITED),
        (429, 100, None, K.RATE_LIMITED),
        (500, None, None, K.RETRYABLE),
        (502, 100, None, K.RETRYABLE),
        (503, None, None, K.RETRYABLE),
        (400, 100, None, K.INVALID_REQUEST),
        (400, 100, 33, K.INVALID_REQUEST),
        (400, 131009, None, K.INVALID_REQUEST),
        (400, 136025, None, K.INVALID_REQUEST),
        (404, None, None, K.INVALID_REQUEST),
        (400, None, None, K.INVALID_REQUEST),
    ],
)
def test_classify_graph_error(
    status: int, code: int | None, subcode: int | None, expected: ErrorKind
) -> None:
    assert classify_graph_error(status, code, subcode) is expected


@pytest.mark.parametrize(
    ("status", "code", "problem", "oauth", "expected"),
    [
        (401, None, "about:blank", None, K.REAUTH_REQUIRED),
        (400, None, None, "invalid_grant", K.REAUTH_REQUIRED),
        (401, None, None, "unauthorized_client", K.INVALID_REQUEST),
        (401, None, None, "invalid_client", K.INVALID_REQUEST),
        (400, None, None, "invalid_request", K.INVALID_REQUEST),
        (429, None, "about:blank", None, K.RATE_LIMITED),
        (403, None, "https://api.twitter.com/2/problems/usage-capped", None, K.RATE_LIMITED),
        (400, 88, None, None, K.RATE_LIMITED),
        (400, 89, None, None, K.REAUTH_REQUIRED),
        (500, None, None, None, K.RETRYABLE),
        (503, None, "about:blank", None, K.RETRYABLE),
        (403, None, "https://api.twitter.com/2/problems/client-forbidden", None, K.PERMISSION_MISSING),
        (
            403,
            None,
            "https://api.twitter.com/2/problems/unsupported-authentication",
            None,
            K.PERMISSION_MISSING,
        ),
        (403, None, "about:blank", None, K.INVALID_REQUEST),  # duplicate post, closed DMs
        (400, None, "https://api.twitter.com/2/problems/invalid-request", None, K.INVALID_REQUEST),
        (404, None, "https://api.twitter.com/2/problems/resource-not-found", None, K.INVALID_REQUEST),
    ],
)
def test_classify_x_error(
    status: int, code: int | None, problem: str | None, oauth: str | None, expected: ErrorKind
) -> None:
    assert classify_x_error(status, code, problem, oauth) is expected


def test_a_restricted_page_is_never_read_as_a_revoked_permission() -> None:
    assert meta_reauth_reason(10, 1893063) == "sending_restricted"
    assert meta_reauth_reason(10, None) == "permission_revoked"


def test_provider_error_carries_its_fields_and_pickles() -> None:
    error = meta_error("meta", 400, 190, 463, "Session has expired", trace_id="AbC", retry_after_s=None)
    assert (error.provider, error.status, error.code, error.subcode) == ("meta", 400, 190, 463)
    assert error.kind is ErrorKind.REAUTH_REQUIRED  # classified when not given
    assert str(error) == "meta HTTP 400 code=190 subcode=463 [reauth_required]: Session has expired"
    explicit = ProviderError("x", 400, None, None, "bad refresh", ErrorKind.REAUTH_REQUIRED, error_type="x")
    assert explicit.kind is ErrorKind.REAUTH_REQUIRED
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes; crosses processes intact
    assert isinstance(copy, ProviderError)
    assert (copy.kind, copy.code, copy.subcode, copy.trace_id, str(copy)) == (
        error.kind,
        190,
        463,
        "AbC",
        str(error),
    )


def test_tokens_stay_out_of_reprs() -> None:
    token = UserToken("EAAsecretsecretsecret", None, "refresh-secret", ("a",))
    assert "EAAsecret" not in repr(token) and "refresh-secret" not in repr(token)


def graph_response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.Response(status, content=content, headers=headers)


def test_graph_error_reads_the_error_object() -> None:
    response = graph_response(
        400,
        {
            "error": {
                "message": "(#131047) Re-engagement message",
                "type": "OAuthException",
                "code": 131047,
                "error_data": {"messaging_product": "whatsapp", "details": "24 hours have passed"},
                "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam",
            }
        },
    )
    error = graph_error("whatsapp", response)
    assert (error.provider, error.status, error.code, error.subcode) == ("whatsapp", 400, 131047, None)
    assert error.kind is ErrorKind.WINDOW_CLOSED
    assert error.message == "(#131047) Re-engagement message (24 hours have passed)"
    assert (error.error_type, error.trace_id) == ("OAuthException", "Az8or2yhqkZfEZ-_4Qn_Bam")


def test_graph_error_takes_string_codes_and_usage_headers() -> None:
    usage = {"1045": [{"type": "messenger", "call_count": 100, "estimated_time_to_regain_access": 7}]}
    response = graph_response(
        400,
        {"error": {"message": "limit", "code": "80006", "error_subcode": "2446079"}},
        {"x-business-use-case-usage": json.dumps(usage)},
    )
    error = graph_error("meta", response)
    assert (error.code, error.subcode, error.kind, error.retry_after_s) == (
        80006,
        2446079,
        ErrorKind.RATE_LIMITED,
        420.0,
    )


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (502, b"<html>Bad Gateway</html>", ErrorKind.RETRYABLE),
        (404, b"", ErrorKind.INVALID_REQUEST),
        (429, b'{"unexpected": true}', ErrorKind.RATE_LIMITED),
    ],
)
def test_graph_error_without_an_error_object(status: int, body: bytes, kind: ErrorKind) -> None:
    error = graph_error("meta", graph_response(status, body))
    assert (error.status, error.code, error.kind) == (status, None, kind)
    assert error.message


def test_x_error_shapes() -> None:
    problem = x_error(
        graph_response(
            403,
            {"title": "Forbidden", "detail": "duplicate content", "type": "about:blank", "status": 403},
        )
    )
    assert (problem.provider, problem.kind, problem.message, problem.error_type) == (
        "x",
        ErrorKind.INVALID_REQUEST,
        "duplicate content",
        "about:blank",
    )
    errors = x_error(graph_response(400, {"errors": [{"code": 88, "message": "Rate limit exceeded"}]}))
    assert (errors.code, errors.kind, errors.message) == (88, ErrorKind.RATE_LIMITED, "Rate limit exceeded")
    oauth = x_error(graph_response(400, {"error": "invalid_grant", "error_description": "revoked"}))
    assert (oauth.kind, oauth.message, oauth.error_type) == (
        ErrorKind.REAUTH_REQUIRED,
        "revoked",
        "invalid_grant",
    )
    reset = str(int(time.time()) + 60)
    limited = x_error(graph_response(429, {"title": "Too Many Requests"}, {"x-rate-limit-reset": reset}))
    assert limited.kind is ErrorKind.RATE_LIMITED
    assert limited.retry_after_s is not None and 55 <= limited.retry_after_s <= 61
    retry_after = x_error(graph_response(503, b"", {"retry-after": "12"}))
    assert (retry_after.kind, retry_after.retry_after_s) == (ErrorKind.RETRYABLE, 12.0)


def mock_http(handler: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def test_a_2xx_without_the_expected_fields_is_a_retryable_provider_fault() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/messages"):
            return httpx.Response(200, json={"recipient_id": "1"})
        return httpx.Response(200, content=b"<html>maintenance</html>")

    async with mock_http(handler) as http:
        graph = GraphClient(http, "https://graph.test", "app", "secret")
        error = await graph_call_fails(
            graph.send_message("1", "t", {"recipient": {"id": "2"}, "message": {}})
        )
        assert (error.status, error.kind) == (200, ErrorKind.RETRYABLE)
        error = await graph_call_fails(graph.permissions("t"))
        assert error.kind is ErrorKind.RETRYABLE


async def graph_call_fails(awaitable: Any) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await awaitable
    return info.value


async def test_requests_put_tokens_in_headers_and_escape_ids() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/comments"):
            return httpx.Response(200, json={"id": "1_2"})
        return httpx.Response(201, json={"data": {"dm_event_id": "42"}})

    async with mock_http(handler) as http:
        graph = GraphClient(http, "https://graph.test/", "app", "secret", api_version="v22.0")
        assert await graph.reply_to_comment("../me/feed?x=1", "page-token", "hi") == "1_2"
        x = XClient(http, "https://api.x.test", "cid", "csecret")
        assert await x.send_dm("user-token", "7/8", "hello") == "42"
    comment, dm = seen
    assert comment.url.raw_path == b"/v22.0/..%2Fme%2Ffeed%3Fx%3D1/comments"
    assert comment.headers["authorization"] == "Bearer page-token"
    assert "page-token" not in str(comment.url)
    assert json.loads(comment.content) == {"message": "hi"}
    assert dm.url.raw_path == b"/2/dm_conversations/with/7%2F8/messages"
    assert dm.headers["authorization"] == "Bearer user-token"
