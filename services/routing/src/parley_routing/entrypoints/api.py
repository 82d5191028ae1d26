"""Routing's agent API (``/v1``): queries and commands on conversations, scoped to the caller.

No ``from __future__ import annotations`` here: FastAPI must see the dependency objects built
inside ``create_api`` when it reads the route signatures.
"""

import base64
from collections.abc import Awaitable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Query
from parley_events import ChannelRole, Queue
from parley_shared.api import ApiError, error_responses, install_error_handlers, principal_dependency
from parley_shared.auth import Principal, TokenVerifier
from pydantic import BaseModel, Field

from parley_routing.adapters.stores import DocumentTooLarge
from parley_routing.domain.access import Actor, Forbidden
from parley_routing.domain.model import (
    MAX_LABEL_LENGTH,
    MAX_NOTE_LENGTH,
    MAX_TAGS,
    Conversation,
    InvalidCommand,
)
from parley_routing.service import AgentService, CommandOutcome, ConversationNotFound, Visible


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


def _actor(principal: Principal) -> Actor:
    return Actor(principal.user_id, principal.tenant_id, principal.is_admin)


def _out(found: Visible) -> ConversationOut:
    conversation: Conversation = found.conversation
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
        your_role=found.role,
    )


def _not_found() -> ApiError:
    # missing, another tenant's and invisible conversations are answered the same way
    return ApiError(404, "CONVERSATION_NOT_FOUND", "no such conversation")


async def _answer(outcome: Awaitable[CommandOutcome]) -> CommandResult:
    """A command's outcome as the API answers it; the service's refusals as HTTP errors."""
    try:
        done = await outcome
    except ConversationNotFound as exc:
        raise _not_found() from exc
    except Forbidden as exc:
        raise ApiError(403, exc.code, exc.message) from exc
    except (InvalidCommand, DocumentTooLarge) as exc:
        raise ApiError(422, exc.code, str(exc)) from exc
    return CommandResult(
        conversation=_out(Visible(done.conversation, done.role)),
        events=[{"type": e.event_type, **e.model_dump(mode="json")} for e in done.events],
    )


def create_api(agents: AgentService, verifier: TokenVerifier) -> FastAPI:
    """HTTP only: authentication, request and answer shapes; the rules are the service's."""
    api = FastAPI(
        title="Parley routing API",
        version="1.0.0",
        description="Conversations, queues and ownership for agents. Bearer JWT on every route.",
        responses=error_responses(401, 422),
    )
    install_error_handlers(api)
    caller = Depends(principal_dependency(verifier))

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
        page = await agents.list_visible(
            _actor(principal),
            queue=queue,
            channel_id=channel_id,
            owner_id=owner_id,
            limit=limit,
            after=_decode_cursor(cursor),
        )
        return ConversationPage(
            items=[_out(found) for found in page.items], next_cursor=_encode_cursor(page.next_cursor)
        )

    not_found = error_responses(404)
    forbidden_or_not_found = error_responses(403, 404)

    @api.get("/conversations/{conversation_id}", response_model=ConversationDetail, responses=not_found)
    async def get_conversation(
        principal: Annotated[Principal, caller], conversation_id: str
    ) -> ConversationDetail:
        """One conversation with its whole history."""
        try:
            found, history, notes = await agents.detail(_actor(principal), conversation_id)
        except ConversationNotFound as exc:
            raise _not_found() from exc
        return ConversationDetail(
            **_out(found).model_dump(), notes=[NoteOut(**n.__dict__) for n in notes], history=history
        )

    @api.post("/conversations/{conversation_id}/open", response_model=ConversationDetail, responses=not_found)
    async def open_conversation(
        principal: Annotated[Principal, caller], conversation_id: str
    ) -> ConversationDetail:
        """An agent opens the conversation in their tool: the same answer as the GET, and, where the
        channel's `mark_read_on_open` setting is on and the caller may reply (Contributor or higher),
        the customer's last message is marked read (WhatsApp; policy sends the receipt, once per
        message). The GET never marks anything read: tools poll and prefetch it."""
        try:
            found, history, notes = await agents.open(_actor(principal), conversation_id)
        except ConversationNotFound as exc:
            raise _not_found() from exc
        return ConversationDetail(
            **_out(found).model_dump(), notes=[NoteOut(**n.__dict__) for n in notes], history=history
        )

    @api.get("/conversations/{conversation_id}/notes", response_model=NoteList, responses=not_found)
    async def list_notes(principal: Annotated[Principal, caller], conversation_id: str) -> NoteList:
        """The conversation's internal notes, oldest first (at most 200 per conversation)."""
        try:
            _found, notes = await agents.notes(_actor(principal), conversation_id)
        except ConversationNotFound as exc:
            raise _not_found() from exc
        return NoteList(items=[NoteOut(**n.__dict__) for n in notes])

    @api.post("/conversations/{conversation_id}/status", response_model=CommandResult, responses=not_found)
    async def move(
        principal: Annotated[Principal, caller], conversation_id: str, body: MoveCommand, key: IdempotencyKey
    ) -> CommandResult:
        """Move to Pending or Resolved (any role). Resolving clears the owner."""
        return await _answer(agents.move(_actor(principal), conversation_id, Queue(body.queue), key))

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
        return await _answer(agents.assign(_actor(principal), conversation_id, body.owner_id, key))

    @api.post(
        "/conversations/{conversation_id}/owner:clear",
        response_model=CommandResult,
        responses=forbidden_or_not_found,
    )
    async def unassign(
        principal: Annotated[Principal, caller], conversation_id: str, key: IdempotencyKey
    ) -> CommandResult:
        """Clear the owner: your own ownership as a Contributor, anyone's as a Supervisor."""
        return await _answer(agents.unassign(_actor(principal), conversation_id, key))

    def labels_route(kind: str) -> None:
        async def change_labels(
            principal: Annotated[Principal, caller],
            conversation_id: str,
            body: LabelsCommand,
            key: IdempotencyKey,
        ) -> CommandResult:
            return await _answer(
                agents.change_labels(_actor(principal), conversation_id, kind, body.add, body.remove, key)
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
        return await _answer(agents.add_note(_actor(principal), conversation_id, body.text, key))

    return api
