"""The Graph API client: Facebook Login, Pages and their webhooks, Messenger and Instagram
sends, comment replies, and the WhatsApp Cloud API.

Tokens travel in the ``Authorization`` header wherever Graph allows it, so they stay out of URLs
(and out of any access log). Only the OAuth code exchanges and ``debug_token``'s ``input_token``
are query parameters, because that is the only form Graph accepts for them. Nothing here logs,
and no :class:`ProviderError` text ever contains a token.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
from pydantic import SecretStr

from parley_providers.errors import ErrorKind, ProviderError
from parley_providers.http import expiry, int_or_none, json_object, require_str, segment, send
from parley_providers.meta.errors import graph_error
from parley_providers.meta.versions import DEFAULT_GRAPH_API_VERSION
from parley_providers.oauth import UserToken

__all__ = [
    "MENTIONED_COMMENT_FIELDS",
    "MENTIONED_MEDIA_FIELDS",
    "GraphClient",
    "GraphSettings",
    "Mentioned",
    "PageInfo",
    "TokenGrants",
    "WhatsAppPhoneNumber",
    "graph_client",
]


GRAPH_BASE_URL = "https://graph.facebook.com"
"""Meta's Graph API host: the default of every service's ``PARLEY_GRAPH_BASE_URL``."""


class GraphSettings(Protocol):
    """The settings a service gives Meta's clients (policy's and onboarding's have them)."""

    graph_base_url: str
    graph_api_version: str
    """The Graph API version every path starts with; empty: :data:`DEFAULT_GRAPH_API_VERSION`."""
    meta_app_id: str
    meta_app_secret: SecretStr


@dataclass(frozen=True)
class PageInfo:
    id: str
    name: str
    access_token: str
    tasks: tuple[str, ...]
    instagram_business_account_id: str | None
    instagram_username: str | None

    def __repr__(self) -> str:
        return (
            f"PageInfo(id={self.id!r}, name={self.name!r}, tasks={self.tasks!r}, "
            f"instagram_business_account_id={self.instagram_business_account_id!r}, "
            f"instagram_username={self.instagram_username!r})"
        )


@dataclass(frozen=True)
class TokenGrants:
    """What ``debug_token`` says of a token: valid or not, its end (None: never), its scopes, and
    per granular scope the ids of the objects it was granted on."""

    valid: bool
    expires_at: datetime | None
    scopes: tuple[str, ...]
    targets: dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class WhatsAppPhoneNumber:
    """One business phone number of a WhatsApp Business Account, as the Graph API lists it."""

    id: str
    display_phone_number: str
    verified_name: str


MENTIONED_MEDIA_FIELDS = ("id", "caption", "username", "timestamp", "media_type", "permalink")
"""IG Media fields read for a caption mention (Instagram Platform reference, IG User
``mentioned_media``: ``GET /{ig-user-id}?fields=mentioned_media.media_id({media-id}){fields}``,
whose ``{fields}`` are IG Media fields)."""
MENTIONED_COMMENT_FIELDS = ("id", "text", "username", "timestamp")
"""IG Comment fields read for a comment mention (IG User ``mentioned_comment``:
``GET /{ig-user-id}?fields=mentioned_comment.comment_id({comment-id}){fields}``, whose
``{fields}`` are IG Comment fields; ``username`` is the comment author's)."""


@dataclass(frozen=True)
class Mentioned:
    """What Graph answers about a media or comment that @mentions a business account."""

    id: str
    text: str | None
    """The caption (media) or the comment's text."""
    username: str | None
    """Its author's Instagram username."""
    timestamp: str | None = None
    media_type: str | None = None
    permalink: str | None = None


def mentioned_fields(kind: str, object_id: str) -> str:
    """The ``fields`` parameter of a mention lookup: ``mentioned_media.media_id(ID){...}`` or
    ``mentioned_comment.comment_id(ID){...}``. The id goes inside the expression: digits only."""
    if not object_id.isascii() or not object_id.isdigit():
        raise ProviderError(
            "meta", 0, None, None, "a mentioned object's id is digits", ErrorKind.INVALID_REQUEST
        )
    if kind == "mentioned_media":
        return f"mentioned_media.media_id({object_id}){{{','.join(MENTIONED_MEDIA_FIELDS)}}}"
    if kind == "mentioned_comment":
        return f"mentioned_comment.comment_id({object_id}){{{','.join(MENTIONED_COMMENT_FIELDS)}}}"
    raise ProviderError("meta", 0, None, None, f"no mention lookup {kind!r}", ErrorKind.INVALID_REQUEST)


