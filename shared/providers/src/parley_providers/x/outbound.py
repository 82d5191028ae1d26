"""Sending an approved reply on X: a direct message, or a post replying to a mention."""

from __future__ import annotations

from parley_events import ReplyApproved

from parley_providers.x.client import XClient


class XSender:
    """X replies with the handle's user token."""

    def __init__(self, x: XClient) -> None:
        self.x = x

    async def send(self, reply: ReplyApproved, token: str) -> str:
        text = reply.text or ""
        if reply.kind == "mention":
            return await self.x.post_reply(token, text, reply.recipient_id)
        return await self.x.send_dm(token, reply.recipient_id, text)
