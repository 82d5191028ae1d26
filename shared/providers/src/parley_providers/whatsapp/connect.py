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

Embedded Signup (v4, the version after v2, which Meta deprecated on 2026-10-15) is the
self-service path: Meta's window hands the browser the WABA id, the phone number id and a
one-time code; the code becomes a business integration system user token server-side, and the
ids the browser reported are only believed once that token's grants (``debug_token``'s
``granular_scopes``) and the WABA's phone numbers confirm them (docs/onboarding.md cites the pages).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from parley_providers.base import (
    MessageTemplate,
    NumberRules,
    NumberThroughput,
    SignedUpNumber,
    SignupRefusal,
    TokenRefusal,
)
from parley_providers.errors import ErrorKind, ProviderError
from parley_providers.meta.client import GraphClient, TokenGrants, WhatsAppPhoneNumber
from parley_providers.meta.connect import FACEBOOK_LOGIN_BASE_URL, graph_token_refusal
from parley_providers.meta.versions import DEFAULT_GRAPH_API_VERSION
from parley_providers.oauth import authorization_url
from parley_providers.whatsapp import profile, templates
from parley_providers.whatsapp.errors import WRONG_CODE

__all__ = [
    "CODE_DIGITS",
    "CODE_VALIDITY",
    "NUMBER_RULES",
    "PIN_DIGITS",
    "SIGNUP_SCOPES",
    "WhatsAppConnector",
    "display_name_problem",
    "signup_refusal",
]

CODE_DIGITS = 6
CODE_VALIDITY = timedelta(minutes=10)
PIN_DIGITS = 6
SIGNUP_SCOPES = ("whatsapp_business_management", "whatsapp_business_messaging")
"""What a business must grant in Embedded Signup for Parley to manage its account and message
from its number (WhatsApp Business Platform, Embedded Signup: the two permissions an app asks)."""

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


def signup_refusal(
    grants: TokenGrants,
    business_account_id: str,
    number_id: str,
    numbers: list[WhatsAppPhoneNumber] | None,
) -> SignupRefusal | None:
    """Why the business token does not confirm the signup's WABA and number, or None.

    The token must be valid and hold both WhatsApp permissions; where ``debug_token`` names the
    objects a permission was granted on, the WABA must be among them for each; the WABA's phone
    numbers as this token lists them (``numbers``; None: the token could not list them) must
    include the number.
    """
    if not grants.valid:
        return SignupRefusal("token_invalid", "Meta does not accept the token the code stood for")
    missing = tuple(s for s in SIGNUP_SCOPES if s not in grants.scopes)
    if missing:
        return SignupRefusal("scopes_missing", f"the business did not grant {', '.join(missing)}", missing)
    for scope in SIGNUP_SCOPES:
        targets = grants.targets.get(scope)
        if targets and business_account_id not in targets:
            return SignupRefusal(
                "account_not_granted",
                f"the business did not grant {scope} on WhatsApp Business Account {business_account_id}",
                (scope,),
            )
    if numbers is None:
        return SignupRefusal(
            "account_not_granted",
            f"the token cannot list the phone numbers of WhatsApp Business Account {business_account_id}",
        )
    if number_id not in {n.id for n in numbers}:
        return SignupRefusal(
            "number_not_in_account",
            f"phone number {number_id} is not a number of WhatsApp Business Account {business_account_id}",
        )
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

    def __init__(
        self,
        graph: GraphClient,
        *,
        app_id: str = "",
        api_version: str = DEFAULT_GRAPH_API_VERSION,
        login_base_url: str = FACEBOOK_LOGIN_BASE_URL,
        signup_config_id: str | None = None,
    ) -> None:
        self._graph = graph
        self._app_id = app_id
        self._api_version = api_version
        self._login_base_url = login_base_url
        self._signup_config_id = signup_config_id or None

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

    # --- Embedded Signup (an EmbeddedSignup)

    def signup_window_url(self, redirect_uri: str, state: str) -> str | None:
        """The Login dialog with Embedded Signup's configuration (a ``SignupWindowStart``), for a
        page without script; None on Meta's own host. Meta's window gives its result to the
        JavaScript SDK of the page that opened it (``FB.login``'s callback gets the code, a
        ``message`` event the WABA and number ids, docs/onboarding.md): no redirect carries the
        ids, so only a stand-in for Meta's window (the provider sandbox) can come back by one."""
        if self._signup_config_id is None or self._login_base_url.rstrip("/") == FACEBOOK_LOGIN_BASE_URL:
            return None
        return authorization_url(
            self._login_base_url,
            f"{self._api_version}/dialog/oauth",
            {
                "client_id": self._app_id,
                "redirect_uri": redirect_uri,
                "state": state,
                "response_type": "code",
                "override_default_response_type": "true",
                "config_id": self._signup_config_id,
            },
        )

    async def exchange_signup_code(self, code: str) -> str:
        return await self._graph.exchange_signup_code(code)

    async def check_signup(
        self, token: str, business_account_id: str, number_id: str
    ) -> SignedUpNumber | SignupRefusal:
        """``debug_token`` for the grants, then the WABA's numbers with the business token."""
        grants = await self._graph.token_grants(token)
        listed: list[WhatsAppPhoneNumber] | None = None
        if grants.valid and all(s in grants.scopes for s in SIGNUP_SCOPES):
            try:
                listed = await self._graph.whatsapp_phone_numbers(business_account_id, token)
            except ProviderError as exc:
                # a WABA this token cannot read (permission, unknown object) is not confirmed;
                # outages and rate limits are not an answer
                if exc.status >= 500 or exc.kind in (ErrorKind.RATE_LIMITED, ErrorKind.RETRYABLE):
                    raise
        refusal = signup_refusal(grants, business_account_id, number_id, listed)
        if refusal is not None:
            return refusal
        assert listed is not None
        number = next(n for n in listed if n.id == number_id)
        return SignedUpNumber(
            business_account_id=business_account_id,
            number_id=number_id,
            display_phone_number=number.display_phone_number or None,
            verified_name=number.verified_name or None,
            token_expires_at=grants.expires_at,
            scopes=grants.scopes,
        )

    async def subscribe_app(self, business_account_id: str, token: str) -> None:
        await self._graph.whatsapp_subscribe_app(business_account_id, token)

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
