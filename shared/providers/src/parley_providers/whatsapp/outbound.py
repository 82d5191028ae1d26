"""Sending an approved reply through the WhatsApp Cloud API: free-form text or a template."""

from __future__ import annotations

from typing import Any

from parley_events import ReplyApproved

from parley_providers.base import ReadRef, ThreadRef
from parley_providers.meta.client import GraphClient


def is_phone_number(recipient_id: str) -> bool:
    """A wa_id is the phone number's digits; a business-scoped user id is ``CC.<letters and digits>``."""
    return recipient_id.isascii() and recipient_id.isdigit()


def message_body(reply: ReplyApproved) -> dict[str, Any]:
    """The Cloud API's ``/messages`` body for a reply (pure).

    A customer with a phone number on record gets it in ``to``; one known only by the
    business-scoped user id (the phone withheld) gets that id in ``recipient``.
    """
    address = "to" if is_phone_number(reply.recipient_id) else "recipient"
    body: dict[str, Any] = {"messaging_product": "whatsapp", address: reply.recipient_id}
    if reply.template is None:
        body.update(type="text", text={"body": reply.text or ""})
        return body
    parameters = [{"type": "text", "text": p} for p in reply.template.parameters]
    body.update(
        type="template",
        template={
            "name": reply.template.name,
            "language": {"code": reply.template.language},
            "components": [{"type": "body", "parameters": parameters}] if parameters else [],
        },
    )
    return body


def read_body(message_id: str, typing: bool) -> dict[str, Any]:
    """The Cloud API's body marking a received message as read, with the typing indicator when
    ``typing`` (pure). WhatsApp dismisses the indicator when the business replies or after 25 s
    (WhatsApp Cloud API, "Typing indicators"); marking one message read marks the earlier ones too."""
    body: dict[str, Any] = {"messaging_product": "whatsapp", "status": "read", "message_id": message_id}
    if typing:
        body["typing_indicator"] = {"type": "text"}
    return body


def thread_control_body(thread: ThreadRef, action: str) -> dict[str, Any]:
    """The thread control API's body for ``take`` or ``release`` (pure): the customer in ``to``
    when a phone number is on record, else their business-scoped user id in ``recipient``."""
    address = "to" if is_phone_number(thread.recipient_id) else "recipient"
    body: dict[str, Any] = {"messaging_product": "whatsapp", "action": action, address: thread.recipient_id}
    if thread.metadata:
        body["metadata"] = thread.metadata
    return body


class WhatsAppSender:
    """WhatsApp replies from the business number (the channel's account id)."""

    def __init__(self, graph: GraphClient) -> None:
        self.graph = graph

    async def send(self, reply: ReplyApproved, token: str) -> str:
        return await self.graph.whatsapp_send(reply.account_id, token, message_body(reply))

    async def mark_read(self, message: ReadRef, token: str, typing: bool) -> None:
        """Mark the customer's message as read (blue ticks) and, with ``typing``, show the indicator."""
        await self.graph.whatsapp_mark_read(message.account_id, token, read_body(message.message_id, typing))

    # WhatsApp Conversation Routing: Parley's app takes a thread (as the number's escalation
    # partner) or releases it, on the number the thread is on.

    async def take_thread_control(self, thread: ThreadRef, token: str) -> None:
        await self.graph.whatsapp_thread_control(
            thread.account_id, token, thread_control_body(thread, "take")
        )

    async def release_thread_control(self, thread: ThreadRef, token: str) -> None:
        await self.graph.whatsapp_thread_control(
            thread.account_id, token, thread_control_body(thread, "release")
        )
