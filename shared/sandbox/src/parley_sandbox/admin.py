"""The sandbox's own API for tests: set-up, faults and inspection under /_sandbox/."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any, Literal

import httpx
from parley_providers.meta.errors import APP_REMOVED, PASSWORD_CHANGED
from parley_providers.meta.instagram import DEFAULT_INSTAGRAM_LOGIN_SCOPES
from parley_providers.meta.webhook import SIGNATURE_HEADER, meta_signature
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from parley_sandbox.state import (
    CODE_TTL_S,
    DEFAULT_META_PERMISSIONS,
    DEFAULT_PAGE_TASKS,
    DEFAULT_X_SCOPES,
    SIGNUP_CODE_TTL_S,
    AuthCode,
    Fault,
    InstagramAccount,
    MentionedObject,
    MetaPage,
    MetaUser,
    SandboxState,
    Token,
    WhatsAppNumber,
    XAccount,
)
from parley_sandbox.whatsapp import SIGNUP_SCOPES, NumberOfAnotherWaba, finish_signup
from parley_sandbox.wire import AdminError, _parse_body
from parley_sandbox.x import check_crc, deliver_activity, deliver_dm, direct_message


async def _admin_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    body = _parse_body(raw, "application/json")
    if body is None:
        raise AdminError(400, "the body must be a JSON object")
    return body


def _opt_str(data: dict[str, Any], key: str, default: str | None = None) -> str | None:
    value = data.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise AdminError(400, f"{key} must be a string")
    return str(value)


def _req_str(data: dict[str, Any], key: str) -> str:
    value = _opt_str(data, key)
    if not value:
        raise AdminError(400, f"{key} is required")
    return value


def _str_list(data: dict[str, Any], key: str, default: Sequence[str]) -> list[str]:
    value = data.get(key)
    if value is None:
        return list(default)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AdminError(400, f"{key} must be a list of strings")
    return list(value)


def _opt_int(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise AdminError(400, f"{key} must be an integer")
    return value


def _number(data: dict[str, Any], key: str, default: float) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AdminError(400, f"{key} must be a number")
    return float(value)


def _flag(data: dict[str, Any], key: str, default: bool = False) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise AdminError(400, f"{key} must be true or false")
    return value


class _Admin:
    """``/_sandbox/...``: set up accounts, read what was sent, flip fault switches."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def _code(
        self, provider: Literal["meta", "instagram", "x"], user_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        code = AuthCode(
            code=("AQ" if provider == "meta" else "") + secrets.token_urlsafe(48),
            provider=provider,
            user_id=user_id,
            expires_at=self.state.now() + CODE_TTL_S,
            redirect_uri=_opt_str(data, "redirect_uri"),
            code_challenge=_opt_str(data, "code_challenge"),
            code_challenge_method=_opt_str(data, "code_challenge_method") or "S256",
        )
        self.state.codes[code.code] = code
        return {"user_id": user_id, "code": code.code, "expires_in": CODE_TTL_S}

    async def meta_users(self, request: Request) -> dict[str, Any]:
        data = await _admin_body(request)
        user_id = _opt_str(data, "user_id") or self.state.next_id()[:16]
        page_specs = data.get("pages") or []
        if not isinstance(page_specs, list) or not all(isinstance(p, dict) for p in page_specs):
            raise AdminError(400, "pages must be a list of objects")
        page_ids: list[str] = []
        for spec in page_specs:
            instagram = spec.get("instagram")
            if instagram is not None and not isinstance(instagram, dict):
                raise AdminError(400, "instagram must be an object or null")
            page = MetaPage(
                id=_req_str(spec, "id"),
                name=_opt_str(spec, "name") or "Sandbox Page",
                tasks=_str_list(spec, "tasks", DEFAULT_PAGE_TASKS),
                instagram_id=_opt_str(instagram, "id") if instagram else None,
                instagram_username=_opt_str(instagram, "username") if instagram else None,
                enforce_window=_flag(spec, "enforce_window"),
                sending_restricted=_flag(spec, "sending_restricted"),
            )
            old = self.state.pages.get(page.id)
            if old is not None:
                page.subscribed_fields = old.subscribed_fields
            self.state.pages[page.id] = page
            page_ids.append(page.id)
        self.state.meta_users[user_id] = MetaUser(
            id=user_id,
            name=_opt_str(data, "name") or "Sandbox User",
            granted=_str_list(data, "granted", DEFAULT_META_PERMISSIONS),
            declined=_str_list(data, "declined", ()),
            page_ids=page_ids,
        )
        return self._code("meta", user_id, data)

    def _meta_user(self, user_id: str) -> MetaUser:
        user = self.state.meta_users.get(user_id)
        if user is None:
            raise AdminError(404, f"no Meta user {user_id}")
        return user

    async def instagram_accounts(self, request: Request) -> dict[str, Any]:
        """Create (or replace) an Instagram professional account for Business Login; a login code
        for it (``redirect_uri`` binds the code as the authorization window does)."""
        data = await _admin_body(request)
        account = InstagramAccount(
            id=_opt_str(data, "id") or f"1784{self.state.next_id()[-11:]}",
            username=_opt_str(data, "username") or "sandbox_business",
            granted=_str_list(data, "granted", DEFAULT_INSTAGRAM_LOGIN_SCOPES),
        )
        self.state.instagram_accounts[account.id] = account
        return {**asdict(account), **self._code("instagram", account.id, data)}

    async def instagram_mentions(self, request: Request) -> dict[str, Any]:
        """Someone @mentions an Instagram account in a media's caption (``caption``), or in a
        comment on a media (``comment_id`` and ``text``): what Graph's mentioned_media and
        mentioned_comment answer from now on. Also answers the ``mentions`` webhook Meta sends."""
        data = await _admin_body(request)
        account_id = _req_str(data, "account_id")
        media_id = _opt_str(data, "media_id") or self.state.next_id()[:17]
        username = _opt_str(data, "username") or "sandbox_customer"
        permalink = f"https://www.instagram.com/p/{media_id}/"
        media = MentionedObject(
            id=media_id,
            account_id=account_id if "comment_id" not in data else "",
            kind="media",
            username=_opt_str(data, "media_username") or username,
            text=_opt_str(data, "caption"),
            permalink=permalink,
        )
        self.state.mentioned[media_id] = media
        value: dict[str, Any] = {"media_id": media_id}
        comment_id = _opt_str(data, "comment_id")
        if comment_id is not None:
            self.state.mentioned[comment_id] = MentionedObject(
                id=comment_id,
                account_id=account_id,
                kind="comment",
                username=username,
                text=_opt_str(data, "text"),
                media_id=media_id,
            )
            value["comment_id"] = comment_id
        webhook = {
            "object": "instagram",
            "entry": [
                {
                    "id": account_id,
                    "time": int(self.state.now()),
                    "changes": [{"field": "mentions", "value": value}],
                }
            ],
        }
        return {"media_id": media_id, "comment_id": comment_id, "webhook": webhook}

    async def meta_deliver(self, request: Request) -> dict[str, Any]:
        """POST a Meta webhook delivery (``body``) to ``url``, signed as Meta signs it
        (``X-Hub-Signature-256``: HMAC-SHA256 of the raw bytes with the app secret; ``app``:
        ``meta`` (default) or ``instagram`` for the Instagram Login app's)."""
        data = await _admin_body(request)
        url = _req_str(data, "url")
        body = data.get("body")
        if not isinstance(body, dict):
            raise AdminError(400, "body must be an object")
        secret = (
            self.state.instagram_app_secret if data.get("app") == "instagram" else self.state.meta_app_secret
        )
        raw = json.dumps(body, ensure_ascii=True, separators=(",", ":")).encode()
        signature = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.post(
                url,
                content=raw,
                headers={"content-type": "application/json", "x-hub-signature-256": signature},
            )
        return {"status": response.status_code}

    def _instagram_account(self, request: Request) -> InstagramAccount:
        account = self.state.instagram_accounts.get(request.path_params["account_id"])
        if account is None:
            raise AdminError(404, "no such Instagram account")
        return account

    async def instagram_account(self, request: Request) -> dict[str, Any]:
        return asdict(self._instagram_account(request))

    async def instagram_unsubscribe(self, request: Request) -> dict[str, Any]:
        """Drop webhook fields from an Instagram-login account's subscription (all of them unless
        ``fields`` names some), as Meta does after a long run of failed deliveries."""
        account = self._instagram_account(request)
        data = await _admin_body(request)
        drop = set(_str_list(data, "fields", account.subscribed_fields))
        account.subscribed_fields = [f for f in account.subscribed_fields if f not in drop]
        return {"account_id": account.id, "subscribed_fields": account.subscribed_fields}

    async def meta_codes(self, request: Request) -> dict[str, Any]:
        data = await _admin_body(request)
        user = self._meta_user(_req_str(data, "user_id"))
        return self._code("meta", user.id, data)

    async def meta_permissions(self, request: Request) -> dict[str, Any]:
        user = self._meta_user(request.path_params["user_id"])
        data = await _admin_body(request)
        user.granted = _str_list(data, "granted", user.granted)
        user.declined = _str_list(data, "declined", user.declined)
        return {"granted": user.granted, "declined": user.declined}

    async def meta_revoke(self, request: Request) -> dict[str, Any]:
        token = self.state.tokens.get(request.path_params["token"])
        if token is None or token.provider != "meta":
            raise AdminError(404, "no such Meta token")
        data = await _admin_body(request)
        token.revoked_subcode = _opt_int(data, "subcode") or PASSWORD_CHANGED
        return {"revoked": True, "subcode": token.revoked_subcode}

    async def meta_deauthorize(self, request: Request) -> dict[str, Any]:
        user = self._meta_user(request.path_params["user_id"])
        count = 0
        for token in self.state.tokens.values():
            if token.provider == "meta" and token.user_id == user.id and token.revoked_subcode is None:
                token.revoked_subcode = APP_REMOVED
                count += 1
        return {"revoked": count, "subcode": APP_REMOVED}

    async def meta_remove_page(self, request: Request) -> dict[str, Any]:
        user = self._meta_user(request.path_params["user_id"])
        page_id = request.path_params["page_id"]
        if page_id not in user.page_ids:
            raise AdminError(404, f"user {user.id} has no access to page {page_id}")
        user.page_ids.remove(page_id)
        return {"user_id": user.id, "page_ids": user.page_ids}

    async def meta_page(self, request: Request) -> dict[str, Any]:
        page = self.state.pages.get(request.path_params["page_id"])
        if page is None:
            raise AdminError(404, "no such page")
        return asdict(page)

    async def meta_page_unsubscribe(self, request: Request) -> dict[str, Any]:
        """Drop webhook fields from the app's subscription on a Page (all of them unless ``fields``
        names some), as Meta does after a long run of failed deliveries."""
        page = self.state.pages.get(request.path_params["page_id"])
        if page is None:
            raise AdminError(404, "no such page")
        data = await _admin_body(request)
        drop = set(_str_list(data, "fields", page.subscribed_fields))
        page.subscribed_fields = [f for f in page.subscribed_fields if f not in drop]
        return {"page_id": page.id, "subscribed_fields": page.subscribed_fields}

    async def clock(self, request: Request) -> dict[str, Any]:
        if request.method == "POST":
            data = await _admin_body(request)
            self.state.advance(_number(data, "advance_s", 0.0))
        return {"now": self.state.now(), "offset_s": self.state.clock_offset_s}

    async def windows(self, request: Request) -> dict[str, Any]:
        data = await _admin_body(request)
        account, customer = _req_str(data, "account_id"), _req_str(data, "customer_id")
        self.state.open_window(account, customer, _number(data, "ago_s", 0.0))
        return {
            "account_id": account,
            "customer_id": customer,
            "last_inbound_at": self.state.windows[(account, customer)],
        }

    async def whatsapp_numbers(self, request: Request) -> dict[str, Any]:
        data = await _admin_body(request)
        number = WhatsAppNumber(
            id=_req_str(data, "phone_number_id"),
            display_phone_number=_opt_str(data, "display_phone_number") or "+1 555 0100",
            waba_id=_req_str(data, "waba_id"),
            token=_req_str(data, "token"),
            verified_name=_opt_str(data, "verified_name") or "Parley sandbox business",
            verified=_flag(data, "verified"),
            registered=_flag(data, "registered"),
            pin=_opt_str(data, "pin"),
            enforce_window=_flag(data, "enforce_window"),
            throughput_level=_opt_str(data, "throughput_level") or "STANDARD",
            on_biz_app=_flag(data, "on_biz_app"),
            escalation_partner=_flag(data, "escalation_partner", default=True),
        )
        token = self.state.tokens.get(number.token)
        if token is None:
            token = Token(
                number.token,
                "meta",
                "system",
                None,
                self.state.now(),
                None,
                ["whatsapp_business_messaging", "whatsapp_business_management"],
            )
            self.state.tokens[number.token] = token
        elif token.kind != "system":
            raise AdminError(409, "that token already belongs to a user or page")
        if number.waba_id not in token.waba_ids:
            token.waba_ids.append(number.waba_id)
        owner = _opt_str(data, "owner_business_id")
        if owner:
            self.state.waba_owners[number.waba_id] = owner
        self.state.whatsapp_numbers[number.id] = number
        return self._number_view(number)

    async def whatsapp_signups(self, request: Request) -> dict[str, Any]:
        """A business finishing Embedded Signup: its WABA and number exist (the number verified in
        the window, not registered), a business integration system user token was made for the
        app, and the window got a one-time code for it (``expires_in`` seconds, default
        ``SIGNUP_CODE_TTL_S``). ``scopes`` are the permissions granted (default both WhatsApp
        ones). What the window would post back is answered: the code and the two ids."""
        data = await _admin_body(request)
        waba_id = _req_str(data, "waba_id")
        number_id = _req_str(data, "phone_number_id")
        lifetime = _number(data, "expires_in", SIGNUP_CODE_TTL_S)
        try:
            code = finish_signup(
                self.state,
                waba_id,
                number_id,
                scopes=_str_list(data, "scopes", SIGNUP_SCOPES),
                display_phone_number=_opt_str(data, "display_phone_number"),
                verified_name=_opt_str(data, "verified_name"),
                owner_business_id=_opt_str(data, "owner_business_id"),
                lifetime_s=lifetime,
            )
        except NumberOfAnotherWaba as exc:
            raise AdminError(409, "that number belongs to another WhatsApp Business Account") from exc
        return {"code": code.code, "expires_in": lifetime, "waba_id": waba_id, "phone_number_id": number_id}

    async def whatsapp_waba(self, request: Request) -> dict[str, Any]:
        """A WABA as the sandbox knows it: its numbers and the apps subscribed to its webhooks."""
        waba_id = request.path_params["waba_id"]
        numbers = [n.id for n in self.state.whatsapp_numbers.values() if n.waba_id == waba_id]
        if not numbers:
            raise AdminError(404, "no such WhatsApp Business Account")
        return {
            "waba_id": waba_id,
            "phone_number_ids": numbers,
            "subscribed_apps": sorted(self.state.waba_subscriptions.get(waba_id, set())),
        }

    @staticmethod
    def _number_view(number: WhatsAppNumber) -> dict[str, Any]:
        view = asdict(number)
        view.pop("token")
        view["phone_number_id"] = view.pop("id")
        return view

    def _wa_number(self, number_id: str) -> WhatsAppNumber:
        number = self.state.whatsapp_numbers.get(number_id)
        if number is None:
            raise AdminError(404, f"no WhatsApp number {number_id}")
        return number

    async def whatsapp_number(self, request: Request) -> dict[str, Any]:
        return self._number_view(self._wa_number(request.path_params["number_id"]))

    async def whatsapp_last_code(self, request: Request) -> dict[str, Any]:
        number = self._wa_number(request.path_params["number_id"])
        if number.last_code is None:
            raise AdminError(404, "no code was requested for this number")
        return {"code": number.last_code}

    async def meta_webhook(self, request: Request) -> dict[str, Any]:
        """Set the Meta app's webhook callback URL (App Dashboard > Webhooks; null: none)."""
        data = await _admin_body(request)
        self.state.meta_webhook_url = _opt_str(data, "url")
        return {"url": self.state.meta_webhook_url}

    async def whatsapp_templates(self, _: Request) -> dict[str, Any]:
        return {"data": [{**t.view(), "waba_id": t.waba_id} for t in self.state.whatsapp_templates.values()]}

    async def whatsapp_template_review(self, request: Request) -> dict[str, Any]:
        """Meta reviews a template: any of ``status`` (with ``reason``), ``category`` and
        ``quality_score`` change, and each change is delivered to the app's webhook as Meta sends
        it (``message_template_status_update``, ``template_category_update``,
        ``message_template_quality_update``), signed with the app secret."""
        template = self.state.whatsapp_templates.get(request.path_params["template_id"])
        if template is None:
            raise AdminError(404, "no such template")
        data = await _admin_body(request)
        common = {
            "message_template_id": int(template.id),
            "message_template_name": template.name,
            "message_template_language": template.language,
        }
        changes: list[tuple[str, dict[str, Any]]] = []
        category = _opt_str(data, "category")
        if category is not None and category != template.category:
            previous, template.category = template.category, category
            changes.append(
                (
                    "template_category_update",
                    {**common, "previous_category": previous, "new_category": category},
                )
            )
        quality = _opt_str(data, "quality_score")
        if quality is not None and quality != template.quality_score:
            previous, template.quality_score = template.quality_score, quality
            changes.append(
                (
                    "message_template_quality_update",
                    {**common, "previous_quality_score": previous, "new_quality_score": quality},
                )
            )
        status = _opt_str(data, "status")
        if status is not None:
            template.status = status
            template.rejected_reason = _opt_str(data, "reason") or "NONE"
            changes.append(
                (
                    "message_template_status_update",
                    {
                        "event": status,
                        **common,
                        "reason": template.rejected_reason,
                        "message_template_category": template.category,
                    },
                )
            )
        delivered: list[int | None] = []
        if self.state.meta_webhook_url and _flag(data, "deliver", True):
            async with httpx.AsyncClient(timeout=10) as http:
                for field, value in changes:
                    delivered.append(await self._deliver_meta(http, template.waba_id, field, value))
        return {"template": template.view(), "changes": [f for f, _ in changes], "delivered": delivered}

    async def _deliver_meta(
        self, http: httpx.AsyncClient, waba_id: str, field: str, value: dict[str, Any]
    ) -> int | None:
        """One WhatsApp Business Account change, POSTed as Meta delivers it; the answer's status."""
        assert self.state.meta_webhook_url is not None
        body = {
            "object": "whatsapp_business_account",
            "entry": [
                {"id": waba_id, "time": int(self.state.now()), "changes": [{"value": value, "field": field}]}
            ],
        }
        raw = json.dumps(body).encode()
        headers = {
            "content-type": "application/json",
            SIGNATURE_HEADER: meta_signature(raw, self.state.meta_app_secret),
        }
        try:
            response = await http.post(self.state.meta_webhook_url, content=raw, headers=headers)
        except httpx.HTTPError:
            return None
        return response.status_code

    async def x_users(self, request: Request) -> dict[str, Any]:
        data = await _admin_body(request)
        account = XAccount(
            id=_req_str(data, "id"),
            username=_req_str(data, "username"),
            name=_opt_str(data, "name") or _req_str(data, "username"),
            scopes=_str_list(data, "scopes", DEFAULT_X_SCOPES),
            accepts_dms=_flag(data, "accepts_dms", True),
        )
        if not account.id.isdigit():
            raise AdminError(400, "X user ids are numeric strings")
        self.state.x_users[account.id] = account
        return self._code("x", account.id, data)

    async def x_codes(self, request: Request) -> dict[str, Any]:
        data = await _admin_body(request)
        user_id = _req_str(data, "user_id")
        if user_id not in self.state.x_users:
            raise AdminError(404, f"no X user {user_id}")
        return self._code("x", user_id, data)

    async def x_webhooks(self, request: Request) -> dict[str, Any]:
        """Register a webhook (as ``POST /2/webhooks`` would), with the URL deliveries go to."""
        data = await _admin_body(request)
        webhook_id = _opt_str(data, "webhook_id") or self.state.next_id()
        self.state.x_webhooks.setdefault(webhook_id, [])
        url = _opt_str(data, "url")
        if url is not None:
            if not url.startswith(("http://", "https://")):
                raise AdminError(400, "url must be an http(s) URL")
            self.state.x_webhook_urls[webhook_id] = url
            self.state.x_webhook_valid.pop(webhook_id, None)
            return {"webhook_id": webhook_id, "subscriptions": self.state.x_webhooks[webhook_id], "url": url}
        return {"webhook_id": webhook_id, "subscriptions": self.state.x_webhooks[webhook_id]}

    async def x_webhook_crc(self, request: Request) -> dict[str, Any]:
        """POST: send the CRC GET X sends hourly, now, and record the answer; GET: the checks so far."""
        webhook_id = request.path_params["webhook_id"]
        if webhook_id not in self.state.x_webhook_urls:
            raise AdminError(404, "no webhook with a URL by that id")
        if request.method == "POST":
            async with httpx.AsyncClient() as http:
                return asdict(await check_crc(self.state, http, webhook_id))
        checks = [asdict(c) for c in self.state.x_crc_checks if c.webhook_id == webhook_id]
        return {"data": checks, "valid": self.state.x_webhook_valid.get(webhook_id)}

    async def x_activity(self, _: Request) -> dict[str, Any]:
        return {"data": [s.view() for s in self.state.x_activity.values()]}

    async def x_activity_deliver(self, request: Request) -> dict[str, Any]:
        """Deliver one X Activity API event (any payload) to the subscriptions it matches."""
        data = await _admin_body(request)
        event_type = _req_str(data, "event_type")
        payload = data.get("payload")
        includes = data.get("includes")
        if not isinstance(payload, dict):
            raise AdminError(400, "payload must be an object")
        if includes is not None and not isinstance(includes, dict):
            raise AdminError(400, "includes must be an object")
        async with httpx.AsyncClient(timeout=10) as http:
            made = await deliver_activity(
                self.state, http, event_type, _opt_str(data, "user_id"), payload, includes
            )
        return {"data": [asdict(d) for d in made]}

    async def x_dms(self, request: Request) -> dict[str, Any]:
        """A DM between two X users: delivered in both APIs' forms to whoever subscribed."""
        data = await _admin_body(request)
        dm = direct_message(
            self.state, _req_str(data, "sender_id"), _req_str(data, "recipient_id"), _req_str(data, "text")
        )
        async with httpx.AsyncClient(timeout=10) as http:
            made = await deliver_dm(self.state, http, dm)
        return {"id": dm.event["id"], "data": [asdict(d) for d in made]}

    async def x_deliveries(self, request: Request) -> dict[str, Any]:
        if request.method == "DELETE":
            count = len(self.state.x_deliveries)
            self.state.x_deliveries.clear()
            return {"deleted": count}
        return {"data": [asdict(d) for d in self.state.x_deliveries]}

    async def x_webhook(self, request: Request) -> dict[str, Any]:
        webhook_id = request.path_params["webhook_id"]
        if webhook_id not in self.state.x_webhooks:
            raise AdminError(404, "no such webhook")
        return {"webhook_id": webhook_id, "subscriptions": self.state.x_webhooks[webhook_id]}

    async def x_revoke(self, request: Request) -> dict[str, Any]:
        value = request.path_params["token"]
        token = self.state.tokens.get(value)
        refresh = self.state.x_refresh_tokens.get(value)
        if token is not None and token.provider == "x":
            token.revoked = True
        elif refresh is not None:
            refresh.used = True
        else:
            raise AdminError(404, "no such X token")
        return {"revoked": True}

    async def x_revoke_grant(self, request: Request) -> dict[str, Any]:
        """The user removes the app from their connected apps: every access and refresh token the
        app holds for them stops working (a refresh is then refused as for a spent token)."""
        user_id = request.path_params["user_id"]
        if user_id not in self.state.x_users:
            raise AdminError(404, f"no X user {user_id}")
        count = 0
        for token in self.state.tokens.values():
            if token.provider == "x" and token.user_id == user_id and not token.revoked:
                token.revoked = True
                count += 1
        for refresh in self.state.x_refresh_tokens.values():
            if refresh.user_id == user_id and not refresh.used:
                refresh.used = True
                count += 1
        return {"revoked": count}

    async def sent(self, request: Request) -> dict[str, Any]:
        if request.method == "DELETE":
            count = len(self.state.sent)
            self.state.sent.clear()
            return {"deleted": count}
        contains = request.query_params.get("path_contains", "")
        return {"data": [asdict(s) for s in self.state.sent if contains in s.path]}

    async def tokens(self, _: Request) -> dict[str, Any]:
        """Every token issued (Meta, X access, X refresh): tests that run the sandbox as a process
        look for them where they must never appear."""
        issued = [asdict(t) for t in self.state.tokens.values()]
        issued += [
            {"value": r.value, "provider": "x", "kind": "x_refresh"}
            for r in self.state.x_refresh_tokens.values()
        ]
        return {"data": issued}

    async def calls(self, request: Request) -> dict[str, Any]:
        if request.method == "DELETE":
            self.state.calls.clear()
        return {"data": [asdict(c) for c in self.state.calls]}

    async def faults(self, request: Request) -> dict[str, Any]:
        if request.method == "DELETE":
            count = len(self.state.faults)
            self.state.faults.clear()
            return {"deleted": count}
        if request.method == "POST":
            data = await _admin_body(request)
            status = _opt_int(data, "status") or 500
            if not 400 <= status <= 599:
                raise AdminError(400, "status must be 4xx or 5xx")
            times = _opt_int(data, "times")
            fault = Fault(
                id=secrets.token_hex(6),
                path_contains=_opt_str(data, "path_contains") or "",
                status=status,
                code=_opt_int(data, "code"),
                subcode=_opt_int(data, "subcode"),
                message=_opt_str(data, "message"),
                times=1 if times is None else times,
                method=_opt_str(data, "method"),
                retry_after_s=_number(data, "retry_after_s", -1.0) if "retry_after_s" in data else None,
                plain=_flag(data, "plain"),
            )
            if fault.times < 1:
                raise AdminError(400, "times must be at least 1")
            self.state.faults.append(fault)
            return asdict(fault)
        return {"data": [asdict(f) for f in self.state.faults]}

    async def reset(self, _: Request) -> dict[str, Any]:
        self.state.reset()
        return {"reset": True}

    async def health(self, _: Request) -> dict[str, Any]:
        return {"status": "ok", "now": self.state.now()}


def _admin_route(path: str, handler: Callable[[Request], Any], methods: list[str]) -> Route:
    async def endpoint(request: Request) -> Response:
        try:
            result = await handler(request)
        except AdminError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return JSONResponse(result)

    return Route(path, endpoint, methods=methods)
