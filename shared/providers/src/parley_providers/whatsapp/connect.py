"""Connecting a WhatsApp business number through the Cloud API: the business account's numbers,
the verification code (text or voice call), registration with a two-step PIN, and the rules a
number's code, PIN and display name follow.

The calls are Graph's (``meta.client``); the numbers and rules are WhatsApp's:

- the code has 6 digits and is valid 10 minutes; mobiles get it by text, landlines by an automated
  voice call (their IVR must be off) (the product's help-center article; Cloud API "Phone numbers:
  request_code": ``code_method`` ``SMS`` or ``VOICE``);
- a wrong code is error 136025 (``errors.WRONG_CODE``);
- the two-step verification PIN has 6 digits (Cloud API "Registration");
- display names follow WhatsApp's display-name guidelines; the checks below are the part that
  needs no review (Meta reviews every name).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from parley_providers.base import MessageTemplate, NumberRules, NumberThroughput, TokenRefusal
from parley_providers.errors import ProviderError
from parley_providers.meta.client import GraphClient
from parley_providers.meta.connect import graph_token_refusal
from parley_providers.whatsapp import profile, templates
from parley_providers.whatsapp.errors import WRONG_CODE

__all__ = [
    "CODE_DIGITS",
    "CODE_VALIDITY",
    "NUMBER_RULES",
    "PIN_DIGITS",
    "WhatsAppConnector",
    "display_name_problem",
]

CODE_DIGITS = 6
CODE_VALIDITY = timedelta(minutes=10)
PIN_DIGITS = 6

_URL = re.compile(r"(https?://|www\.|\.[a-z]{2,}(/|$))", re.IGNORECASE)
_SYMBOLS_RUN = re.compile(r"[^\w\s]{2,}")
_ACRONYM_LETTERS = 5


def display_name_problem(name: str) -> str | None:
    """Why WhatsApp would refuse this display name, or None: empty or very short names, leading
    or trailing spaces, URLs, the word WhatsApp, emoji and pictographs, runs of symbols, and
    all-capital names longer than an acronym (the refusals that need no review)."""
    if name != name.strip():
        return "no leading or trailing spaces"
    if len(name) < 3:
        return "at least 3 characters"
    if _URL.search(name):
        return "a display name cannot contain a URL"
    if "whatsapp" in name.lower():
        return "a display name cannot contain 'WhatsApp'"
    if any(unicodedata.category(ch) == "So" for ch in name):
        return "no emoji or symbols"
    if _SYMBOLS_RUN.search(name):
        return "no runs of punctuation"
    letters = [ch for ch in name if ch.isalpha()]
    if len(letters) > _ACRONYM_LETTERS and all(ch.isupper() for ch in letters):
        return f"not all capitals (acronyms of up to {_ACRONYM_LETTERS} letters are fine)"
    return None


NUMBER_RULES = NumberRules(
    code_digits=CODE_DIGITS,
    code_validity=CODE_VALIDITY,
    pin_digits=PIN_DIGITS,
    display_name_problem=display_name_problem,
)


class WhatsAppConnector:
    """A WhatsApp Business Account's number, verified and registered (a ``NumberConnector``)."""

    rules: NumberRules = NUMBER_RULES

    def __init__(self, graph: GraphClient) -> None:
        self._graph = graph

    def __repr__(self) -> str:
        return f"WhatsAppConnector({self._graph!r})"

    async def number_ids(self, business_account_id: str, token: str) -> frozenset[str]:
        numbers = await self._graph.whatsapp_phone_numbers(business_account_id, token)
        return frozenset(n.id for n in numbers)

    async def request_code(self, number_id: str, token: str, *, voice: bool) -> None:
        await self._graph.whatsapp_request_code(number_id, token, "VOICE" if voice else "SMS")

    async def verify_code(self, number_id: str, token: str, code: str) -> bool:
        try:
            await self._graph.whatsapp_verify_code(number_id, token, code)
        except ProviderError as exc:
            if exc.code == WRONG_CODE:
                return False
            raise
        return True

    async def register(self, number_id: str, token: str, pin: str) -> None:
        await self._graph.whatsapp_register(number_id, token, pin)

    async def throughput(self, number_id: str, token: str) -> NumberThroughput:
        """The number's throughput level and coexistence, as the Graph API reports them."""
        level, coexistence = await self._graph.whatsapp_phone_number_throughput(number_id, token)
        return NumberThroughput(level, coexistence)

    async def business_portfolio(self, business_account_id: str, token: str) -> str | None:
        """The business portfolio owning the account (its numbers share one messaging limit)."""
        return await self._graph.whatsapp_business_portfolio(business_account_id, token)

    async def token_refusal(self, token: str) -> TokenRefusal | None:
        """The system user's token is a Graph token: checked like a Page's."""
        return await graph_token_refusal(self._graph, token)

    # --- templates (a TemplateManager)

    def template_problem(
        self, name: str, category: str, components: list[dict[str, Any]], parameter_format: str | None
    ) -> tuple[str, str] | None:
        problem = templates.template_problem(name, category, components, parameter_format)
        return None if problem is None else (problem.field, str(problem))

    async def create_template(
        self,
        business_account_id: str,
        token: str,
        *,
        name: str,
        language: str,
        category: str,
        components: list[dict[str, Any]],
        parameter_format: str | None,
    ) -> MessageTemplate:
        body: dict[str, Any] = {
            "name": name,
            "language": language,
            "category": category,
            "components": components,
        }
        if parameter_format:
            body["parameter_format"] = parameter_format
        answer = await self._graph.whatsapp_create_template(business_account_id, token, body)
        return MessageTemplate(
            id=str(answer["id"]),
            name=name,
            language=language,
            status=str(answer.get("status") or "PENDING"),
            category=str(answer.get("category") or category),
            parameter_count=templates.parameter_count(components),
        )

    async def templates(self, business_account_id: str, token: str) -> list[MessageTemplate]:
        listed = await self._graph.whatsapp_templates(business_account_id, token)
        return [templates.template_from_graph(item) for item in listed]

    async def delete_template(
        self, business_account_id: str, token: str, name: str, template_id: str | None
    ) -> None:
        await self._graph.whatsapp_delete_template(business_account_id, token, name, template_id)

    # --- business profile (a BusinessProfileManager)

    picture_types: frozenset[str] = profile.PICTURE_TYPES

    def profile_problem(self, fields: Mapping[str, Any]) -> tuple[str, str] | None:
        return profile.profile_problem(fields)

    async def business_profile(self, number_id: str, token: str) -> dict[str, Any]:
        found = await self._graph.whatsapp_business_profile(number_id, token, ",".join(profile.READ_FIELDS))
        return {k: v for k, v in found.items() if k in profile.READ_FIELDS}

    async def update_business_profile(
        self, number_id: str, token: str, fields: Mapping[str, Any], picture: tuple[bytes, str] | None
    ) -> None:
        body = {k: v for k, v in fields.items() if k in profile.PROFILE_FIELDS}
        if picture is not None:
            data, file_type = picture
            extension = "png" if file_type == "image/png" else "jpg"
            session = await self._graph.start_upload(token, f"profile.{extension}", len(data), file_type)
            body["profile_picture_handle"] = await self._graph.upload_bytes(session, token, data)
        await self._graph.whatsapp_update_business_profile(number_id, token, body)
