"""The provider sandbox: a local HTTP server that plays Meta's Graph API and the X API.

It answers the calls Parley's clients (:mod:`parley_providers`) make, with the same
paths, success bodies and error shapes, and keeps enough state to behave like the real thing:
OAuth codes that work once, tokens that expire and can be revoked, Pages a user can lose
access to, WhatsApp numbers to verify and register, customer-service windows, and a record of
everything "sent". Fault switches make the next N matching calls fail in the provider's shape.

Test set-up and inspection go through ``/_sandbox/...`` (JSON), or directly through the
:class:`SandboxState` object when the test runs the app in-process.

Run it with ``parley-sandbox --host 127.0.0.1 --port 8090`` (or ``python -m
parley_sandbox``), then point the services' Graph and X base URLs at it. The default
credentials are the development ones of ``scripts/devenv.py`` (Meta app ``dev-meta-app`` /
``dev-meta-app-secret``, X client ``dev-x-client`` / ``dev-x-client-secret``, X consumer secret
``dev-x-consumer-secret``, Account Activity webhook ``dev-x-webhook``, X Activity API webhook
``1000000000000000001``) and an app-only X Bearer
token ``dev-x-bearer-token``; see ``--help``. The clock is the wall clock plus ``clock_offset_s``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import socket
import time
from collections.abc import AsyncIterator, Sequence
from http import HTTPStatus
from typing import Literal

import uvicorn
from parley_providers.meta.errors import APP_RATE_LIMITED, SERVICE_UNAVAILABLE
from parley_providers.x import errors as x_errors
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from parley_sandbox.admin import _Admin, _admin_route
from parley_sandbox.instagram import InstagramApi
from parley_sandbox.login import LoginPages
from parley_sandbox.state import (
    _GRAPH_VERSION,
    DEFAULT_META_PERMISSIONS,
    DEFAULT_PAGE_TASKS,
    DEFAULT_X_SCOPES,
    Call,
    Fault,
    Provider,
    SandboxState,
    SentRequest,
)
from parley_sandbox.whatsapp import WhatsAppApi
from parley_sandbox.wire import GraphFailure, Handler, Incoming, Reply, XFailure, _parse_body, _x_problem
from parley_sandbox.x import XApi

__all__ = [
    "DEFAULT_META_PERMISSIONS",
    "DEFAULT_PAGE_TASKS",
    "DEFAULT_X_SCOPES",
    "Fault",
    "SandboxState",
    "SentRequest",
    "create_sandbox_app",
    "main",
    "serve_sandbox",
]


class _Providers(WhatsAppApi, InstagramApi, XApi):
    """Every imitated provider API; each handler raises GraphFailure/XFailure or returns a Reply."""

    def graph_node(self, call: Incoming) -> Reply:
        """``GET /{node}``: Graph answers for whatever the node is; the sandbox plays three kinds."""
        node = call.path("node")
        if node in self.state.whatsapp_numbers:
            return self.whatsapp_phone_number(call)
        if any(n.waba_id == node for n in self.state.whatsapp_numbers.values()):
            return self.waba_node(call)
        return self.ig_user_fields(call)


def _fault_response(fault: Fault, provider: Provider) -> Response:
    message = fault.message or f"Sandbox fault: HTTP {fault.status}"
    if fault.plain:
        return PlainTextResponse(HTTPStatus(fault.status).phrase, status_code=fault.status)
    if provider == "x":
        headers: dict[str, str] = {}
        if fault.status == 429:
            wait = fault.retry_after_s if fault.retry_after_s is not None else 900
            headers = {
                "x-rate-limit-limit": "100",
                "x-rate-limit-remaining": "0",
                "x-rate-limit-reset": str(math.ceil(time.time() + wait)),
            }
        failure = _x_problem(fault.status, message)
        if fault.code is not None:
            failure.body["errors"] = [{"code": fault.code, "message": message}]
        failure.headers = headers
        return failure.response()
    code = fault.code
    if code is None:
        code = (
            APP_RATE_LIMITED if fault.status == 429 else SERVICE_UNAVAILABLE if fault.status >= 500 else 100
        )
    headers = {}
    if fault.retry_after_s is not None:
        usage = {
            "sandbox": [
                {
                    "type": "pages",
                    "call_count": 100,
                    "total_cputime": 100,
                    "total_time": 100,
                    "estimated_time_to_regain_access": math.ceil(fault.retry_after_s / 60),
                }
            ]
        }
        headers["x-business-use-case-usage"] = json.dumps(usage)
    return GraphFailure(fault.status, code, fault.subcode, message, headers=headers).response()


_HIDDEN_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
_FILE_TYPES = frozenset(
    {"application/octet-stream", "image/jpeg", "image/png", "application/pdf", "video/mp4"}
)


def _provider_route(
    state: SandboxState,
    path: str,
    handler: Handler,
    methods: list[str],
    provider: Provider,
    send: Literal["meta", "whatsapp", "x"] | None = None,
) -> Route:
    async def endpoint(request: Request) -> Response:
        query = dict(request.query_params)
        raw = await request.body()
        content_type = request.headers.get("content-type", "")
        body = _parse_body(raw, content_type)
        upload_session = request.url.path.rsplit("/", 1)[-1].lower().startswith(("upload:", "upload%3a"))
        if body is None and (content_type.split(";")[0].strip() in _FILE_TYPES or upload_session):
            body = {}  # a Resumable Upload API body: the file's bytes (``Incoming.raw``)
        result_id: str | None = None
        fault = state.take_fault(request.method, request.url.path)
        if fault is not None:
            response = _fault_response(fault, provider)
        else:
            try:
                version_named = provider == "graph" or "version" in request.path_params
                if version_named and not _GRAPH_VERSION.match(str(request.path_params.get("version"))):
                    raise GraphFailure(400, 2500, None, f"Unknown path components: {request.url.path}")
                if body is None:
                    if provider != "x":
                        raise GraphFailure(400, 100, None, "(#100) The request body could not be parsed")
                    raise _x_problem(
                        400,
                        "The request body is not valid JSON.",
                        x_errors.INVALID_REQUEST,
                    )
                reply = handler(Incoming(request, query, body, raw))
                response = JSONResponse(reply.payload, status_code=reply.status)
                result_id = reply.result_id
            except (GraphFailure, XFailure) as failure:
                response = failure.response()
        now = state.now()
        version = request.path_params.get("version") if provider != "x" else None
        state.calls.append(Call(request.method, request.url.path, response.status_code, now, version))
        if send is not None:
            kind: Literal["meta", "whatsapp", "x"] = send
            if send == "meta" and request.path_params.get("node") in state.whatsapp_numbers:
                kind = "whatsapp"
            state.sent.append(
                SentRequest(
                    provider=kind,
                    method=request.method,
                    path=request.url.path,
                    query={k: v for k, v in query.items() if k != "access_token"},
                    headers={k: v for k, v in request.headers.items() if k.lower() not in _HIDDEN_HEADERS},
                    body={k: v for k, v in (body or {}).items() if k != "access_token"},
                    status=response.status_code,
                    result_id=result_id,
                    at=now,
                    version=version,
                )
            )
        return response

    return Route(path, endpoint, methods=methods)


async def _not_found(request: Request) -> Response:
    if request.url.path.startswith("/2/"):
        return _x_problem(
            404,
            "The requested resource was not found.",
            x_errors.RESOURCE_NOT_FOUND,
        ).response()
    return GraphFailure(400, 2500, None, f"Unknown path components: {request.url.path}").response()


def create_sandbox_app(state: SandboxState | None = None) -> Starlette:
    """The sandbox as an ASGI app; ``app.state.sandbox`` is its :class:`SandboxState`."""
    state = state if state is not None else SandboxState()
    api = _Providers(state)
    admin = _Admin(state)
    login = LoginPages(state)
    get, post, get_post, get_post_delete = ["GET"], ["POST"], ["GET", "POST"], ["GET", "POST", "DELETE"]

    def graph(path: str, handler: Handler, methods: list[str], send: bool = False) -> Route:
        return _provider_route(
            state, "/{version}" + path, handler, methods, "graph", "meta" if send else None
        )

    def instagram(path: str, handler: Handler, methods: list[str], send: bool = False) -> Route:
        # /instagram-api stands for api.instagram.com, /instagram for graph.instagram.com
        return _provider_route(state, path, handler, methods, "instagram", "meta" if send else None)

    def x(path: str, handler: Handler, methods: list[str], send: bool = False) -> Route:
        return _provider_route(state, "/2" + path, handler, methods, "x", "x" if send else None)

    routes: list[BaseRoute] = [
        _admin_route("/_sandbox/health", admin.health, get),
        _admin_route("/_sandbox/reset", admin.reset, post),
        _admin_route("/_sandbox/clock", admin.clock, get_post),
        _admin_route("/_sandbox/sent", admin.sent, ["GET", "DELETE"]),
        _admin_route("/_sandbox/calls", admin.calls, ["GET", "DELETE"]),
        _admin_route("/_sandbox/tokens", admin.tokens, get),
        _admin_route("/_sandbox/faults", admin.faults, get_post_delete),
        _admin_route("/_sandbox/windows", admin.windows, post),
        _admin_route("/_sandbox/meta/users", admin.meta_users, post),
        _admin_route("/_sandbox/meta/codes", admin.meta_codes, post),
        _admin_route("/_sandbox/instagram/accounts", admin.instagram_accounts, post),
        _admin_route("/_sandbox/instagram/mentions", admin.instagram_mentions, post),
        _admin_route("/_sandbox/meta/deliver", admin.meta_deliver, post),
        _admin_route("/_sandbox/instagram/accounts/{account_id}", admin.instagram_account, get),
        _admin_route(
            "/_sandbox/instagram/accounts/{account_id}/unsubscribe", admin.instagram_unsubscribe, post
        ),
        _admin_route("/_sandbox/meta/tokens/{token}/revoke", admin.meta_revoke, post),
        _admin_route("/_sandbox/meta/users/{user_id}/permissions", admin.meta_permissions, post),
        _admin_route("/_sandbox/meta/users/{user_id}/deauthorize", admin.meta_deauthorize, post),
        _admin_route(
            "/_sandbox/meta/users/{user_id}/remove-page-access/{page_id}", admin.meta_remove_page, post
        ),
        _admin_route("/_sandbox/meta/pages/{page_id}", admin.meta_page, get),
        _admin_route("/_sandbox/meta/pages/{page_id}/unsubscribe", admin.meta_page_unsubscribe, post),
        _admin_route("/_sandbox/whatsapp/numbers", admin.whatsapp_numbers, post),
        _admin_route("/_sandbox/whatsapp/numbers/{number_id}", admin.whatsapp_number, get),
        _admin_route("/_sandbox/whatsapp/numbers/{number_id}/last-code", admin.whatsapp_last_code, get),
        _admin_route("/_sandbox/whatsapp/templates", admin.whatsapp_templates, get),
        _admin_route("/_sandbox/whatsapp/templates/{template_id}", admin.whatsapp_template_review, post),
        _admin_route("/_sandbox/meta/webhook", admin.meta_webhook, post),
        _admin_route("/_sandbox/x/users", admin.x_users, post),
        _admin_route("/_sandbox/x/codes", admin.x_codes, post),
        _admin_route("/_sandbox/x/webhooks", admin.x_webhooks, post),
        _admin_route("/_sandbox/x/webhooks/{webhook_id}", admin.x_webhook, get),
        _admin_route("/_sandbox/x/tokens/{token}/revoke", admin.x_revoke, post),
        _admin_route("/_sandbox/x/users/{user_id}/revoke", admin.x_revoke_grant, post),
        _admin_route("/_sandbox/x/webhooks/{webhook_id}/crc", admin.x_webhook_crc, get_post),
        _admin_route("/_sandbox/x/activity", admin.x_activity, get),
        _admin_route("/_sandbox/x/activity/deliver", admin.x_activity_deliver, post),
        _admin_route("/_sandbox/x/dms", admin.x_dms, post),
        _admin_route("/_sandbox/x/deliveries", admin.x_deliveries, ["GET", "DELETE"]),
        # the login pages a browser is sent to: www.facebook.com/{version}/dialog/oauth,
        # www.instagram.com/oauth/authorize (here under /instagram-www), x.com/i/oauth2/authorize
        Route("/{version}/dialog/oauth", login.facebook, methods=get_post),
        Route("/instagram-www/oauth/authorize", login.instagram, methods=get_post),
        Route("/i/oauth2/authorize", login.x, methods=get_post),
        # X API v2
        x("/oauth2/token", api.x_token_endpoint, post),
        x("/users/me", api.x_me, get),
        x("/account_activity/webhooks/{webhook_id}/subscriptions/all", api.x_subscribe, post),
        x(
            "/account_activity/webhooks/{webhook_id}/subscriptions/{user_id}/all",
            api.x_unsubscribe,
            ["DELETE"],
        ),
        x("/activity/subscriptions", api.x_activity_subscriptions, get_post),
        x("/activity/subscriptions/{subscription_id}", api.x_activity_subscription, ["DELETE"]),
        x("/dm_conversations/with/{participant_id}/messages", api.x_send_dm, post, send=True),
        x("/tweets", api.x_post, post, send=True),
        # Business Login for Instagram and graph.instagram.com
        instagram("/instagram-api/oauth/access_token", api.instagram_code_exchange, post),
        instagram("/instagram/access_token", api.instagram_exchange, get),
        instagram("/instagram/refresh_access_token", api.instagram_refresh, get),
        instagram("/instagram/{version}/me", api.instagram_me, get),
        instagram("/instagram/{version}/me/subscribed_apps", api.instagram_subscribe, get_post),
        instagram("/instagram/{version}/me/messages", api.instagram_send, post, send=True),
        instagram("/instagram/{version}/{node}/replies", api.instagram_comment_reply, post, send=True),
        instagram("/instagram/{version}/{node}", api.instagram_user_fields, get),
        # Graph API
        graph("/oauth/access_token", api.oauth_access_token, get_post),
        graph("/debug_token", api.debug_token, get),
        graph("/me/permissions", api.me_permissions, get),
        graph("/me/accounts", api.me_accounts, get),
        graph("/{node}/subscribed_apps", api.subscribed_apps, get_post_delete),
        graph("/{node}/messages", api.messages, post, send=True),
        graph("/{node}/take_thread_control", api.thread_control, post),
        graph("/{node}/release_thread_control", api.thread_control, post),
        graph("/{node}/thread_control", api.whatsapp_thread_control, post),
        graph("/{node}/comments", api.comments, post, send=True),
        graph("/{node}/replies", api.replies, post, send=True),
        graph("/{node}/phone_numbers", api.waba_phone_numbers, get),
        graph("/{node}/request_code", api.request_code, post),
        graph("/{node}/verify_code", api.verify_code, post),
        graph("/{node}/register", api.register, post),
        graph("/{node}/message_templates", api.message_templates, get_post_delete),
        graph("/{node}/whatsapp_business_profile", api.business_profile, get_post),
        graph("/{node}/uploads", api.start_upload, post),
        graph("/{node}", api.upload_data, post),
        # one Graph node: a WhatsApp number's fields or an IG user's mentions (after every fixed
        # one-segment path above)
        graph("/{node}", api.graph_node, get),
        Route("/{path:path}", _not_found, methods=["GET", "POST", "DELETE", "PUT", "PATCH"]),
    ]
    app = Starlette(routes=routes)
    app.state.sandbox = state
    return app


@contextlib.asynccontextmanager
async def serve_sandbox(
    state: SandboxState | None = None, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Serve the sandbox with uvicorn in this event loop; yields its base URL.

    ``port=0`` picks a free port. For tests and local tools; ``main`` is the long-running form.
    """
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets whose proto says TCP, and
    # without it every keep-alive request waits out a 40 ms delayed ACK
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    config = uvicorn.Config(create_sandbox_app(state), log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()  # surfaces the start-up error
                raise RuntimeError("the sandbox server stopped during start-up")
            await asyncio.sleep(0.01)
        bound_host, bound_port = sock.getsockname()[:2]
        yield (
            f"http://[{bound_host}]:{bound_port}"
            if ":" in bound_host
            else f"http://{bound_host}:{bound_port}"
        )
    finally:
        server.should_exit = True
        await task
        sock.close()


DEV_X_ACTIVITY_WEBHOOK = "1000000000000000001"
"""The development stack's X Activity API webhook id (PARLEY_X_ACTIVITY_WEBHOOK_ID)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parley-sandbox",
        description="A local imitation of Meta's Graph API and the X API, with state and fault switches.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--meta-app-id", default=SandboxState.meta_app_id)
    parser.add_argument("--meta-app-secret", default=SandboxState.meta_app_secret)
    parser.add_argument("--x-client-id", default=SandboxState.x_client_id)
    parser.add_argument("--x-client-secret", default=SandboxState.x_client_secret)
    parser.add_argument(
        "--x-webhook-id",
        action="append",
        help="an X webhook id to register (repeatable; default: dev-x-webhook for the Account Activity "
        f"API and {DEV_X_ACTIVITY_WEBHOOK} for the X Activity API, whose ids are numeric)",
    )
    parser.add_argument(
        "--x-webhook-url",
        help="where the registered X webhooks receive deliveries (e.g. ingest's /webhooks/x; default: none)",
    )
    parser.add_argument("--x-consumer-secret", default=SandboxState.x_consumer_secret)
    parser.add_argument("--x-bearer-token", default=SandboxState.x_bearer_token)
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument(
        "--access-log", action="store_true", help="log each request line (may show query-string tokens)"
    )
    return parser


def state_from_args(args: argparse.Namespace) -> SandboxState:
    state = SandboxState(
        meta_app_id=args.meta_app_id,
        meta_app_secret=args.meta_app_secret,
        x_client_id=args.x_client_id,
        x_client_secret=args.x_client_secret,
        x_consumer_secret=args.x_consumer_secret,
        x_bearer_token=args.x_bearer_token,
    )
    for webhook_id in args.x_webhook_id or ["dev-x-webhook", DEV_X_ACTIVITY_WEBHOOK]:
        state.x_webhooks.setdefault(webhook_id, [])
        if args.x_webhook_url:
            state.x_webhook_urls[webhook_id] = args.x_webhook_url
    return state


def main(argv: Sequence[str] | None = None) -> None:
    """``parley-sandbox``: serve the sandbox until SIGINT/SIGTERM."""
    args = build_parser().parse_args(argv)
    uvicorn.run(
        create_sandbox_app(state_from_args(args)),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.access_log,
        lifespan="off",
    )