def mentioned_of(provider: str, kind: str, data: dict[str, Any]) -> Mentioned:
    """The mentioned object out of a lookup's answer (``{"mentioned_media": {...}, "id": ...}``)."""
    found = data.get(kind)
    if not isinstance(found, dict):
        raise ProviderError(provider, 200, None, None, f"the answer has no {kind}", ErrorKind.INVALID_REQUEST)
    text = found.get("caption") if kind == "mentioned_media" else found.get("text")
    return Mentioned(
        id=require_str(provider, 200, found, "id"),
        text=text if isinstance(text, str) else None,
        username=found.get("username") if isinstance(found.get("username"), str) else None,
        timestamp=found.get("timestamp") if isinstance(found.get("timestamp"), str) else None,
        media_type=found.get("media_type") if isinstance(found.get("media_type"), str) else None,
        permalink=found.get("permalink") if isinstance(found.get("permalink"), str) else None,
    )


class GraphClient:
    """Meta's Graph API: Facebook Login, Pages, Messenger, Instagram and the WhatsApp Cloud API."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        app_id: str,
        app_secret: str,
        api_version: str | None = None,
    ) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._app_id = app_id
        self._app_secret = app_secret
        self._version = (api_version or DEFAULT_GRAPH_API_VERSION).strip("/")

    def __repr__(self) -> str:
        return f"GraphClient(base_url={self._base!r}, app_id={self._app_id!r}, version={self._version!r})"

    @property
    def api_version(self) -> str:
        """The Graph API version every call's path starts with."""
        return self._version

    async def _call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        params: dict[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
        provider: str = "meta",
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        url = f"{self._base}/{self._version}/{path}"
        response = await send(
            self._http, provider, method, url, params=params, json=json_body, headers=headers
        )
        if not response.is_success:
            raise graph_error(provider, response)
        return json_object(provider, response)

    def _app_token(self) -> str:
        return f"{self._app_id}|{self._app_secret}"

    # ---- Facebook Login

    async def exchange_code(self, code: str, redirect_uri: str) -> UserToken:
        """Trade a Login dialog ``code`` for a short-lived user token."""
        data = await self._call(
            "GET",
            "oauth/access_token",
            params={
                "client_id": self._app_id,
                "client_secret": self._app_secret,
                "redirect_uri": redirect_uri,
                "code": code,
            },
        )
        token = require_str("meta", 200, data, "access_token")
        return UserToken(access_token=token, expires_at=expiry(data.get("expires_in")))

    async def exchange_signup_code(self, code: str) -> str:
        """Trade the code WhatsApp's Embedded Signup gave the browser for the business's token
        (a business integration system user access token): ``GET /oauth/access_token`` with the
        app's id and secret and the code, no ``redirect_uri`` (WhatsApp Business Platform,
        "Onboarding business customers as a Tech Provider", step 1). The code is single-use."""
        data = await self._call(
            "GET",
            "oauth/access_token",
            params={"client_id": self._app_id, "client_secret": self._app_secret, "code": code},
        )
        return require_str("meta", 200, data, "access_token")

    async def long_lived_token(self, short_lived: str) -> UserToken:
        """Trade a short-lived user token for a long-lived one (about 60 days)."""
        data = await self._call(
            "GET",
            "oauth/access_token",
            params={
                "grant_type": "fb_exchange_token",
                "client_id": self._app_id,
                "client_secret": self._app_secret,
                "fb_exchange_token": short_lived,
            },
        )
        token = require_str("meta", 200, data, "access_token")
        return UserToken(access_token=token, expires_at=expiry(data.get("expires_in")))

    async def permissions(self, user_token: str) -> dict[str, str]:
        """Every permission the user was asked for: ``{"pages_messaging": "granted", ...}``."""
        data = await self._call("GET", "me/permissions", token=user_token)
        result: dict[str, str] = {}
        for item in data.get("data") or []:
            if isinstance(item, dict) and isinstance(item.get("permission"), str):
                result[item["permission"]] = str(item.get("status", ""))
        return result

    async def pages(self, user_token: str) -> list[PageInfo]:
        """The Pages the user granted, each with its Page token and linked Instagram account."""
        params = {
            "fields": "id,name,access_token,tasks,instagram_business_account{id,username}",
            "limit": "100",
        }
        pages: list[PageInfo] = []
        while True:
            data = await self._call("GET", "me/accounts", token=user_token, params=params)
            for item in data.get("data") or []:
                if not isinstance(item, dict):
                    continue
                ig = item.get("instagram_business_account")
                ig = ig if isinstance(ig, dict) else {}
                pages.append(
                    PageInfo(
                        id=require_str("meta", 200, item, "id"),
                        name=str(item.get("name", "")),
                        access_token=require_str("meta", 200, item, "access_token"),
                        tasks=tuple(str(t) for t in item.get("tasks") or ()),
                        instagram_business_account_id=str(ig["id"]) if ig.get("id") else None,
                        instagram_username=str(ig["username"]) if ig.get("username") else None,
                    )
                )
            paging = data.get("paging")
            after = None
            if isinstance(paging, dict) and paging.get("next"):
                cursors = paging.get("cursors")
                after = cursors.get("after") if isinstance(cursors, dict) else None
            if not isinstance(after, str) or not after or after == params.get("after"):
                return pages
            params = {**params, "after": after}

    async def subscribe_page(self, page_id: str, page_token: str, fields: list[str]) -> None:
        """Subscribe this app to the Page's webhooks for ``fields``."""
        data = await self._call(
            "POST",
            f"{segment(page_id)}/subscribed_apps",
            token=page_token,
            params={"subscribed_fields": ",".join(fields)},
        )
        if data.get("success") is not True:
            raise ProviderError("meta", 200, None, None, "subscription was not confirmed")

    async def page_subscribed_fields(self, page_id: str, page_token: str) -> frozenset[str]:
        """The webhook fields this app is subscribed to on the Page (empty: not subscribed).

        Graph API reference, Page Subscribed Apps, Reading: ``GET /{page-id}/subscribed_apps``
        lists every app subscribed to the Page with its ``subscribed_fields``; a Page token of
        someone with CREATE_CONTENT, MANAGE or MODERATE and ``pages_manage_metadata``.
        """
        data = await self._call("GET", f"{segment(page_id)}/subscribed_apps", token=page_token)
        apps = data.get("data")
        for app in apps if isinstance(apps, list) else ():
            if isinstance(app, dict) and str(app.get("id")) == self._app_id:
                fields = app.get("subscribed_fields")
                return frozenset(str(f) for f in fields) if isinstance(fields, list) else frozenset()
        return frozenset()

    async def unsubscribe_page(self, page_id: str, page_token: str) -> None:
        """Remove this app's webhook subscription from the Page (``DELETE /{page-id}/subscribed_apps``).

        Graph API reference, Page Subscribed Apps: a Page access token of someone with the MODERATE
        task or above and ``pages_manage_metadata``; the answer is ``{"success": true}``.
        """
        data = await self._call("DELETE", f"{segment(page_id)}/subscribed_apps", token=page_token)
        if data.get("success") is not True:
            raise ProviderError("meta", 200, None, None, "unsubscription was not confirmed")

    async def debug_token(self, token: str) -> tuple[bool, datetime | None, tuple[str, ...]]:
        """Whether ``token`` is valid, when it expires (None: never) and its scopes."""
        data = await self._call("GET", "debug_token", token=self._app_token(), params={"input_token": token})
        info = data.get("data")
        info = info if isinstance(info, dict) else {}
        expires = int_or_none(info.get("expires_at"))
        expires_at = datetime.fromtimestamp(expires, UTC) if expires else None
        scopes = tuple(str(s) for s in info.get("scopes") or ())
        return info.get("is_valid") is True, expires_at, scopes

    async def token_grants(self, token: str) -> TokenGrants:
        """``debug_token`` read whole: validity, end, scopes, and ``granular_scopes``: for each
        permission granted on chosen objects only, the ids of those objects (``target_ids``; for
        WhatsApp's permissions, the WABAs that granted them, newest first: WhatsApp Business
        Platform, "Manage WhatsApp Business Accounts", shared WABA id from the signup's token).
        A permission listed without ``target_ids`` reads as granted on no object in particular."""
        data = await self._call("GET", "debug_token", token=self._app_token(), params={"input_token": token})
        info = data.get("data")
        info = info if isinstance(info, dict) else {}
        expires = int_or_none(info.get("expires_at"))
        granular: dict[str, tuple[str, ...]] = {}
        for item in info.get("granular_scopes") or ():
            if isinstance(item, dict) and isinstance(item.get("scope"), str):
                targets = item.get("target_ids")
                ids = tuple(str(t) for t in targets) if isinstance(targets, list) else ()
                granular[item["scope"]] = granular.get(item["scope"], ()) + ids
        return TokenGrants(
            valid=info.get("is_valid") is True,
            expires_at=datetime.fromtimestamp(expires, UTC) if expires else None,
            scopes=tuple(str(s) for s in info.get("scopes") or ()),
            targets=granular,
        )

    # ---- Messenger, Instagram messaging and comments

    async def send_message(self, page_id: str, page_token: str, payload: dict[str, Any]) -> str:
        """Send through the Messenger Platform (Messenger and Instagram); the message id.

        Sender actions (``typing_on``, ``mark_seen``) have no message id: "" is returned.
        """
        data = await self._call("POST", f"{segment(page_id)}/messages", token=page_token, json_body=payload)
        if "message_id" not in data and "sender_action" in payload:
            return ""
        return require_str("meta", 200, data, "message_id")

    async def send_private_reply(self, page_id: str, page_token: str, comment_id: str, text: str) -> str:
        """Answer a public comment with a private message to its author; the message id."""
        payload = {"recipient": {"comment_id": comment_id}, "message": {"text": text}}
        return await self.send_message(page_id, page_token, payload)

    async def reply_to_comment(self, comment_id: str, page_token: str, text: str) -> str:
        """Reply publicly under a Facebook comment (or post); the new comment's id."""
        data = await self._call(
            "POST", f"{segment(comment_id)}/comments", token=page_token, json_body={"message": text}
        )
        return require_str("meta", 200, data, "id")

    async def reply_to_instagram_comment(self, comment_id: str, page_token: str, text: str) -> str:
        """Reply publicly under an Instagram comment (``/replies``); the new comment's id."""
        data = await self._call(
            "POST", f"{segment(comment_id)}/replies", token=page_token, json_body={"message": text}
        )
        return require_str("meta", 200, data, "id")

    # ---- Instagram mentions (Instagram API with Facebook Login: the linked Page's token)

    async def mentioned_media(self, ig_user_id: str, page_token: str, media_id: str) -> Mentioned:
        """The caption, author and link of a media whose caption @mentions the account."""
        return await self._mentioned(ig_user_id, page_token, "mentioned_media", media_id)

    async def mentioned_comment(self, ig_user_id: str, page_token: str, comment_id: str) -> Mentioned:
        """The text and author of a comment that @mentions the account."""
        return await self._mentioned(ig_user_id, page_token, "mentioned_comment", comment_id)

    async def _mentioned(self, ig_user_id: str, token: str, kind: str, object_id: str) -> Mentioned:
        data = await self._call(
            "GET", segment(ig_user_id), token=token, params={"fields": mentioned_fields(kind, object_id)}
        )
        return mentioned_of("meta", kind, data)

    # ---- Conversation Routing: thread control

    async def take_thread_control(
        self, page_id: str, page_token: str, recipient_id: str, metadata: str | None = None
    ) -> None:
        """Make this app the thread's active responder (``POST /{page-id}/take_thread_control``).

        Messenger Conversation Routing, Thread Control; Graph API reference, Page
        take_thread_control: ``recipient`` is the customer's PSID (or IGSID), the answer
        ``{"success": true}``.
        """
        await self._thread_control("take_thread_control", page_id, page_token, recipient_id, metadata)

    async def release_thread_control(
        self, page_id: str, page_token: str, recipient_id: str, metadata: str | None = None
    ) -> None:
        """Give the thread back (``POST /{page-id}/release_thread_control``): Conversation Routing
        routes the customer's next message to the Page's default app; no webhook is sent."""
        await self._thread_control("release_thread_control", page_id, page_token, recipient_id, metadata)

    async def _thread_control(
        self, edge: str, page_id: str, page_token: str, recipient_id: str, metadata: str | None
    ) -> None:
        body: dict[str, Any] = {"recipient": {"id": recipient_id}}
        if metadata:
            body["metadata"] = metadata
        data = await self._call("POST", f"{segment(page_id)}/{edge}", token=page_token, json_body=body)
        if data.get("success") is not True:
            raise ProviderError("meta", 200, None, None, f"{edge} was not confirmed")

    # ---- WhatsApp Cloud API

    async def whatsapp_send(self, phone_number_id: str, token: str, payload: dict[str, Any]) -> str:
        """Send a WhatsApp message; the ``wamid``. ``messaging_product`` is added when absent."""
        body = {"messaging_product": "whatsapp", **payload}
        data = await self._call(
            "POST",
            f"{segment(phone_number_id)}/messages",
            token=token,
            json_body=body,
            provider="whatsapp",
        )
        messages = data.get("messages")
        first = messages[0] if isinstance(messages, list) and messages else None
        return require_str("whatsapp", 200, {"message": first}, "message", "id")

    async def whatsapp_mark_read(self, phone_number_id: str, token: str, body: dict[str, Any]) -> None:
        """Mark a received message as read (and show a typing indicator when the body asks):
        ``POST /{phone-number-id}/messages`` with ``status: read``, answered ``{"success": true}``;
        ``messaging_product`` is added when absent."""
        await self._whatsapp_success(
            phone_number_id, "messages", token, {"messaging_product": "whatsapp", **body}
        )

    async def whatsapp_thread_control(self, phone_number_id: str, token: str, body: dict[str, Any]) -> None:
        """Take or release a customer's thread on a number with several responders (WhatsApp
        Conversation Routing's thread control API): ``POST /{phone-number-id}/thread_control``
        with ``action`` (``take``, ``release``) and the customer in ``to`` (phone) or
        ``recipient`` (business-scoped user id), answered ``{"messaging_product": "whatsapp"}``.
        Only the number's escalation partner may take a thread; ``messaging_product`` is added
        when absent."""
        data = await self._call(
            "POST",
            f"{segment(phone_number_id)}/thread_control",
            token=token,
            json_body={"messaging_product": "whatsapp", **body},
            provider="whatsapp",
        )
        if data.get("messaging_product") != "whatsapp":
            raise ProviderError("whatsapp", 200, None, None, "thread_control was not confirmed")

    async def _whatsapp_success(
        self, phone_number_id: str, action: str, token: str, body: dict[str, Any]
    ) -> None:
        data = await self._call(
            "POST",
            f"{segment(phone_number_id)}/{action}",
            token=token,
            json_body=body,
            provider="whatsapp",
        )
        if data.get("success") is not True:
            raise ProviderError("whatsapp", 200, None, None, f"{action} was not confirmed")

    async def whatsapp_phone_numbers(self, waba_id: str, token: str) -> list[WhatsAppPhoneNumber]:
        """The business phone numbers of a WhatsApp Business Account, every page of them.

        ``GET /{whatsapp-business-account-id}/phone_numbers`` with a token that can manage the WABA
        (Graph API reference: WhatsApp Business Account > Phone Numbers; WhatsApp Business
        Management API, "Manage phone numbers"): ``{"data": [{"id", "display_phone_number",
        "verified_name", ...}], "paging": {"cursors": {"after"}, "next"}}``. A token without access
        to the WABA answers a permission error (code 200 or 10), an unknown WABA code 100.
        """
        params = {"fields": "id,display_phone_number,verified_name", "limit": "100"}
        numbers: list[WhatsAppPhoneNumber] = []
        while True:
            data = await self._call(
                "GET", f"{segment(waba_id)}/phone_numbers", token=token, params=params, provider="whatsapp"
            )
            for item in data.get("data") or []:
                if isinstance(item, dict):
                    numbers.append(
                        WhatsAppPhoneNumber(
                            id=require_str("whatsapp", 200, item, "id"),
                            display_phone_number=str(item.get("display_phone_number", "")),
                            verified_name=str(item.get("verified_name", "")),
                        )
                    )
            paging = data.get("paging")
            after = None
            if isinstance(paging, dict) and paging.get("next"):
                cursors = paging.get("cursors")
                after = cursors.get("after") if isinstance(cursors, dict) else None
            if not isinstance(after, str) or not after or after == params.get("after"):
                return numbers
            params = {**params, "after": after}

    async def whatsapp_phone_number_throughput(
        self, phone_number_id: str, token: str
    ) -> tuple[str | None, bool]:
        """A business number's throughput level and whether it is on the WhatsApp Business app too.

        ``GET /{phone-number-id}?fields=throughput,is_on_biz_app``: ``throughput`` is
        ``{"level": "STANDARD" | "HIGH"}`` (WhatsApp Business phone number reference; throughput);
        ``is_on_biz_app`` is true for a number in coexistence. A field the answer leaves out reads
        as unknown (None) or false.
        """
        data = await self._call(
            "GET",
            segment(phone_number_id),
            token=token,
            params={"fields": "throughput,is_on_biz_app"},
            provider="whatsapp",
        )
        throughput = data.get("throughput")
        level = throughput.get("level") if isinstance(throughput, dict) else None
        return (level if isinstance(level, str) else None), data.get("is_on_biz_app") is True

    async def whatsapp_business_portfolio(self, waba_id: str, token: str) -> str | None:
        """The id of the business portfolio that owns a WhatsApp Business Account (None: not said).

        ``GET /{waba-id}?fields=owner_business_info``: ``{"owner_business_info": {"id", "name"},
        "id"}`` (Graph API, WhatsApp Business Account reference). Meta sets messaging limits per
        portfolio: every number of every account of it shares one.
        """
        data = await self._call(
            "GET",
            segment(waba_id),
            token=token,
            params={"fields": "owner_business_info"},
            provider="whatsapp",
        )
        owner = data.get("owner_business_info")
        found = owner.get("id") if isinstance(owner, dict) else None
        return found if isinstance(found, str) and found else None

    async def whatsapp_subscribe_app(self, waba_id: str, token: str) -> None:
        """Subscribe this app to the WABA's webhooks (``POST /{waba-id}/subscribed_apps`` with the
        business token; the answer is ``{"success": true}``: Tech Provider onboarding, step 2)."""
        data = await self._call(
            "POST", f"{segment(waba_id)}/subscribed_apps", token=token, provider="whatsapp"
        )
        if data.get("success") is not True:
            raise ProviderError("whatsapp", 200, None, None, "the app subscription was not confirmed")

    async def whatsapp_request_code(
        self, phone_number_id: str, token: str, method: str, language: str = "en_US"
    ) -> None:
        """Have WhatsApp send a verification code by ``SMS`` or ``VOICE``."""
        await self._whatsapp_success(
            phone_number_id, "request_code", token, {"code_method": method.upper(), "language": language}
        )

    async def whatsapp_verify_code(self, phone_number_id: str, token: str, code: str) -> None:
        await self._whatsapp_success(phone_number_id, "verify_code", token, {"code": code})

    async def whatsapp_register(self, phone_number_id: str, token: str, pin: str) -> None:
        """Register the number for Cloud API messaging with its two-step verification PIN."""
        await self._whatsapp_success(
            phone_number_id, "register", token, {"messaging_product": "whatsapp", "pin": pin}
        )

    # ---- WhatsApp Business Management API: templates, business profile, uploads

    async def whatsapp_create_template(
        self, waba_id: str, token: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Submit a message template for review (``POST /{waba-id}/message_templates``); Meta's
        answer, ``{"id", "status", "category"}`` (status ``PENDING`` until reviewed)."""
        data = await self._call(
            "POST", f"{segment(waba_id)}/message_templates", token=token, json_body=body, provider="whatsapp"
        )
        require_str("whatsapp", 200, data, "id")
        return data

    async def whatsapp_templates(self, waba_id: str, token: str) -> list[dict[str, Any]]:
        """Every template of the WhatsApp Business Account with its status, every page of them."""
        params = {
            "fields": "id,name,language,status,category,components,parameter_format,quality_score,"
            "rejected_reason",
            "limit": "100",
        }
        templates: list[dict[str, Any]] = []
        while True:
            data = await self._call(
                "GET",
                f"{segment(waba_id)}/message_templates",
                token=token,
                params=params,
                provider="whatsapp",
            )
            templates.extend(item for item in data.get("data") or [] if isinstance(item, dict))
            paging = data.get("paging")
            after = None
            if isinstance(paging, dict) and paging.get("next"):
                cursors = paging.get("cursors")
                after = cursors.get("after") if isinstance(cursors, dict) else None
            if not isinstance(after, str) or not after or after == params.get("after"):
                return templates
            params = {**params, "after": after}

    async def whatsapp_delete_template(
        self, waba_id: str, token: str, name: str, template_id: str | None = None
    ) -> None:
        """Delete a template: every language of ``name``, or only the one ``template_id`` names
        (``hsm_id``)."""
        params = {"name": name, **({"hsm_id": template_id} if template_id else {})}
        data = await self._call(
            "DELETE", f"{segment(waba_id)}/message_templates", token=token, params=params, provider="whatsapp"
        )
        if data.get("success") is not True:
            raise ProviderError("whatsapp", 200, None, None, "template deletion was not confirmed")

    async def whatsapp_business_profile(
        self, phone_number_id: str, token: str, fields: str
    ) -> dict[str, Any]:
        """The number's business profile (``GET /{phone-number-id}/whatsapp_business_profile``)."""
        data = await self._call(
            "GET",
            f"{segment(phone_number_id)}/whatsapp_business_profile",
            token=token,
            params={"fields": fields},
            provider="whatsapp",
        )
        profiles = data.get("data")
        first = profiles[0] if isinstance(profiles, list) and profiles else None
        return first if isinstance(first, dict) else {}

    async def whatsapp_update_business_profile(
        self, phone_number_id: str, token: str, fields: dict[str, Any]
    ) -> None:
        """Update the number's business profile (``POST`` to the same edge)."""
        await self._whatsapp_success(
            phone_number_id, "whatsapp_business_profile", token, {"messaging_product": "whatsapp", **fields}
        )

    async def start_upload(self, token: str, file_name: str, file_length: int, file_type: str) -> str:
        """Open a Resumable Upload API session (``POST /{app-id}/uploads`` with ``file_name``,
        ``file_length`` and ``file_type``); its id, ``upload:...``."""
        session = await self._call(
            "POST",
            f"{segment(self._app_id)}/uploads",
            token=token,
            params={"file_name": file_name, "file_length": str(file_length), "file_type": file_type},
            provider="meta",
        )
        return require_str("meta", 200, session, "id")

    async def upload_bytes(self, session_id: str, token: str, data: bytes) -> str:
        """Send a session's file from its start (``POST /{session-id}``, ``file_offset: 0``,
        ``Authorization: OAuth {token}``); the handle other endpoints take (``{"h": ...}``)."""
        response = await send(
            self._http,
            "meta",
            "POST",
            f"{self._base}/{self._version}/{segment(session_id)}",
            content=data,
            headers={
                "Authorization": f"OAuth {token}",
                "file_offset": "0",
                "Content-Type": "application/octet-stream",
            },
        )
        if not response.is_success:
            raise graph_error("meta", response)
        return require_str("meta", 200, json_object("meta", response), "h")


def graph_client(http: httpx.AsyncClient, settings: GraphSettings) -> GraphClient:
    """The Graph API client a service's settings describe."""
    return GraphClient(
        http,
        settings.graph_base_url or GRAPH_BASE_URL,
        settings.meta_app_id,
        settings.meta_app_secret.get_secret_value(),
        settings.graph_api_version or None,
    )
