"""Instagram mentions' text and author, fetched for the normalizer (a webhook names them by ids).

The ``mentions`` webhook field carries the media's id, and the comment's for a mention in a
comment; Graph's IG User ``mentioned_media`` and ``mentioned_comment`` fields answer the caption
or the comment with its author's username. A profile connected through its Facebook Page is asked
on graph.facebook.com with the Page's token; one connected with Instagram Login on
graph.instagram.com with its own token (the same fields).
"""

from __future__ import annotations

from parley_providers.base import FetchedContent
from parley_providers.errors import ErrorKind, ProviderError
from parley_providers.inbound import ContentToFetch
from parley_providers.meta.client import GraphClient, Mentioned
from parley_providers.meta.instagram import InstagramClient
from parley_providers.meta.outbound import INSTAGRAM_LOGIN


class MentionLookup:
    """Meta's :class:`parley_providers.base.ContentLookup`: mentioned media and comments."""

    def __init__(self, graph: GraphClient, instagram: InstagramClient) -> None:
        self.graph = graph
        self.instagram = instagram

    async def fetch(
        self, account_id: str, what: ContentToFetch, token: str, connect_path: str | None
    ) -> FetchedContent:
        client: GraphClient | InstagramClient = (
            self.instagram if connect_path == INSTAGRAM_LOGIN else self.graph
        )
        found: Mentioned
        if what.kind == "mentioned_media":
            found = await client.mentioned_media(account_id, token, what.object_id)
        elif what.kind == "mentioned_comment":
            found = await client.mentioned_comment(account_id, token, what.object_id)
        else:
            raise ProviderError("meta", 0, None, None, f"no lookup {what.kind!r}", ErrorKind.INVALID_REQUEST)
        return FetchedContent(text=found.text, author_name=found.username, link=found.permalink)
