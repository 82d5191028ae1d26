"""The WhatsApp Cloud API as the sandbox plays it: numbers, messages, code verification, message
templates, business profiles, and the Graph API's Resumable Upload API for profile pictures."""

from __future__ import annotations

import base64
import re
import secrets
from typing import Any

from parley_providers.meta.errors import INVALID_TOKEN
from parley_providers.whatsapp.errors import TEMPLATE_EXISTS, WINDOW_CLOSED, WRONG_CODE
from parley_providers.whatsapp.profile import PICTURE_TYPES, PROFILE_FIELDS, READ_FIELDS, profile_problem
from parley_providers.whatsapp.rules import WHATSAPP_TEXT_MAX
from parley_providers.whatsapp.templates import template_problem

from parley_sandbox.meta import MetaApi
from parley_sandbox.state import (
    SIGNUP_CODE_TTL_S,
    WHATSAPP_MEDIA,
    WHATSAPP_TYPES,
    WINDOW_S,
    AuthCode,
    SandboxState,
    Token,
    Upload,
    WhatsAppNumber,
    WhatsAppTemplate,
)
from parley_sandbox.wire import (
    GraphFailure,
    Incoming,
    Reply,
    _cursor,
    _digits,
    _json_param,
    _param_required,
    _random_token,
    _split_fields,
    _uncursor,
    _unknown_object,
)

SIGNUP_SCOPES = ["whatsapp_business_management", "whatsapp_business_messaging"]


class NumberOfAnotherWaba(Exception):
    """The number a signup names exists on another WhatsApp Business Account."""


def finish_signup(
    state: SandboxState,
    waba_id: str,
    number_id: str,
    *,
    scopes: list[str] | None = None,
    display_phone_number: str | None = None,
    verified_name: str | None = None,
    owner_business_id: str | None = None,
    lifetime_s: float = SIGNUP_CODE_TTL_S,
) -> AuthCode:
    """A business finishing Embedded Signup: its WABA and number exist (the number verified in
    the window, not registered), a business integration system user token was made for the app
    with ``scopes`` on that WABA, and the window got a one-time code for it."""
    now = state.now()
    number = state.whatsapp_numbers.get(number_id)
    if number is not None and number.waba_id != waba_id:
        raise NumberOfAnotherWaba(number_id)
    token = Token(_random_token("EAA", 100), "meta", "system", None, now, None, list(scopes or SIGNUP_SCOPES))
    token.waba_ids.append(waba_id)
    state.tokens[token.value] = token
    if number is None:
        number = WhatsAppNumber(
            id=number_id,
            display_phone_number=display_phone_number or "+1 555 0100",
            waba_id=waba_id,
            token=token.value,
            verified_name=verified_name or "Parley sandbox business",
            verified=True,
        )
        state.whatsapp_numbers[number_id] = number
    if owner_business_id:
        state.waba_owners[waba_id] = owner_business_id
    code = AuthCode(
        code="AQ" + secrets.token_urlsafe(48),
        provider="meta",
        user_id="",
        expires_at=now + lifetime_s,
        signup_token=token.value,
    )
    state.codes[code.code] = code
    return code


_BSUID = re.compile(r"[A-Z]{2}\.[A-Za-z0-9]{1,128}")
"""A business-scoped user id: the country code, a dot, letters and digits."""
UPLOAD_TYPES = frozenset({"application/pdf", "image/jpeg", "image/jpg", "image/png", "video/mp4"})
"""The file types the Resumable Upload API takes."""


