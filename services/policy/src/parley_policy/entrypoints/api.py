"""Policy's API (``/v1``): send a reply, check one without sending, read the reply window.

No ``from __future__ import annotations`` here: FastAPI must see the dependency objects built
inside ``create_api`` when it reads the route signatures.
"""

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header
from fastapi.responses import JSONResponse
from parley_events import SenderType
from parley_providers import ProviderError
from parley_shared.api import (
    ApiError,
    ErrorOut,
    error_responses,
    install_error_handlers,
    principal_dependency,
)
from parley_shared.auth import Principal, TokenVerifier
from pydantic import BaseModel, ConfigDict, Field, model_validator

from parley_policy.domain.decision import Decision, ReplyRequest, Template
from parley_policy.domain.length import MAX_TEXT_CHARACTERS
from parley_policy.service import (
    AutomationScopeRequired,
    ConversationUnknown,
    NothingToRead,
    NotThreadOwner,
    PolicyService,
    ReadForbidden,
    ReadReceiptsUnsupported,
    ThreadControlForbidden,
    ThreadControlUnsupported,
)


class ThreadControlOut(BaseModel):
    """Who answers the thread after a take or a release."""

    conversation_id: str
    parley_active: bool = Field(description="Whether Parley's app is the thread's active responder now.")


class ReadIn(BaseModel):
    """Mark the customer's last message as read; optionally show them that a reply is coming."""

    typing: bool = Field(
        default=False,
        description="Also show the typing indicator (WhatsApp: it clears when a reply is sent or "
        "after 25 seconds, whichever comes first).",
    )


class ReadOut(BaseModel):
    """What the provider was told."""

    conversation_id: str
    message_id: str = Field(description="The provider's id of the customer message marked as read.")
    typing: bool


class TemplateIn(BaseModel):
    name: str = Field(min_length=1)
    language: str = Field(min_length=2, examples=["en_US"])
    parameters: list[str] = Field(default_factory=list)


class ReplyIn(BaseModel):
    """A reply: text, or (WhatsApp) a template with its parameters."""

    # the document says what _text_or_template checks: exactly one of the two, not null
    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {
                    "required": ["text"],
                    "properties": {"text": {"type": "string"}, "template": {"type": "null"}},
                },
                {
                    "required": ["template"],
                    "properties": {"template": {"type": "object"}, "text": {"type": "null"}},
                },
            ]
        }
    )

    kind: str = Field(default="direct", pattern="^(direct|comment|private_reply|mention)$")
    text: str | None = Field(
        default=None,
        max_length=MAX_TEXT_CHARACTERS,
        description="At most 16,384 characters (past every provider's limit): longer text is invalid "
        "input, refused before anything counts it.",
    )
    template: TemplateIn | None = None
    tag: str | None = Field(
        default=None,
        examples=["HUMAN_AGENT"],
        description="Messenger and Instagram: HUMAN_AGENT, for a person's reply between 24 hours and "
        "7 days after the customer's last message, on a channel that allows it; inside 24 hours the "
        "reply is sent as RESPONSE without a tag. ACCOUNT_UPDATE, CONFIRMED_EVENT_UPDATE and "
        "POST_PURCHASE_UPDATE were retired on 2026-04-27: 422 `TAG_RETIRED`.",
    )
    sender_type: SenderType = Field(
        default=SenderType.HUMAN,
        description="`automated` only with a service principal's token (scope `parley:automation`); "
        "a person's token gets 403 `AUTOMATION_SCOPE_REQUIRED`.",
    )
    comment_id: str | None = Field(default=None, description="The comment or post answered (comments, X).")

    @model_validator(mode="after")
    def _text_or_template(self) -> "ReplyIn":
        if (self.text is None) == (self.template is None):
            raise ValueError("send exactly one of text or template")
        return self

    def to_request(self) -> ReplyRequest:
        template = (
            Template(self.template.name, self.template.language, tuple(self.template.parameters))
            if self.template
            else None
        )
        return ReplyRequest(
            kind=self.kind,
            text=self.text,
            template=template,
            tag=self.tag,
            sender_type=self.sender_type,
            comment_id=self.comment_id,
        )


class DecisionOut(BaseModel):
    approved: bool
    reasons: list[dict[str, str]]
    messaging_type: str | None
    tag: str | None
    window_closes_at: datetime | None
    human_agent_window_closes_at: datetime | None
    length: int | None
    limit: int | None
    template_quality: str | None = None


