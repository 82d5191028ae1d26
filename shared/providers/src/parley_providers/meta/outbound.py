"""Sending an approved reply to Messenger or Instagram: Send API, comment replies, private replies."""

from __future__ import annotations

from typing import Any

from parley_events import Provider, ReplyApproved

from parley_providers.base import ThreadRef
from parley_providers.errors import ErrorKind, ProviderError
from parley_providers.meta.client import GraphClient
from parley_providers.meta.instagram import InstagramClient

INSTAGRAM_LOGIN = "instagram_login"
"""The ``connect_path`` of an Instagram account connected with Instagram Login (no Page)."""


class MetaSender:
    """Messenger and Instagram replies through the Graph API; replies of Instagram accounts
    connected with Instagram Login through ``graph.instagram.com``."""

    def __init__(self, graph: GraphClient, instagram: InstagramClient | None = None) -> None:
        self.graph = graph
        self.instagram = instagram

    async def send(self, reply: ReplyApproved, token: str) -> str:
        """The provider's message (or comment) id of the sent reply."""
        if reply.provider is Provider.INSTAGRAM and reply.connect_path == INSTAGRAM_LOGIN:
            return await self._send_instagram_login(reply, token)
        text = reply.text or ""
        if reply.kind == "comment":
            if reply.provider is Provider.INSTAGRAM:
                return await self.graph.reply_to_instagram_comment(reply.recipient_id, token, text)
            return await self.graph.reply_to_comment(reply.recipient_id, token, text)
        if reply.kind == "private_reply":
            # an Instagram comment is answered from the linked Page too (Messenger Platform for
            # Instagram, Private Replies: the Page's /messages with its Page token), as ``me``
            node = "me" if reply.provider is Provider.INSTAGRAM else reply.account_id
            return await self.graph.send_private_reply(node, token, reply.recipient_id, text)
        payload: dict[str, Any] = {
            "recipient": {"id": reply.recipient_id},
            "messaging_type": reply.messaging_type or "RESPONSE",
            "message": {"text": text},
        }
        if reply.tag:
            payload["tag"] = reply.tag
        # Instagram messages go through the linked Page's Send API with its Page token (Messenger
        # Platform for Instagram, "Send a Message"): the channel's account id is the Instagram
        # account's, which is not a node Graph sends from, so the Page is addressed as ``me``
        node = "me" if reply.provider is Provider.INSTAGRAM else reply.account_id
        return await self.graph.send_message(node, token, payload)

    async def _send_instagram_login(self, reply: ReplyApproved, token: str) -> str:
        """The account's own token on graph.instagram.com: no Page, no Page token."""
        if self.instagram is None:
            raise ProviderError(
                "instagram",
                0,
                None,
                None,
                "Instagram Login sends are not configured",
                ErrorKind.INVALID_REQUEST,
            )
        text = reply.text or ""
        if reply.kind == "comment":
            return await self.instagram.reply_to_comment(reply.recipient_id, token, text)
        if reply.kind == "private_reply":
            return await self.instagram.send_private_reply(token, reply.recipient_id, text)
        payload: dict[str, Any] = {"recipient": {"id": reply.recipient_id}, "message": {"text": text}}
        if reply.tag:  # HUMAN_AGENT, as on the Page path
            payload["messaging_type"] = reply.messaging_type or "MESSAGE_TAG"
            payload["tag"] = reply.tag
        return await self.instagram.send_message(token, payload)

    # Conversation Routing: Parley's app takes a thread from another app, or releases it. Like a
    # send, Instagram's threads are reached through the linked Page (``me`` with its Page token).

    async def take_thread_control(self, thread: ThreadRef, token: str) -> None:
        await self.graph.take_thread_control(_node(thread), token, thread.recipient_id, thread.metadata)

    async def release_thread_control(self, thread: ThreadRef, token: str) -> None:
        await self.graph.release_thread_control(_node(thread), token, thread.recipient_id, thread.metadata)


def _node(thread: ThreadRef) -> str:
    return "me" if thread.provider is Provider.INSTAGRAM else thread.account_id