class WhatsAppApi(MetaApi):
    """The WhatsApp Cloud API on Graph (Meta's tokens): numbers, messages, verification."""

    def messages(self, call: Incoming) -> Reply:
        """``POST /{node}/messages``: a WhatsApp number's Cloud API send, or a Page's Send API."""
        node = call.path("node")
        if node in self.state.whatsapp_numbers:
            return self.whatsapp_send(call)
        return self.messenger_send(call, node)

    # ---- WhatsApp Cloud API

    def whatsapp_context(self, call: Incoming) -> WhatsAppNumber:
        token = self.meta_token(call)
        node = call.path("node")
        number = self.state.whatsapp_numbers.get(node)
        if number is None:
            raise _unknown_object(node)
        if token.kind != "system" or number.waba_id not in token.waba_ids:
            raise GraphFailure(
                403, 200, None, "(#200) You do not have permission to access this phone number"
            )
        return number

    def whatsapp_phone_number(self, call: Incoming) -> Reply:
        """``GET /{phone-number-id}``: the number's fields the caller names (``fields``), among
        them ``throughput {level}`` and ``is_on_biz_app``. Other nodes are not played."""
        if call.path("node") not in self.state.whatsapp_numbers:
            raise GraphFailure(400, 2500, None, f"Unknown path components: {call.request.url.path}")
        number = self.whatsapp_context(call)
        full: dict[str, Any] = {
            "id": number.id,
            "display_phone_number": number.display_phone_number,
            "verified_name": number.verified_name,
            "code_verification_status": "VERIFIED" if number.verified else "NOT_VERIFIED",
            "quality_rating": "GREEN",
            "platform_type": "CLOUD_API" if number.registered else "NOT_APPLICABLE",
            "throughput": {"level": number.throughput_level},
            "is_on_biz_app": number.on_biz_app,
        }
        fields = _split_fields(str(call.params.get("fields") or "verified_name,display_phone_number,id"))
        row = {name: full[name] for name in fields if name in full}
        row.setdefault("id", number.id)
        return Reply(row)

    def waba_node(self, call: Incoming) -> Reply:
        """``GET /{waba-id}``: the WhatsApp Business Account's fields the caller names, among them
        ``owner_business_info {id, name}`` (the business portfolio that owns it), for a token that
        can manage it."""
        token = self.meta_token(call)
        waba_id = call.path("node")
        if token.kind != "system" or waba_id not in token.waba_ids:
            raise GraphFailure(
                403, 200, None, "(#200) You do not have permission to access this WhatsApp Business Account"
            )
        owner = self.state.waba_owner(waba_id)
        full: dict[str, Any] = {
            "id": waba_id,
            "name": f"WABA {waba_id}",
            "owner_business_info": {"id": owner, "name": f"Business {owner}"},
        }
        fields = _split_fields(str(call.params.get("fields") or "id,name"))
        row = {name: full[name] for name in fields if name in full}
        row.setdefault("id", waba_id)
        return Reply(row)

    def waba_phone_numbers(self, call: Incoming) -> Reply:
        """``GET /{waba-id}/phone_numbers``: the WABA's numbers, for a token that can manage it."""
        token = self.meta_token(call)
        waba_id = call.path("node")
        numbers = [n for n in self.state.whatsapp_numbers.values() if n.waba_id == waba_id]
        if not numbers:
            raise _unknown_object(waba_id)
        if token.kind != "system" or waba_id not in token.waba_ids:
            raise GraphFailure(
                403, 200, None, "(#200) You do not have permission to access this WhatsApp Business Account"
            )
        fields = _split_fields(str(call.params.get("fields") or "verified_name,display_phone_number,id"))
        try:
            limit = max(1, min(100, int(call.params.get("limit") or 25)))
        except ValueError:
            raise GraphFailure(400, 100, None, "(#100) Param limit must be a number") from None
        start = _uncursor(str(call.params["after"])) + 1 if call.params.get("after") else 0
        rows = []
        for number in numbers[start : start + limit]:
            full = {
                "id": number.id,
                "display_phone_number": number.display_phone_number,
                "verified_name": number.verified_name,
                "code_verification_status": "VERIFIED" if number.verified else "NOT_VERIFIED",
                "quality_rating": "GREEN",
                "platform_type": "CLOUD_API" if number.registered else "NOT_APPLICABLE",
            }
            row = {name: full[name] for name in fields if name in full}
            row.setdefault("id", number.id)
            rows.append(row)
        body: dict[str, Any] = {"data": rows}
        if rows:
            last = start + len(rows) - 1
            paging: dict[str, Any] = {"cursors": {"before": _cursor(start), "after": _cursor(last)}}
            if last + 1 < len(numbers):
                paging["next"] = str(call.request.url.include_query_params(after=_cursor(last), limit=limit))
            body["paging"] = paging
        return Reply(body)

    def whatsapp_send(self, call: Incoming) -> Reply:
        number = self.whatsapp_context(call)
        params = call.params
        if params.get("messaging_product") != "whatsapp":
            raise _param_required("messaging_product")
        if "status" in params:
            return self.whatsapp_mark_read(number, params)
        to = params.get("to")
        recipient = params.get("recipient")
        # "to" is a phone number and wins when both are given; "recipient" a business-scoped user id
        if to is None and isinstance(recipient, str) and _BSUID.fullmatch(recipient):
            to = recipient
        elif not isinstance(to, str) or not _digits(to):
            raise _param_required("to")
        if not number.registered:
            raise GraphFailure(
                400, 133010, None, "Account not registered", details="The phone number is not registered"
            )
        kind = params.get("type", "text")
        if kind not in WHATSAPP_TYPES:
            raise GraphFailure(
                400, 100, None, f"(#100) Param type must be one of {{{', '.join(sorted(WHATSAPP_TYPES))}}}"
            )
        content = _json_param(params.get(kind))
        if not isinstance(content, dict):
            raise GraphFailure(
                400,
                131008,
                None,
                "Required parameter is missing",
                details=f"The parameter {kind} is required.",
            )
        if kind == "text":
            body = content.get("body")
            if not isinstance(body, str) or not body:
                raise GraphFailure(
                    400, 131008, None, "Required parameter is missing", details="text['body'] is required."
                )
            if len(body) > WHATSAPP_TEXT_MAX:
                raise GraphFailure(
                    400,
                    131009,
                    None,
                    "(#131009) Parameter value is not valid",
                    details=f"text['body'] must be at most {WHATSAPP_TEXT_MAX} characters.",
                )
        elif kind == "template":
            language = content.get("language")
            if not content.get("name") or not isinstance(language, dict) or not language.get("code"):
                raise GraphFailure(
                    400,
                    131008,
                    None,
                    "Required parameter is missing",
                    details="template name and language.code are required.",
                )
        elif kind in WHATSAPP_MEDIA and not (content.get("id") or content.get("link")):
            raise GraphFailure(
                400, 131008, None, "Required parameter is missing", details=f"{kind} needs an id or a link."
            )
        wa_id = to if _BSUID.fullmatch(to) else _digits(to)
        if number.enforce_window and kind != "template":
            last = self.state.windows.get((number.id, wa_id))
            if last is None or self.state.now() - last > WINDOW_S:
                raise GraphFailure(
                    400,
                    WINDOW_CLOSED,
                    None,
                    "Re-engagement message",
                    details=(
                        "Message failed to send because more than 24 hours have passed since the "
                        "customer last replied to this number."
                    ),
                )
        wamid = "wamid." + base64.b64encode(secrets.token_bytes(30)).decode()
        message: dict[str, Any] = {"id": wamid}
        if kind == "template":
            message["message_status"] = "accepted"
        return Reply(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "user_id" if _BSUID.fullmatch(to) else "wa_id": wa_id}],
                "messages": [message],
            },
            result_id=wamid,
        )

    def whatsapp_mark_read(self, number: WhatsAppNumber, params: dict[str, Any]) -> Reply:
        """``POST /{phone-number-id}/messages`` with ``status: read``: a read receipt for a received
        message, with ``typing_indicator: {type: text}`` the typing indicator too (recorded among
        the sends like any call to this endpoint)."""
        if params.get("status") != "read":
            raise GraphFailure(400, 100, None, "(#100) Param status must be one of {read}")
        message_id = params.get("message_id")
        if not isinstance(message_id, str) or not message_id.startswith("wamid."):
            raise _param_required("message_id")
        typing = params.get("typing_indicator")
        if typing is not None and (not isinstance(typing, dict) or typing.get("type") != "text"):
            raise GraphFailure(400, 100, None, "(#100) Param typing_indicator[type] must be one of {text}")
        if not number.registered:
            raise GraphFailure(
                400, 133010, None, "Account not registered", details="The phone number is not registered"
            )
        return Reply({"success": True})

    def whatsapp_thread_control(self, call: Incoming) -> Reply:
        """``POST /{phone-number-id}/thread_control`` (Conversation Routing): ``take`` makes this
        app the customer's thread owner (the number's escalation partner only), ``release`` gives
        it up (its owner only); the customer is ``to`` (phone) or ``recipient`` (BSUID)."""
        number = self.whatsapp_context(call)
        params = call.params
        if params.get("messaging_product") != "whatsapp":
            raise _param_required("messaging_product")
        action = params.get("action")
        if action not in ("take", "release"):
            raise GraphFailure(400, 100, None, "(#100) Param action must be one of {take, release, pass}")
        to, recipient = params.get("to"), params.get("recipient")
        if isinstance(to, str) and _digits(to):
            customer = _digits(to)
        elif isinstance(recipient, str) and _BSUID.fullmatch(recipient):
            customer = recipient
        else:
            raise _param_required("to")
        app = self.state.meta_app_id
        if action == "take":
            if not number.escalation_partner:
                raise GraphFailure(400, 100, None, "(#100) Only the escalation partner can take a thread")
            number.thread_owners[customer] = app
        elif number.thread_owners.get(customer) == app:
            del number.thread_owners[customer]
        else:
            raise GraphFailure(400, 100, None, "(#100) This app is not the thread's active responder")
        return Reply({"messaging_product": "whatsapp"})

    def request_code(self, call: Incoming) -> Reply:
        number = self.whatsapp_context(call)
        if call.params.get("code_method") not in ("SMS", "VOICE"):
            raise GraphFailure(400, 100, None, "(#100) Param code_method must be one of {SMS, VOICE}")
        if not call.params.get("language"):
            raise _param_required("language")
        number.last_code = f"{secrets.randbelow(10**6):06d}"
        number.code_used = False
        return Reply({"success": True})

    def verify_code(self, call: Incoming) -> Reply:
        number = self.whatsapp_context(call)
        code = str(call.params.get("code") or "")
        if not code:
            raise _param_required("code")
        if number.last_code is None or number.code_used or not secrets.compare_digest(code, number.last_code):
            raise GraphFailure(
                400,
                WRONG_CODE,
                None,
                "Verify code error",
                details="Code couldn't be verified, You have entered the wrong code or it has expired.",
            )
        number.code_used = True
        number.verified = True
        return Reply({"success": True})

    def register(self, call: Incoming) -> Reply:
        number = self.whatsapp_context(call)
        if call.params.get("messaging_product") != "whatsapp":
            raise _param_required("messaging_product")
        pin = str(call.params.get("pin") or "")
        if len(pin) != 6 or not pin.isdigit():
            raise GraphFailure(400, 100, None, "(#100) Param pin must be a 6-digit number")
        if not number.verified:
            raise GraphFailure(
                400,
                133006,
                None,
                "Phone number re-verification needed",
                details="Verify the number before registering it.",
            )
        if number.pin is not None and number.pin != pin:
            raise GraphFailure(400, 133005, None, "Two step verification PIN Mismatch")
        number.pin = pin
        number.registered = True
        return Reply({"success": True})

    def subscribed_apps(self, call: Incoming) -> Reply:
        """``/{waba-id}/subscribed_apps``: POST subscribes this app to the WABA's webhooks, GET
        lists the apps subscribed, DELETE removes this app; for a token that can manage the WABA.
        Other nodes are Pages (Page Subscribed Apps)."""
        node = call.path("node")
        if not any(n.waba_id == node for n in self.state.whatsapp_numbers.values()):
            return super().subscribed_apps(call)
        waba_id = self.waba_context(call)
        apps = self.state.waba_subscriptions.setdefault(waba_id, set())
        if call.request.method == "GET":
            rows = [
                {"whatsapp_business_api_data": {"id": app_id, "name": self.state.app_name}}
                for app_id in sorted(apps)
            ]
            return Reply({"data": rows})
        if call.request.method == "DELETE":
            apps.discard(self.state.meta_app_id)
        else:
            apps.add(self.state.meta_app_id)
        return Reply({"success": True})

    # ---- WhatsApp Business Management API: templates, business profile, uploads

    def waba_context(self, call: Incoming) -> str:
        """The WABA in the path, for a system user's token that can manage it."""
        token = self.meta_token(call)
        waba_id = call.path("node")
        if not any(n.waba_id == waba_id for n in self.state.whatsapp_numbers.values()):
            raise _unknown_object(waba_id)
        if token.kind != "system" or waba_id not in token.waba_ids:
            raise GraphFailure(
                403, 200, None, "(#200) You do not have permission to access this WhatsApp Business Account"
            )
        return waba_id

    def message_templates(self, call: Incoming) -> Reply:
        """``/{waba-id}/message_templates``: create (POST), list (GET), delete (DELETE)."""
        waba_id = self.waba_context(call)
        if call.request.method == "POST":
            return self._create_template(call, waba_id)
        if call.request.method == "DELETE":
            return self._delete_template(call, waba_id)
        templates = [t for t in self.state.whatsapp_templates.values() if t.waba_id == waba_id]
        for name in ("name", "status", "category", "language"):
            wanted = call.params.get(name)
            if wanted:
                templates = [t for t in templates if getattr(t, name) == wanted]
        fields = _split_fields(
            str(call.params.get("fields") or "id,name,language,status,category,components")
        )
        try:
            limit = max(1, min(100, int(call.params.get("limit") or 25)))
        except ValueError:
            raise GraphFailure(400, 100, None, "(#100) Param limit must be a number") from None
        start = _uncursor(str(call.params["after"])) + 1 if call.params.get("after") else 0
        rows = []
        for template in templates[start : start + limit]:
            full = template.view()
            row = {name: full[name] for name in fields if name in full}
            row.setdefault("id", template.id)
            rows.append(row)
        body: dict[str, Any] = {"data": rows}
        if rows:
            last = start + len(rows) - 1
            paging: dict[str, Any] = {"cursors": {"before": _cursor(start), "after": _cursor(last)}}
            if last + 1 < len(templates):
                paging["next"] = str(call.request.url.include_query_params(after=_cursor(last), limit=limit))
            body["paging"] = paging
        return Reply(body)

    def _create_template(self, call: Incoming, waba_id: str) -> Reply:
        params = call.params
        for required in ("name", "language", "category", "components"):
            if not params.get(required):
                raise _param_required(required)
        name, language = str(params["name"]), str(params["language"])
        category = str(params["category"]).upper()
        components = _json_param(params["components"])
        if not isinstance(components, list) or not all(isinstance(c, dict) for c in components):
            raise GraphFailure(400, 100, None, "(#100) Param components must be an array of objects")
        parameter_format = str(params.get("parameter_format") or "POSITIONAL").upper()
        problem = template_problem(name, category, components, parameter_format)
        if problem is not None:
            raise GraphFailure(400, 100, None, "Invalid parameter", details=f"{problem.field}: {problem}")
        if any(
            t.waba_id == waba_id and t.name == name and t.language == language
            for t in self.state.whatsapp_templates.values()
        ):
            raise GraphFailure(
                400,
                100,
                TEMPLATE_EXISTS,
                "Invalid parameter",
                details=f"Content in this language already exists for template {name}.",
            )
        template = WhatsAppTemplate(
            id=self.state.next_id(),
            waba_id=waba_id,
            name=name,
            language=language,
            category=category,
            components=components,
            parameter_format=parameter_format,
        )
        self.state.whatsapp_templates[template.id] = template
        return Reply({"id": template.id, "status": template.status, "category": template.category})

    def _delete_template(self, call: Incoming, waba_id: str) -> Reply:
        name = str(call.params.get("name") or "")
        if not name:
            raise _param_required("name")
        hsm_id = call.params.get("hsm_id")
        doomed = [
            t
            for t in self.state.whatsapp_templates.values()
            if t.waba_id == waba_id and t.name == name and (not hsm_id or t.id == str(hsm_id))
        ]
        if not doomed:
            raise GraphFailure(
                400, 100, None, "Invalid parameter", details=f"Message template {name!r} could not be found."
            )
        for template in doomed:
            del self.state.whatsapp_templates[template.id]
        return Reply({"success": True})

    def business_profile(self, call: Incoming) -> Reply:
        """``/{phone-number-id}/whatsapp_business_profile``: read (GET) or update (POST)."""
        number = self.whatsapp_context(call)
        profile = self.state.whatsapp_profiles.setdefault(
            number.id, {"about": "Hey there! I am using WhatsApp."}
        )
        if call.request.method == "GET":
            fields = _split_fields(str(call.params.get("fields") or ",".join(READ_FIELDS)))
            row = {name: profile[name] for name in fields if name in profile}
            return Reply({"data": [{**row, "messaging_product": "whatsapp"}]})
        params = call.params
        if params.get("messaging_product") != "whatsapp":
            raise _param_required("messaging_product")
        changes = {k: _json_param(v) for k, v in params.items() if k in PROFILE_FIELDS}
        problem = profile_problem(changes)
        if problem is not None:
            raise GraphFailure(400, 100, None, "Invalid parameter", details=f"{problem[0]}: {problem[1]}")
        handle = params.get("profile_picture_handle")
        if handle is not None:
            upload = self.state.upload_handles.get(str(handle))
            if upload is None or upload.file_type not in PICTURE_TYPES:
                raise GraphFailure(
                    400,
                    100,
                    None,
                    "Invalid parameter",
                    details="profile_picture_handle is not a valid image handle.",
                )
            changes["profile_picture_url"] = (
                f"https://pps.whatsapp.net/sandbox/{number.id}/{upload.id[7:]}.jpg"
            )
        profile.update(changes)
        return Reply({"success": True})

    def start_upload(self, call: Incoming) -> Reply:
        """``POST /{app-id}/uploads``: open a Resumable Upload API session."""
        self.meta_token(call)
        if call.path("node") != self.state.meta_app_id:
            raise _unknown_object(call.path("node"))
        params = call.params
        for required in ("file_length", "file_type"):
            if not params.get(required):
                raise _param_required(required)
        file_type = str(params["file_type"])
        if file_type not in UPLOAD_TYPES:
            raise GraphFailure(
                400, 100, None, f"(#100) Param file_type must be one of {{{', '.join(sorted(UPLOAD_TYPES))}}}"
            )
        try:
            length = int(params["file_length"])
        except ValueError:
            raise GraphFailure(400, 100, None, "(#100) Param file_length must be a number") from None
        upload = Upload(
            id=f"upload:{self.state.next_id()}",
            file_name=str(params.get("file_name") or "file"),
            file_length=length,
            file_type=file_type,
        )
        self.state.uploads[upload.id] = upload
        return Reply({"id": upload.id})

    def upload_data(self, call: Incoming) -> Reply:
        """``POST /{upload-session-id}``: the file's bytes from ``file_offset``; the handle once
        every byte arrived. The token comes as ``Authorization: OAuth {token}``."""
        node = call.path("node")
        upload = self.state.uploads.get(node)
        if upload is None:
            raise _unknown_object(node)
        header = call.request.headers.get("authorization", "")
        if not header.lower().startswith("oauth "):
            raise GraphFailure(
                400, INVALID_TOKEN, None, "Invalid OAuth access token - Cannot parse access token"
            )
        self.meta_token(call)
        try:
            offset = int(call.request.headers.get("file_offset", ""))
        except ValueError:
            raise GraphFailure(400, 100, None, "(#100) The header file_offset is required") from None
        if offset != len(upload.data):
            raise GraphFailure(400, 100, None, f"(#100) file_offset must be {len(upload.data)}")
        upload.data += call.raw
        if len(upload.data) > upload.file_length:
            raise GraphFailure(400, 100, None, "(#100) More bytes than file_length")
        if len(upload.data) < upload.file_length:
            return Reply({"file_offset": len(upload.data)})
        upload.handle = upload.handle or f"4::{base64.b64encode(upload.id.encode()).decode()}"
        self.state.upload_handles[upload.handle] = upload
        return Reply({"h": upload.handle})
