"""Which conversation a customer's message belongs to when the customer goes by several
identifiers (pure). See docs/ingest.md, "WhatsApp's business-scoped user ids"."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def resolve(
    key: str, aliases: Sequence[str], known: Callable[[str], str | None]
) -> tuple[str, tuple[str, ...]]:
    """The conversation key of a message, and the thread keys to record as leading to it.

    ``aliases`` are every key the customer goes by (the message's own first); ``known`` says which
    conversation key an alias already leads to. The first alias already known decides (a changed
    number's message finds the old conversation through the old identifiers it names); when none
    is, the message's own key starts the conversation. Every alias not yet leading there is
    returned to be recorded, the conversation key itself included, so that a later message naming
    only another identifier finds it. Without aliases the key is the thread and nothing is recorded.
    """
    if not aliases:
        return key, ()
    root = next((found for alias in (key, *aliases) if (found := known(alias)) is not None), key)
    return root, tuple(dict.fromkeys(alias for alias in (key, *aliases) if known(alias) != root))
