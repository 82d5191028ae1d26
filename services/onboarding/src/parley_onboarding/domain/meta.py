"""What a Facebook Page admin must be able to do for Parley to run the Page as a channel (pure).

``/me/accounts`` lists, per Page, the ``tasks`` the person who logged in can perform. Meta's
documentation names the task each call Parley makes needs:

- the Send API (Messenger replies) and the webhook subscription for message fields need a Page
  token "requested by a person who can perform the MESSAGING task on the Page"
  (developers.facebook.com/docs/messenger-platform/reference/send-api, /get-started,
  /documentation/pages-api/webhooks-for-pages);
- the ``feed`` webhook field and replying to or hiding comments need one from a person who can
  perform CREATE_CONTENT, MANAGE or MODERATE (/docs/graph-api/reference/page/subscribed_apps,
  /documentation/pages-api/webhooks-for-pages).

So a Page is accepted with MANAGE (full control), or with both MESSAGING and MODERATE; MODERATE
alone (a moderator) or MESSAGING alone is refused before anything is subscribed.
"""

from __future__ import annotations

from collections.abc import Iterable

FULL_CONTROL_TASK = "MANAGE"
REQUIRED_PAGE_TASKS = ("MESSAGING", "MODERATE")


def missing_page_tasks(tasks: Iterable[str]) -> list[str]:
    """The tasks still needed on a Page for Parley's channel ([] when the admin has enough)."""
    have = {str(t).upper() for t in tasks}
    if FULL_CONTROL_TASK in have:
        return []
    return [task for task in REQUIRED_PAGE_TASKS if task not in have]