class ReplyAccepted(BaseModel):
    """An approved reply: delivery follows on parley.replies.v1."""

    decision_id: str
    status: Literal["approved"]
    messaging_type: str | None
    tag: str | None
    template_quality: str | None = Field(
        default=None,
        description="A WhatsApp template's quality rating (GREEN, YELLOW, RED, UNKNOWN) when known: "
        "a YELLOW or RED template is sent, and Meta may pause it soon.",
    )


class Reason(BaseModel):
    code: str
    message: str


class ReplyRefused(ErrorOut):
    """Invalid input (`VALIDATION_ERROR`), or a refused reply: `code` is the first of `reasons`."""

    decision_id: str | None = Field(default=None, description="A refused reply's decision.")
    reasons: list[Reason] | None = Field(default=None, description="Every rule that refused the reply.")


class ReplyWindowOut(BaseModel):
    conversation_id: str
    provider: str
    last_customer_message_at: datetime | None
    window_closes_at: datetime | None
    window_open: bool
    human_agent_window_closes_at: datetime | None
    human_agent_tag_enabled: bool


def decision_out(decision: Decision) -> DecisionOut:
    return DecisionOut(
        approved=decision.approved,
        reasons=[{"code": r.code, "message": r.message} for r in decision.reasons],
        messaging_type=decision.messaging_type,
        tag=decision.tag,
        window_closes_at=decision.window_closes_at,
        human_agent_window_closes_at=decision.human_agent_window_closes_at,
        length=decision.length,
        limit=decision.limit,
        template_quality=decision.template_quality,
    )


