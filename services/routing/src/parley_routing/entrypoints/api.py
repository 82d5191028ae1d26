"""Routing's agent API (``/v1``): queries and commands on conversations, scoped to the caller.

No ``from __future__ import annotations`` here: FastAPI must see the dependency objects built
inside ``create_api`` when it reads the route signatures.
"""

import base64
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Query
from parley_events import ChannelRole, ConversationEvent, Queue
from parley_shared.api import ApiError, error_responses, install_error_handlers, principal_dependency
from parley_shared.auth import Principal, TokenVerifier
from parley_shared.channels import KafkaChannelDirectory, KafkaTeamDirectory, role_on_channel
from pydantic import BaseModel, Field

from parley_routing.adapters.repository import DocumentTooLarge
from parley_routing.domain.access import (
    Actor,
    Forbidden,
    acting_role,
    check_assign,
    check_unassign,
)
from parley_routing.domain.model import (
    MAX_LABEL_LENGTH,
    MAX_NOTE_LENGTH,
    MAX_TAGS,
    Conversation,
    InvalidCommand,
    command_cause,
)
from parley_routing.service import ConversationNotFound, ConversationService


class NoteOut(BaseModel):
    note_id: str
    author_id: str
    text: str
    created_at: datetime


class ConversationOut(BaseModel):
    """A conversation as agents see it."""

    id: str
    tenant_id: str
    channel_id: str
    provider: str
    conversation_key: str
    queue: Queue
    owner_id: str | None
    tags: list[str]
    topics: list[str]
    note_count: int = Field(description="How many notes it has (`GET .../notes` lists them).")
    created_at: datetime
    last_activity_at: datetime
    sequence: int
    your_role: ChannelRole | None = None


class ConversationDetail(ConversationOut):
    notes: list[NoteOut] = Field(description="Its internal notes, oldest first.")
    history: list[dict[str, Any]] = Field(description="Every event of the conversation, by sequence.")


class NoteList(BaseModel):
    items: list[NoteOut] = Field(description="The conversation's internal notes, oldest first.")


