"""WhatsApp message templates: what a template's components say about the send (pure), and the
WhatsApp Business Management API's answers about templates, read into one shape.

Sources (WhatsApp Business Platform documentation, confirmed 2026-11):

- "Templates" and the WhatsApp Business Account ``message_templates`` reference: create with
  ``POST /{waba-id}/message_templates`` (``name``, ``language``, ``category``, ``components``,
  optional ``parameter_format`` ``POSITIONAL`` (default) or ``NAMED``); the answer is
  ``{"id", "status", "category"}``. List with ``GET /{waba-id}/message_templates`` (``data`` of
  ``{id, name, language, status, category, components, parameter_format, quality_score}``, paged by
  cursors). Delete with ``DELETE /{waba-id}/message_templates?name=...`` (every language of the
  name), or with ``hsm_id`` as well (one template); the answer is ``{"success": true}``.
- Template names: lowercase letters, digits and underscores, at most 512 characters. Categories:
  ``AUTHENTICATION``, ``MARKETING``, ``UTILITY``.
- Parameters: positional ``{{1}}``, ``{{2}}``... or named ``{{first_name}}`` (lowercase letters,
  digits and underscores) in the text of the ``HEADER`` (format ``TEXT``) and the ``BODY``; a send
  gives one value per parameter. Named parameters need ``parameter_format: NAMED`` at creation, and
  each component's ``example`` gives samples (``header_text``/``body_text`` for positional ones,
  ``header_text_named_params``/``body_text_named_params`` for named ones).
- ``message_template_status_update`` webhook: ``event`` is the new status (``APPROVED``,
  ``REJECTED``, ``PAUSED``, ``DISABLED``, ``PENDING_DELETION``, ``ARCHIVED``...), with
  ``message_template_category``; ``template_category_update``: ``previous_category`` and
  ``new_category`` once changed (``correct_category`` and ``new_category`` with a
  ``category_update_timestamp`` when a change is only announced); ``message_template_quality_update``:
  ``previous_quality_score`` and ``new_quality_score`` (``GREEN``, ``YELLOW``, ``RED``, ``UNKNOWN``).
- Business-scoped user ids: authentication templates still need the customer's phone number.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from parley_providers.base import MessageTemplate

__all__ = [
    "APPROVED",
    "AUTHENTICATION",
    "CATEGORIES",
    "PHONE_ONLY_CATEGORIES",
    "TemplateProblem",
    "parameter_count",
    "parameter_names",
    "template_from_graph",
    "template_problem",
]

APPROVED = "APPROVED"
AUTHENTICATION = "AUTHENTICATION"
CATEGORIES = frozenset({AUTHENTICATION, "MARKETING", "UTILITY"})
PHONE_ONLY_CATEGORIES = frozenset({AUTHENTICATION})
"""Template categories WhatsApp sends only to a phone number, never to a business-scoped user id."""
NAME_MAX = 512
_NAME = re.compile(r"[a-z0-9_]+", re.ASCII)
_PARAMETER = re.compile(r"\{\{\s*([a-z0-9_]+)\s*\}\}", re.ASCII)
TEXT_COMPONENTS = frozenset({"HEADER", "BODY"})
"""The components whose text may hold parameters a send fills in."""


class TemplateProblem(ValueError):
    """A template WhatsApp would refuse without a review (a field and why)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _texts(components: Iterable[Mapping[str, Any]]) -> list[str]:
    texts: list[str] = []
    for component in components:
        kind = str(component.get("type", "")).upper()
        if kind not in TEXT_COMPONENTS:
            continue
        if kind == "HEADER" and str(component.get("format", "TEXT")).upper() != "TEXT":
            continue  # a media header's parameter is the media itself, not text
        text = component.get("text")
        if isinstance(text, str):
            texts.append(text)
    return texts


def parameter_names(components: Iterable[Mapping[str, Any]]) -> list[str]:
    """The parameters a send must fill, in order: header first, then body; a parameter written
    twice in one text (``{{1}} ... {{1}}``) is one value."""
    names: list[str] = []
    for text in _texts(components):
        seen: list[str] = []
        for match in _PARAMETER.finditer(text):
            if match.group(1) not in seen:
                seen.append(match.group(1))
        names.extend(seen)
    return names


def parameter_count(components: Iterable[Mapping[str, Any]]) -> int:
    """How many values a send of a template with these components gives (header and body)."""
    return len(parameter_names(components))


def template_problem(
    name: str, category: str, components: list[dict[str, Any]], parameter_format: str | None = None
) -> TemplateProblem | None:
    """Why WhatsApp would refuse to create this template at once, or None: the name's form, the
    category, a missing body, parameters of the wrong kind for the format, or no samples."""
    if not (0 < len(name) <= NAME_MAX and _NAME.fullmatch(name)):
        return TemplateProblem("name", "lowercase letters, digits and underscores, at most 512 characters")
    if category not in CATEGORIES:
        return TemplateProblem("category", f"one of {', '.join(sorted(CATEGORIES))}")
    if not any(str(c.get("type", "")).upper() == "BODY" for c in components):
        return TemplateProblem("components", "a template has a BODY component")
    named = (parameter_format or "POSITIONAL").upper() == "NAMED"
    for text in _texts(components):
        found = [m.group(1) for m in _PARAMETER.finditer(text)]
        if named and any(p.isdigit() for p in found):
            return TemplateProblem("components", "a NAMED template's parameters have names, not numbers")
        if not named and any(not p.isdigit() for p in found):
            return TemplateProblem("components", "named parameters need parameter_format NAMED")
        if not named:
            numbers = sorted({int(p) for p in found})
            if numbers and numbers != list(range(1, len(numbers) + 1)):
                return TemplateProblem("components", "positional parameters are {{1}}, {{2}}... in sequence")
    for component in components:
        if _texts([component]) and parameter_count([component]) and not component.get("example"):
            kind = str(component.get("type", "")).upper()
            return TemplateProblem("components", f"the {kind} component's parameters need an example")
    return None


def template_from_graph(item: Mapping[str, Any]) -> MessageTemplate:
    """A listed template (``GET /{waba-id}/message_templates``), its parameters counted."""
    components = item.get("components")
    components = [c for c in components if isinstance(c, Mapping)] if isinstance(components, list) else []
    quality = item.get("quality_score")
    score = quality.get("score") if isinstance(quality, Mapping) else quality
    reason = item.get("rejected_reason")
    return MessageTemplate(
        id=str(item.get("id", "")),
        name=str(item.get("name", "")),
        language=str(item.get("language", "")),
        status=str(item.get("status", "")),
        category=str(item["category"]) if item.get("category") else None,
        parameter_count=parameter_count(components),
        quality_score=str(score) if score else None,
        rejected_reason=str(reason) if reason and reason != "NONE" else None,
    )