def create_api(service: PolicyService, verifier: TokenVerifier) -> FastAPI:
    api = FastAPI(
        title="Parley policy API",
        version="1.0.0",
        description="Every outbound reply is decided here. Bearer JWT on every route.",
        responses=error_responses(401, 422),
    )
    install_error_handlers(api)
    caller = Depends(principal_dependency(verifier))

    def not_found() -> ApiError:
        return ApiError(404, "CONVERSATION_NOT_FOUND", "no such conversation")

    def automation_only() -> ApiError:
        return ApiError(
            403,
            "AUTOMATION_SCOPE_REQUIRED",
            "sender_type automated needs a service principal's token (scope parley:automation)",
        )

    refused: dict[int | str, dict[str, Any]] = {
        422: {
            "model": ReplyRefused,
            "description": "Invalid input, or the reply was refused.",
            "headers": {
                "Retry-After": {
                    "description": "Seconds until a refusal for throughput may pass.",
                    "schema": {"type": "integer"},
                }
            },
        }
    }

    @api.post(
        "/conversations/{conversation_id}/replies",
        status_code=202,
        response_model=ReplyAccepted,
        responses={**error_responses(403, 404), **refused},
    )
    async def send_reply(
        principal: Annotated[Principal, caller],
        conversation_id: str,
        body: ReplyIn,
        key: Annotated[str, Header(alias="Idempotency-Key", min_length=1, max_length=200)],
    ) -> Any:
        """202 with the decision id when approved (delivery follows); 422 with reason codes otherwise."""
        try:
            outcome = await service.request_reply(
                principal.tenant_id,
                principal.user_id,
                principal.is_admin,
                conversation_id,
                body.to_request(),
                key,
                automation=principal.is_automation,
            )
        except AutomationScopeRequired as exc:
            raise automation_only() from exc
        except ConversationUnknown as exc:
            raise not_found() from exc
        if outcome.decision.approved:
            return {
                "decision_id": outcome.reply_id,
                "status": "approved",
                "messaging_type": outcome.decision.messaging_type,
                "tag": outcome.decision.tag,
                "template_quality": outcome.decision.template_quality,
            }
        reasons = [{"code": r.code, "message": r.message} for r in outcome.decision.reasons]
        headers = (
            {"Retry-After": str(max(1, round(outcome.retry_after_s)))} if outcome.retry_after_s else None
        )
        return JSONResponse(
            {
                "code": reasons[0]["code"],
                "message": reasons[0]["message"],
                "decision_id": outcome.reply_id,
                "reasons": reasons,
            },
            status_code=422,
            headers=headers,
        )

    @api.post(
        "/conversations/{conversation_id}/replies:check",
        response_model=DecisionOut,
        responses=error_responses(403, 404),
    )
    async def check_reply(
        principal: Annotated[Principal, caller], conversation_id: str, body: ReplyIn
    ) -> DecisionOut:
        """The same decision without sending: reasons, closing times and the messaging type or tag."""
        try:
            decision = await service.check(
                principal.tenant_id,
                principal.user_id,
                principal.is_admin,
                conversation_id,
                body.to_request(),
                automation=principal.is_automation,
            )
        except AutomationScopeRequired as exc:
            raise automation_only() from exc
        except ConversationUnknown as exc:
            raise not_found() from exc
        return decision_out(decision)

    @api.get(
        "/conversations/{conversation_id}/reply-window",
        response_model=ReplyWindowOut,
        responses=error_responses(404),
    )
    async def reply_window(principal: Annotated[Principal, caller], conversation_id: str) -> ReplyWindowOut:
        """When the standard and the human-agent windows close."""
        try:
            return ReplyWindowOut(
                **await service.window(
                    principal.tenant_id,
                    principal.user_id,
                    principal.is_admin,
                    conversation_id,
                    automation=principal.is_automation,
                )
            )
        except ConversationUnknown as exc:
            raise not_found() from exc

    async def change_thread_control(
        principal: Principal, conversation_id: str, take: bool
    ) -> ThreadControlOut:
        try:
            active = await service.thread_control(
                principal.tenant_id, principal.user_id, principal.is_admin, conversation_id, take
            )
        except ConversationUnknown as exc:
            raise not_found() from exc
        except ThreadControlForbidden as exc:
            raise ApiError(
                403,
                "ROLE_FORBIDDEN",
                "Viewers cannot take or release threads; Contributors and Supervisors can",
            ) from exc
        except ThreadControlUnsupported as exc:
            raise ApiError(
                422, "THREAD_CONTROL_UNSUPPORTED", "this conversation's provider has no thread control"
            ) from exc
        except ProviderError as exc:
            # the provider's classification, never its text (it may echo ids or tokens)
            raise ApiError(
                502,
                "PROVIDER_REFUSED",
                f"the provider refused the call ({exc.kind.value})",
                error_kind=exc.kind.value,
            ) from exc
        return ThreadControlOut(conversation_id=conversation_id, parley_active=active)

    thread_control_errors = error_responses(403, 404, 422, 502)

    @api.post(
        "/conversations/{conversation_id}/thread-control:take",
        response_model=ThreadControlOut,
        responses=thread_control_errors,
    )
    async def take_thread_control(
        principal: Annotated[Principal, caller], conversation_id: str
    ) -> ThreadControlOut:
        """Make Parley's app the thread's active responder (Conversation Routing; Contributor or higher)."""
        return await change_thread_control(principal, conversation_id, True)

    @api.post(
        "/conversations/{conversation_id}/thread-control:release",
        response_model=ThreadControlOut,
        responses=thread_control_errors,
    )
    async def release_thread_control(
        principal: Annotated[Principal, caller], conversation_id: str
    ) -> ThreadControlOut:
        """Give the thread back: the provider routes the customer's next message (Contributor or higher)."""
        return await change_thread_control(principal, conversation_id, False)

    @api.post(
        "/conversations/{conversation_id}/read",
        response_model=ReadOut,
        responses=error_responses(403, 404, 409, 422, 502),
    )
    async def mark_read(
        principal: Annotated[Principal, caller], conversation_id: str, body: ReadIn | None = None
    ) -> ReadOut:
        """Mark the customer's last message as read, with a typing indicator when asked (WhatsApp;
        Contributor or higher, like replies)."""
        typing = body.typing if body is not None else False
        try:
            message_id = await service.mark_read(
                principal.tenant_id, principal.user_id, principal.is_admin, conversation_id, typing
            )
        except ConversationUnknown as exc:
            raise not_found() from exc
        except ReadForbidden as exc:
            raise ApiError(
                403, "ROLE_FORBIDDEN", "Viewers cannot mark messages read; Contributors and Supervisors can"
            ) from exc
        except NotThreadOwner as exc:
            raise ApiError(
                409, "NOT_THREAD_OWNER", "another responder answers this thread: no typing indicator"
            ) from exc
        except NothingToRead as exc:
            raise ApiError(
                409, "NOTHING_TO_READ", "the customer has sent no message to mark as read"
            ) from exc
        except ReadReceiptsUnsupported as exc:
            raise ApiError(
                422, "READ_RECEIPTS_UNSUPPORTED", "this conversation's provider takes no read receipts"
            ) from exc
        except ProviderError as exc:
            raise ApiError(
                502,
                "PROVIDER_REFUSED",
                f"the provider refused the call ({exc.kind.value})",
                error_kind=exc.kind.value,
            ) from exc
        return ReadOut(conversation_id=conversation_id, message_id=message_id, typing=typing)

    return api
