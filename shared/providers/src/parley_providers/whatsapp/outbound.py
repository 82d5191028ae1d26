"""Sending an approved reply through the WhatsApp Cloud API: free-form text or a template."""

from __future__ import annotations

from typing import Any

from parley_events import ReplyApproved

from parley_providers.meta.client import GraphClient


def message_body(reply: ReplyApproved) -> dict[str, Any]:
    """The Cloud API's ``/messages`` body for a reply (pure)."""
    body: dict[str, Any] = {"messaging_product": "whatsapp", "to": reply.recipient_id}
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


class WhatsAppSender:
    """WhatsApp replies from the business number (the channel's account id)."""

    def __init__(self, graph: GraphClient) -> None:
        self.graph = graph

    async def send(self, reply: ReplyApproved, token: str) -> str:
        return await self.graph.whatsapp_send(reply.account_id, token, message_body(reply))