class ConversationPage(BaseModel):
    items: list[ConversationOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at the end.")


class CommandResult(BaseModel):
    conversation: ConversationOut
    events: list[dict[str, Any]] = Field(description="What the command caused (empty if nothing changed).")


class MoveCommand(BaseModel):
    queue: Literal["pending", "resolved"]


class AssignCommand(BaseModel):
    owner_id: str = Field(min_length=1)


class LabelsCommand(BaseModel):
    add: list[Annotated[str, Field(min_length=1, max_length=MAX_LABEL_LENGTH)]] = Field(
        default_factory=list, max_length=MAX_TAGS
    )
    remove: list[Annotated[str, Field(max_length=200)]] = Field(default_factory=list, max_length=MAX_TAGS)


class NoteCommand(BaseModel):
    text: str = Field(min_length=1, max_length=MAX_NOTE_LENGTH)


IdempotencyKey = Annotated[str, Header(alias="Idempotency-Key", min_length=1, max_length=200)]


def _encode_cursor(cursor: tuple[datetime, str] | None) -> str | None:
    if cursor is None:
        return None
    return base64.urlsafe_b64encode(f"{cursor[0].isoformat()}|{cursor[1]}".encode()).decode()


def _decode_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    if not cursor:
        return None
    try:
        at, _, conversation_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(at), conversation_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(422, "INVALID_CURSOR", "cursor is not one this API returned") from exc


def create_api(
    service: ConversationService,
    channels: KafkaChannelDirectory,
    teams: KafkaTeamDirectory,
    verifier: TokenVerifier,
    clock: Callable[[], datetime],
) -> FastAPI:
    api = FastAPI(
        title="Parley routing API",
        version="1.0.0",
        description="Conversations, queues and ownership for agents. Bearer JWT on every route.",
        responses=error_responses(401, 422),
    )
    install_error_handlers(api)
    caller = Depends(principal_dependency(verifier))

    def role_on(principal: Principal, channel_id: str) -> ChannelRole | None:
        role = role_on_channel(channels, teams, principal.tenant_id, principal.user_id, channel_id)
        if (
            channels.by_id.get(channel_id) is None
            or channels.by_id[channel_id].tenant_id != principal.tenant_id
        ):
            return None
        return acting_role(Actor(principal.user_id, principal.tenant_id, principal.is_admin), role)

    def user_role(tenant_id: str, user_id: str, channel_id: str) -> ChannelRole | None:
        return role_on_channel(channels, teams, tenant_id, user_id, channel_id)

    def out(conversation: Conversation, role: ChannelRole | None) -> ConversationOut:
        return ConversationOut(
            id=conversation.id,
            tenant_id=conversation.tenant_id,
            channel_id=conversation.channel_id,
            provider=conversation.provider.value,
            conversation_key=conversation.conversation_key,
            queue=conversation.queue,
            owner_id=conversation.owner_id,
            tags=conversation.tags,
            topics=conversation.topics,
            note_count=conversation.note_count,
            created_at=conversation.created_at,
            last_activity_at=conversation.last_activity_at,
            sequence=conversation.sequence,
            your_role=role,
        )

    async def visible(principal: Principal, conversation_id: str) -> tuple[Conversation, ChannelRole]:
        conversation = await service.repository.get(conversation_id)
        # another tenant's or an invisible conversation is indistinguishable from a missing one
        if conversation is None or conversation.tenant_id != principal.tenant_id:
            raise ApiError(404, "CONVERSATION_NOT_FOUND", "no such conversation")
        role = role_on(principal, conversation.channel_id)
        if role is None:
            raise ApiError(404, "CONVERSATION_NOT_FOUND", "no such conversation")
        return conversation, role

    def result(
        conversation: Conversation, role: ChannelRole, events: list[ConversationEvent]
    ) -> CommandResult:
        return CommandResult(
            conversation=out(conversation, role),
            events=[{"type": e.event_type, **e.model_dump(mode="json")} for e in events],
        )

    async def command(
        principal: Principal,
        conversation_id: str,
        key: str,
        check: Callable[[Conversation, ChannelRole], None],
        change: Callable[[Conversation, str], list[ConversationEvent]],
    ) -> CommandResult:
        conversation, role = await visible(principal, conversation_id)
        check(conversation, role)
        cause = command_cause(principal.user_id, key)
        try:
            updated, events = await service.apply(conversation_id, lambda c: change(c, cause))
        except InvalidCommand as exc:
            raise ApiError(422, exc.code, str(exc)) from exc
        except DocumentTooLarge as exc:
            raise ApiError(422, exc.code, str(exc)) from exc
        except ConversationNotFound as exc:
            raise ApiError(404, "CONVERSATION_NOT_FOUND", "no such conversation") from exc
        return result(updated, role, events)

    def forbid(exc: Forbidden) -> ApiError:
        return ApiError(403, exc.code, exc.message)

    @api.get("/conversations", response_model=ConversationPage)
    async def list_conversations(
        principal: Annotated[Principal, caller],
        queue: Queue | None = None,
        channel_id: str | None = None,
        owner_id: str | None = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        cursor: str | None = None,
    ) -> ConversationPage:
        """The conversations the caller may see, newest activity first."""
        roles = {
            c.channel_id: role_on(principal, c.channel_id) for c in channels.channels_of(principal.tenant_id)
        }
        visible_ids = [cid for cid, role in roles.items() if role is not None]
        if channel_id is not None:
            visible_ids = [cid for cid in visible_ids if cid == channel_id]
        page = await service.repository.list_visible(
            principal.tenant_id,
            visible_ids,
            queue=queue,
            owner_id=owner_id,
            limit=limit,
            after=_decode_cursor(cursor),
        )
        return ConversationPage(
            items=[out(c, roles[c.channel_id]) for c in page.items],
            next_cursor=_encode_cursor(page.next_cursor),
        )

    not_found = error_responses(404)
    forbidden_or_not_found = error_responses(403, 404)

    @api.get("/conversations/{conversation_id}", response_model=ConversationDetail, responses=not_found)
    async def get_conversation(
        principal: Annotated[Principal, caller], conversation_id: str
    ) -> ConversationDetail:
        """One conversation with its whole history."""
        conversation, role = await visible(principal, conversation_id)
        history = await service.repository.history_of(conversation_id)
        notes = [NoteOut(**n.__dict__) for n in await service.repository.notes_of(conversation)]
        return ConversationDetail(**out(conversation, role).model_dump(), notes=notes, history=history)

    @api.get("/conversations/{conversation_id}/notes", response_model=NoteList, responses=not_found)
    async def list_notes(principal: Annotated[Principal, caller], conversation_id: str) -> NoteList:
        """The conversation's internal notes, oldest first (at most 200 per conversation)."""
        conversation, _ = await visible(principal, conversation_id)
        return NoteList(
            items=[NoteOut(**n.__dict__) for n in await service.repository.notes_of(conversation)]
        )

    @api.post("/conversations/{conversation_id}/status", response_model=CommandResult, responses=not_found)
    async def move(
        principal: Annotated[Principal, caller], conversation_id: str, body: MoveCommand, key: IdempotencyKey
    ) -> CommandResult:
        """Move to Pending or Resolved (any role). Resolving clears the owner."""
        return await command(
            principal,
            conversation_id,
            key,
            lambda c, r: None,
            lambda c, cause: c.move(Queue(body.queue), principal.user_id, cause, clock()),
        )

    @api.post(
        "/conversations/{conversation_id}/owner",
        response_model=CommandResult,
        responses=forbidden_or_not_found,
    )
    async def assign(
        principal: Annotated[Principal, caller],
        conversation_id: str,
        body: AssignCommand,
        key: IdempotencyKey,
    ) -> CommandResult:
        """Make someone the owner: yourself as a Contributor, anyone who can reply as a Supervisor."""
        actor = Actor(principal.user_id, principal.tenant_id, principal.is_admin)

        def check(conversation: Conversation, role: ChannelRole) -> None:
            try:
                check_assign(
                    actor,
                    role,
                    body.owner_id,
                    user_role(principal.tenant_id, body.owner_id, conversation.channel_id),
                )
            except Forbidden as exc:
                raise forbid(exc) from exc

        return await command(
            principal,
            conversation_id,
            key,
            check,
            lambda c, cause: c.assign(body.owner_id, principal.user_id, cause, clock()),
        )

    @api.post(
        "/conversations/{conversation_id}/owner:clear",
        response_model=CommandResult,
        responses=forbidden_or_not_found,
    )
    async def unassign(
        principal: Annotated[Principal, caller], conversation_id: str, key: IdempotencyKey
    ) -> CommandResult:
        """Clear the owner: your own ownership as a Contributor, anyone's as a Supervisor."""
        actor = Actor(principal.user_id, principal.tenant_id, principal.is_admin)

        def check(conversation: Conversation, role: ChannelRole) -> None:
            try:
                check_unassign(actor, role, conversation.owner_id)
            except Forbidden as exc:
                raise forbid(exc) from exc

        return await command(
            principal,
            conversation_id,
            key,
            check,
            lambda c, cause: c.unassign(principal.user_id, cause, clock()),
        )

    def labels_route(kind: str) -> None:
        async def change_labels(
            principal: Annotated[Principal, caller],
            conversation_id: str,
            body: LabelsCommand,
            key: IdempotencyKey,
        ) -> CommandResult:
            return await command(
                principal,
                conversation_id,
                key,
                lambda c, r: None,
                lambda c, cause: c.change_labels(
                    kind, body.add, body.remove, principal.user_id, cause, clock()
                ),
            )

        change_labels.__doc__ = f"Add and remove {kind} (any role)."
        api.post(
            f"/conversations/{{conversation_id}}/{kind}",
            response_model=CommandResult,
            responses=not_found,
            name=f"change_{kind}",
        )(change_labels)

    labels_route("tags")
    labels_route("topics")

    @api.post("/conversations/{conversation_id}/notes", response_model=CommandResult, responses=not_found)
    async def add_note(
        principal: Annotated[Principal, caller], conversation_id: str, body: NoteCommand, key: IdempotencyKey
    ) -> CommandResult:
        """Add an internal note (any role)."""
        return await command(
            principal,
            conversation_id,
            key,
            lambda c, r: None,
            lambda c, cause: c.add_note(body.text, principal.user_id, cause, clock()),
        )

    return api
