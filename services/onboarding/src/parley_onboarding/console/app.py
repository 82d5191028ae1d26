"""The console's routes: sign-in, channels, teams; every change through ``OnboardingService``.

Pages answer GET; forms POST and redirect (303) to a page that says what happened, so a reload
repeats nothing. Only tenant administrators get past the sign-in (``Principal.is_admin``, the
check the API makes); everyone else gets the 403 page, except on the Reports page, whose figures
the reports service gives to whom its own access rules allow (Supervisors of a channel).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from parley_events import ChannelRole, ChannelStatus, Provider
from parley_providers import ProviderError
from parley_providers.base import (
    AccountLoginStart,
    NumberConnector,
    NumberRules,
    PageConnector,
    PageLoginStart,
    PkceLoginStart,
    SignupWindowStart,
)
from parley_providers.errors import ErrorKind
from parley_providers.registry import account_url
from parley_shared.access import ChannelAccess, effective_role
from parley_shared.auth import Principal, TokenVerifier, Unauthorized, issue_dev_token
from parley_shared.vault import TokenVault, parse_keys
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from parley_onboarding.adapters.reports import ReportsApi, ReportsUnavailable
from parley_onboarding.console import i18n, session, whatsapp
from parley_onboarding.console import reports as report_page
from parley_onboarding.console.connect import (
    FLOWS,
    STATE_TTL_S,
    LoginState,
    LoginStates,
    new_state,
    session_hash,
)
from parley_onboarding.console.forms import (
    ROLES,
    TEAM_PREFIX,
    USER_PREFIX,
    Form,
    FormErrors,
    access_from,
    checked,
    hours_from,
    hours_values,
    one,
    settings_changes,
)
from parley_onboarding.console.i18n import N_, _
from parley_onboarding.domain.channels import DISPLAY_NAME_MAX, Channel
from parley_onboarding.domain.errors import DomainError
from parley_onboarding.domain.teams import Team
from parley_onboarding.domain.whatsapp import Actor
from parley_onboarding.service import INSTAGRAM_LOGIN_PATH, OnboardingService
from parley_onboarding.settings import OnboardingSettings

HERE = Path(__file__).parent
BASE = session.PATH
MAX_FORM_BYTES = 64 * 1024
DEV_TOKEN_TTL_S = 8 * 3600
HEADERS = {
    "content-security-policy": (
        "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
STATUS_WORDS = {
    ChannelStatus.ACTIVE: N_("Active"),
    ChannelStatus.PENDING: N_("Pending"),
    ChannelStatus.REAUTH_REQUIRED: N_("Reconnect needed"),
    ChannelStatus.DISCONNECTED: N_("Disconnected"),
}
DONE = {
    "settings": N_("Settings saved."),
    "hours": N_("Business hours saved."),
    "access": N_("Access saved."),
    "disconnected": N_("The channel is disconnected."),
    "created": N_("Team created."),
    "member-added": N_("Member added."),
    "member-removed": N_("Member removed."),
    "renamed": N_("Team renamed."),
    "deleted": N_("Team deleted; the channels that gave it a role no longer do."),
    "checked": N_("The provider accepted the token."),
    "reauth": N_("The provider refused the token: reconnect the account."),
    "started": N_("WhatsApp onboarding started. Keep this page's address to come back to it."),
    "sign-agreement": N_("Agreement signed."),
    "accept-terms": N_("Terms accepted."),
    "submit-details": N_("Details submitted."),
    "approve-business-manager": N_("Business Manager approval recorded."),
    "request-code": N_("The code is on its way."),
    "verify-code": N_("The number is verified and its channel is active."),
    "profile-completed": N_("Profile recorded as complete."),
    "request-badge": N_("Badge requested."),
    "submit-templates": N_("Templates recorded as submitted."),
    "connected": N_("The account is connected and its channel is active."),
    "reconnected": N_("The account is reconnected and its channel is active again."),
    "activated": N_("The Pages you chose are activated."),
}
LOGIN_REASONS = {
    "access_denied": N_("You declined the provider's login, so nothing was connected."),
    "oauth_state_missing": N_(
        "This login was not started from this console, or it took too long; start again from Add Channel."
    ),
    "oauth_state_mismatch": N_(
        "This login belongs to another login attempt or session; start again from Add Channel."
    ),
    "oauth_state_expired": N_("The login took too long; start again from Add Channel."),
    "oauth_code_missing": N_("The provider sent no code back; start again from Add Channel."),
    "oauth_error": N_("The provider ended the login with an error; start again from Add Channel."),
    "signup_ids_missing": N_(
        "The signup window sent no WhatsApp Business Account or number back; start again from Add Channel."
    ),
}
"""Why a provider login ended without a channel, by reason code (the provider's ``error``, or
the console's own check of the login's state)."""
PROVIDER_ERROR = re.compile(r"^[a-z_]{1,40}$")


ROLE_WORDS = {
    ChannelRole.VIEWER: N_("Viewer"),
    ChannelRole.CONTRIBUTOR: N_("Contributor"),
    ChannelRole.SUPERVISOR: N_("Supervisor"),
}
# a provider's name is its own in every language
PROVIDER_NAMES = {
    Provider.MESSENGER.value: "Facebook",
    Provider.INSTAGRAM.value: "Instagram",
    Provider.WHATSAPP.value: "WhatsApp",
    Provider.X.value: "X",
    "meta": "Meta",
}
# A sentence for each reason code the console can meet, by "CODE:field", "context:CODE" or
# "CODE"; the placeholders come from the error's details and what the console knows.
REASONS = {
    "INVALID_DISPLAY_NAME": N_("The display name is at most %(max)s characters."),
    "whatsapp:INVALID_DISPLAY_NAME": N_(
        "WhatsApp does not accept this display name: check it against Meta's display name rules."
    ),
    "INVALID_SETTING:auto_resolve_new_s": N_(
        "Auto-resolve for New is at least 1 minute, or 0 to turn it off."
    ),
    "INVALID_SETTING:auto_resolve_pending_s": N_(
        "Auto-resolve for Pending is at least 1 minute, or 0 to turn it off."
    ),
    "INVALID_SETTING:text_limit": N_(
        "The text limit is a positive number of characters, or 0 for the provider's own limit."
    ),
    "INVALID_SETTING:x_api": N_("Choose one of the X delivery APIs offered."),
    "INVALID_SETTING:away_message": N_(
        "The away message is at most %(limit)s characters long here: a reply on this channel may "
        "not be longer (the provider's limit, or the channel's text limit)."
    ),
    "UNKNOWN_SETTING": N_("This setting does not apply to this channel."),
    "X_API_NOT_CONFIGURED": N_("This deployment cannot subscribe X channels through that API."),
    "SUBSCRIPTION_FAILED": N_(
        "The provider refused to subscribe these webhooks: %(missing)s. Try again, or reconnect the account."
    ),
    "CHANNEL_DISCONNECTED": N_("This channel is disconnected: connect the account again before changing it."),
    "CHANNEL_NOT_FOUND": N_("Your tenant has no such channel."),
    "TEAM_NOT_FOUND": N_("Your tenant has no such team."),
    "ONBOARDING_NOT_FOUND": N_("Your tenant has no such WhatsApp onboarding."),
    "CONCURRENT_UPDATE": N_("It changed at the same time elsewhere: reload the page and try again."),
    "UNKNOWN_TEAM": N_("A team of this form no longer exists: reload the page."),
    "INVALID_TEAM_NAME": N_("A team name has 1 to 100 characters."),
    "INVALID_TRANSITION": N_("This is not the onboarding's next step: reload the page."),
    "INVALID_PHONE_NUMBER": N_("Enter the phone number in international format, e.g. +14155550123."),
    "INVALID_BUSINESS_MANAGER_ID": N_("The Business Manager id is a number."),
    "TOO_MANY_ATTEMPTS": N_("Too many wrong codes: ask for a new one."),
    "TOO_MANY_ATTEMPTS:total": N_("%(attempts)s codes were tried on this onboarding: contact support."),
    "RESEND_TOO_SOON": N_("Wait %(retry_after_s)s seconds before asking for another code."),
    "CODE_EXPIRED": N_("The code has expired: ask for a new one."),
    "INVALID_CODE_FORMAT": N_("The code has %(digits)s digits."),
    "WRONG_CODE": N_("That code is not right. Attempts left on this code: %(attempts_left)s."),
    "META_NOT_CONFIGURED": N_("Facebook and Instagram are not configured on this deployment."),
    "WHATSAPP_NOT_CONFIGURED": N_("WhatsApp is not configured on this deployment."),
    "X_NOT_CONFIGURED": N_("X is not configured on this deployment."),
    "INSTAGRAM_LOGIN_NOT_CONFIGURED": N_(
        "Instagram Login is not configured on this deployment: connect the profile through its Facebook Page."
    ),
    "RECONNECT_REQUIRED": N_("Connect the account again first."),
    "ACCOUNT_CONNECTED_ELSEWHERE": N_("This account is connected to another Parley tenant."),
    "PERMISSIONS_MISSING": N_("Grant these permissions: %(missing)s."),
    "PAGE_NOT_GRANTED": N_("That Page was not granted to Parley."),
    "PAGE_ACCESS_INSUFFICIENT": N_("Connecting a Page needs full control of it."),
    "INSTAGRAM_NOT_LINKED": N_("That Instagram account is not linked to a Facebook Page you granted."),
    "CONNECTION_NOT_FOUND": N_("This connection no longer exists: start again."),
    "CONNECTION_EXPIRED": N_("This connection expired: start again."),
    "TEAM_LIMIT_REACHED": N_("Your tenant has %(limit)s teams, the most it may have: delete one first."),
    "CHANNEL_NOT_ACTIVE": N_("Only an active channel can do this: connect the account again first."),
    "SUBSCRIPTION_CHECK_UNSUPPORTED": N_("Parley cannot check this provider's webhook subscription."),
    "NOT_SUPPORTED": N_("This provider's channels do not offer this."),
    "NO_BUSINESS_ACCOUNT": N_("This channel names no business account."),
    # WhatsApp Embedded Signup (the window's code and ids, checked with Meta)
    "EMBEDDED_SIGNUP_NOT_SUPPORTED": N_("This deployment's WhatsApp offers no Embedded Signup."),
    "SIGNUP_CODE_INVALID": N_(
        "Meta did not accept the signup's code (used, expired or not this app's): run the signup again."
    ),
    "SIGNUP_MISMATCH": N_("This signup was used for another WhatsApp Business Account or number."),
    "SCOPES_MISSING": N_("Grant these permissions in the signup: %(missing)s."),
    "INVALID_ID": N_("The WhatsApp Business Account and number ids are Meta's numeric ids."),
    "WABA_NOT_ACCESSIBLE": N_(
        "Meta does not give this app that WhatsApp Business Account: run the signup again."
    ),
    "WABA_NUMBER_MISMATCH": N_("That number is not one of the WhatsApp Business Account's numbers."),
    "WABA_CLAIMED_ELSEWHERE": N_("This WhatsApp Business Account is connected to another Parley tenant."),
    "PROVIDER_UNAVAILABLE": N_(
        "Meta could not answer now and nothing was activated; run the signup again in a moment."
    ),
}
UNKNOWN_REASON = N_("The request was refused (reason code %(code)s).")


def in_words(exc: DomainError, context: str = "", **known: object) -> str:
    """A domain error as the console's sentence for its reason code, in the page's language."""
    field = str(exc.details.get("field") or "")
    variant = "total" if exc.code == "TOO_MANY_ATTEMPTS" and "attempts" in exc.details else field
    values: dict[str, object] = {"max": DISPLAY_NAME_MAX, "code": exc.code, **known}
    for key, value in exc.details.items():
        values[key] = ", ".join(map(str, value)) if isinstance(value, list | tuple) else value
    for key in (f"{exc.code}:{variant}", f"{context}:{exc.code}", exc.code):
        if key in REASONS:
            try:
                return _(REASONS[key], **values)
            except KeyError:  # a detail the sentence needs is missing: say the code instead
                break
    return _(UNKNOWN_REASON, code=exc.code)


PROVIDER_REFUSALS = {
    ErrorKind.REAUTH_REQUIRED: N_("the token is no longer valid; reconnect the account."),
    ErrorKind.PERMISSION_MISSING: N_("a permission is missing; reconnect the account and grant it."),
    ErrorKind.RATE_LIMITED: N_("too many requests; try again in a few minutes."),
    ErrorKind.RETRYABLE: N_("a passing fault; try again."),
    ErrorKind.WINDOW_CLOSED: N_("the conversation's window is closed."),
    ErrorKind.INVALID_REQUEST: N_("it does not accept this request."),
    ErrorKind.SENDING_RESTRICTED: N_("the account may not send for now."),
}
UNKNOWN_REFUSAL = N_("no reason given.")


def address(channel: Channel) -> dict[str, str] | None:
    """The account's address on its provider (the provider's plugin knows it), and its text."""
    url = account_url(channel.provider, channel.account_id, channel.account_name)
    return {"url": url, "text": url.removeprefix("https://").removeprefix("www.")} if url else None


def seg(value: str) -> str:
    """One path segment: an id typed or stored can never add a segment or leave the console."""
    return quote(value, safe="")


def attention(channel: Channel, now: datetime, lead: timedelta, *, renewed: bool = False) -> list[str]:
    """What an administrator should act on, from what the channel document records.

    ``renewed``: onboarding renews the token itself before its end (X's two-hour tokens, with the
    refresh token the account granted), so its near end is nothing to act on; a renewal the
    provider refuses makes the channel ``reauth_required``, which is."""
    notes: list[str] = []
    if channel.status is ChannelStatus.REAUTH_REQUIRED:
        notes.append(_("The provider refused the token: reconnect the account."))
    if channel.status is ChannelStatus.ACTIVE and channel.token_expires_at is not None:
        if channel.token_expires_at <= now:
            notes.append(
                _(
                    "The token has expired and Parley could not renew it yet; it keeps trying. "
                    "If this stays, reconnect the account."
                )
                if renewed
                else _("The token has expired: reconnect the account.")
            )
        elif channel.token_expires_at - now <= lead and not renewed:
            notes.append(_("The token expires soon: reconnect the account before it does."))
    if channel.status is ChannelStatus.ACTIVE and channel.subscription_gap:
        notes.append(
            _(
                "The provider no longer sends some webhooks (%(fields)s) and Parley could not "
                "subscribe them again: check the app's webhook settings, or reconnect the account.",
                fields=", ".join(channel.subscription_gap),
            )
        )
    restriction = channel.sending_restricted
    if channel.status is ChannelStatus.ACTIVE and restriction is not None:
        codes = [str(c) for c in (restriction.provider_code, restriction.provider_subcode) if c is not None]
        notes.append(
            _(
                "Sending restricted: the provider refuses this account's sends for now (code "
                "%(code)s; refused since %(since)s, last at %(last)s). Replies fail until the provider "
                "lifts it; its notice to the account says how to appeal.",
                code="/".join(codes) or "?",
                since=i18n.when(restriction.since),
                last=i18n.when(restriction.last_refused_at),
            )
        )
    return notes


def reconnect_flow(channel: Channel) -> str | None:
    """The login that reconnects a channel: its provider's, and for Instagram the way it was
    connected (through its Page, or with Instagram Login)."""
    if channel.provider is Provider.MESSENGER:
        return "facebook"
    if channel.provider is Provider.INSTAGRAM:
        return "instagram" if channel.connect_path == INSTAGRAM_LOGIN_PATH else "facebook"
    if channel.provider is Provider.X:
        return "x"
    return None


def who_can_see(channel: Channel, teams: list[Team]) -> list[tuple[str, str, str]]:
    """(user, role, teams) of every user the access names or a team holds, by the shared rule."""
    access = ChannelAccess(
        channel.access.user_access,
        channel.access.team_access,
        channel.access.all_users_role,
        channel.access.all_teams_role,
    )
    users = set(channel.access.user_access) | {m for t in teams for m in t.members}
    rows = []
    for user in sorted(users):
        theirs = [t for t in teams if user in t.members]
        role = effective_role(user, [t.id for t in theirs], access)
        rows.append((user, role.value if role else "", ", ".join(t.name for t in theirs)))
    return rows


@dataclass
class Console:
    """The pages, over the service and the same token verifier the API uses."""

    service: OnboardingService
    verifier: TokenVerifier
    settings: OnboardingSettings
    clock: Callable[[], datetime]
    templates: Jinja2Templates
    logins: LoginStates
    reports: ReportsApi | None = None

    # --- plumbing -----------------------------------------------------------------------------

    def render(
        self,
        request: Request,
        name: str,
        context: dict[str, Any] | None = None,
        status: int = 200,
        principal: Principal | None = None,
    ) -> Response:
        response = self.templates.TemplateResponse(
            request,
            name,
            {
                "base": BASE,
                "csrf_field": session.CSRF_FIELD,
                "csrf": session.csrf_token(request),
                "principal": principal,
                "dev_sign_in": self.settings.console_dev_sign_in,
                "lang": i18n.current(),
                "languages": i18n.LANGUAGES,
                "here": request.url.path if request.method == "GET" else f"{BASE}/",
                "role_names": {role.value: _(words) for role, words in ROLE_WORDS.items()},
                "provider_names": PROVIDER_NAMES,
                "reports_on": self.reports is not None,
                **(context or {}),
            },
            status_code=status,
            headers=HEADERS,
        )
        session.remember_csrf(request, response)
        return response

    def error(
        self,
        request: Request,
        status: int,
        title: str,
        message: str,
        principal: Principal | None = None,
        reason: str | None = None,
        again: str | None = None,
    ) -> Response:
        context = {"status": status, "title": title, "message": message, "reason": reason, "again": again}
        return self.render(request, "error.html", context, status, principal)

    @staticmethod
    def redirect(path: str) -> Response:
        return RedirectResponse(f"{BASE}{path}", status_code=303, headers=HEADERS)

    async def form(self, request: Request) -> Form | None:
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return None
        return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)

    async def signed_in(self, request: Request) -> Principal | None:
        token = request.cookies.get(session.SESSION_COOKIE)
        if not token:
            return None
        try:
            return await self.verifier.verify(f"Bearer {token}")
        except Unauthorized:
            return None

    async def admin(self, request: Request, form: Form | None = None) -> Principal | Response:
        """The signed-in administrator, or the page to show instead (sign-in, 403)."""
        if request.method == "POST" and (
            form is None or not session.csrf_ok(request, one(form, session.CSRF_FIELD))
        ):
            return self.error(
                request, 403, _("The form expired"), _("Reload the page and submit the form again.")
            )
        principal = await self.signed_in(request)
        if principal is None:
            return self.redirect("/sign-in")
        if not principal.is_admin:
            return self.error(
                request,
                403,
                _("Administrators only"),
                _("The console is for tenant administrators; your token does not carry the admin role."),
                principal,
            )
        return principal

    # --- sign-in ------------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        return self.redirect("/channels")

    async def sign_in_page(self, request: Request) -> Response:
        return self.render(request, "sign_in.html", {"errors": {}, "values": {}})

    async def sign_in(self, request: Request) -> Response:
        form = await self.form(request)
        if form is None or not session.csrf_ok(request, one(form, session.CSRF_FIELD)):
            return self.error(request, 403, _("The form expired"), _("Reload the page and sign in again."))
        token = one(form, "token")
        if token.lower().startswith("bearer "):
            token = token[7:].strip()
        try:
            principal = await self.verifier.verify(f"Bearer {token}")
        except Unauthorized:
            return self.render(
                request,
                "sign_in.html",
                {
                    "errors": {"token": _("This token was not accepted: it is invalid or expired.")},
                    "values": {},
                },
                400,
            )
        response = self.redirect(self._landing(principal))
        session.sign_in(request, response, token)
        return response

    def _landing(self, principal: Principal) -> str:
        """Where a sign-in lands: the channels, or for someone who is not an administrator the
        Reports page when there is one (its access is the reports service's)."""
        return "/reports" if self.reports is not None and not principal.is_admin else "/channels"

    async def dev_sign_in(self, request: Request) -> Response:
        if not self.settings.console_dev_sign_in or self.settings.jwt_hs256_secret is None:
            return self.error(request, 404, _("Not found"), _("There is no such page."))
        form = await self.form(request)
        if form is None or not session.csrf_ok(request, one(form, session.CSRF_FIELD)):
            return self.error(request, 403, _("The form expired"), _("Reload the page and sign in again."))
        values = {"user_id": one(form, "user_id"), "tenant_id": one(form, "tenant_id")}
        errors = {k: _("Required.") for k, v in values.items() if not v}
        if errors:
            return self.render(request, "sign_in.html", {"errors": errors, "values": values}, 400)
        roles = ["admin"] if checked(form, "admin") else []
        token = issue_dev_token(
            self.settings.jwt_hs256_secret.get_secret_value(),
            values["user_id"],
            values["tenant_id"],
            roles,
            ttl_s=DEV_TOKEN_TTL_S,
        )
        landing = "/reports" if self.reports is not None and not roles else "/channels"
        response = self.redirect(landing)
        session.sign_in(request, response, token)
        return response

    async def sign_out(self, request: Request) -> Response:
        form = await self.form(request)
        if form is None or not session.csrf_ok(request, one(form, session.CSRF_FIELD)):
            return self.error(request, 403, _("The form expired"), _("Reload the page and sign out again."))
        response = self.redirect("/sign-in?signed-out=1")
        session.sign_out(request, response)
        return response

    # --- channels -----------------------------------------------------------------------------

    async def channels(self, request: Request) -> Response:
        principal = await self.admin(request)
        if isinstance(principal, Response):
            return principal
        now = self.clock()
        lead = timedelta(seconds=self.settings.token_expiry_lead_s)
        rows = []
        for c in await self.service.channels(principal.tenant_id):
            renewed = await self._renewed(c)
            rows.append(
                {
                    "channel": c,
                    "status": _(STATUS_WORDS[c.status]),
                    "attention": attention(c, now, lead, renewed=renewed),
                    "address": address(c),
                    "renewed": renewed,
                }
            )
        return self.render(
            request,
            "channels.html",
            {"rows": rows, "nav": "channels", "done": _done(request)},
            principal=principal,
        )

    async def _renewed(self, channel: Channel) -> bool:
        """Whether onboarding renews the channel's token itself (only an expiring token can be)."""
        if channel.token_expires_at is None or channel.status is not ChannelStatus.ACTIVE:
            return False
        return await self.service.renews_token(channel)

    async def _channel_page(
        self,
        request: Request,
        principal: Principal,
        channel: Channel,
        *,
        errors: FormErrors | None = None,
        values: dict[str, str] | None = None,
        status: int = 200,
    ) -> Response:
        teams = await self.service.teams(principal.tenant_id)
        return self.render(
            request,
            "channel.html",
            {
                "nav": "channels",
                "channel": channel,
                "status_words": _(STATUS_WORDS[channel.status]),
                "address": address(channel),
                "teams": teams,
                "roles": ROLES,
                "user_prefix": USER_PREFIX,
                "team_prefix": TEAM_PREFIX,
                "who": who_can_see(channel, teams),
                "errors": (errors or FormErrors()).by_field,
                "values": values or {},
                "display_name_max": DISPLAY_NAME_MAX,
                "hours": hours_values(channel.settings.business_hours),
                "renewed": await self._renewed(channel),
                "done": _done(request),
                "disconnected": channel.status is ChannelStatus.DISCONNECTED,
                "reconnect": self._offered(reconnect_flow(channel)),
                "needs_reconnect": channel.status is ChannelStatus.REAUTH_REQUIRED,
            },
            status,
            principal,
        )

    async def channel(self, request: Request) -> Response:
        principal = await self.admin(request)
        if isinstance(principal, Response):
            return principal
        channel = await self.service.channel(principal.tenant_id, request.path_params["channel_id"])
        return await self._channel_page(request, principal, channel)

    async def save_settings(self, request: Request) -> Response:
        form = await self.form(request)
        principal = await self.admin(request, form)
        if isinstance(principal, Response):
            return principal
        assert form is not None
        channel_id = request.path_params["channel_id"]
        channel = await self.service.channel(principal.tenant_id, channel_id)
        changes, errors = settings_changes(form, x_channel=channel.x_api is not None)
        values = {k: one(form, k) for k in form} | {"_form": "settings"}
        if not errors:
            try:
                await self.service.update_settings(
                    principal.tenant_id, channel_id, changes, principal.user_id
                )
                return self.redirect(f"/channels/{seg(channel_id)}?done=settings#settings")
            except DomainError as exc:
                if exc.status == 404:
                    raise
                errors.add(_form_field(exc), in_words(exc))
        return await self._channel_page(request, principal, channel, errors=errors, values=values, status=422)

    async def save_access(self, request: Request) -> Response:
        form = await self.form(request)
        principal = await self.admin(request, form)
        if isinstance(principal, Response):
            return principal
        assert form is not None
        channel_id = request.path_params["channel_id"]
        access, errors = access_from(form)
        if not errors:
            try:
                await self.service.set_access(principal.tenant_id, channel_id, access, principal.user_id)
                return self.redirect(f"/channels/{seg(channel_id)}?done=access#access")
            except DomainError as exc:
                if exc.status == 404:
                    raise
                errors.add(str(exc.details.get("field") or "access"), in_words(exc))
        channel = await self.service.channel(principal.tenant_id, channel_id)
        values = {k: one(form, k) for k in form} | {"_form": "access"}
        return await self._channel_page(request, principal, channel, errors=errors, values=values, status=422)

    async def disconnect(self, request: Request) -> Response:
        form = await self.form(request)
        principal = await self.admin(request, form)
        if isinstance(principal, Response):
            return principal
        channel_id = request.path_params["channel_id"]
        await self.service.disconnect(principal.tenant_id, channel_id, principal.user_id)
        return self.redirect(f"/channels/{seg(channel_id)}?done=disconnected")

    async def check_token(self, request: Request) -> Response:
        form = await self.form(request)
        principal = await self.admin(request, form)
        if isinstance(principal, Response):
            return principal
        channel_id = request.path_params["channel_id"]
        channel = await self.service.check_channel_token(principal.tenant_id, channel_id)
        done = "checked" if channel.status is ChannelStatus.ACTIVE else "reauth"
        return self.redirect(f"/channels/{seg(channel_id)}?done={done}")

    # --- Add Channel and reconnect ------------------------------------------------------------

    def _flows(self) -> dict[str, bool]:
        """The provider logins this deployment's connectors can start."""
        connectors = self.service.connectors
        return {
            "facebook": isinstance(connectors.get(Provider.MESSENGER), PageLoginStart),
            "instagram": isinstance(connectors.get(Provider.INSTAGRAM), AccountLoginStart),
            "x": isinstance(connectors.get(Provider.X), PkceLoginStart),
            "whatsapp": self._signup_window("", "") is not None,
        }

    def _signup_window(self, redirect_uri: str, state: str) -> str | None:
        """WhatsApp Embedded Signup's window, when this deployment's can come back to a page
        without script (the provider sandbox's; Meta's own answers only to its JavaScript SDK)."""
        numbers = self.service.connectors.get(Provider.WHATSAPP)
        return (
            numbers.signup_window_url(redirect_uri, state) if isinstance(numbers, SignupWindowStart) else None
        )

    def _offered(self, flow: str | None) -> str | None:
        return flow if flow is not None and self._flows().get(flow) else None

    def _redirect_uri(self, request: Request, flow: str) -> str:
        """Where the provider sends the browser back: registered in the provider's app as is."""
        origin = self.settings.console_public_url or f"{request.url.scheme}://{request.url.netloc}"
        return f"{origin}{BASE}/connect/{flow}/callback"

    async def add_channel(self, request: Request) -> Response:
        principal = await self.admin(request)
        if isinstance(principal, Response):
            return principal
        channels = await self.service.channels(principal.tenant_id)
        meta_connected = any(
            reconnect_flow(c) == "facebook" and c.status is not ChannelStatus.DISCONNECTED for c in channels
        )
        return self.render(
            request,
            "add_channel.html",
            {
                "nav": "channels",
                "flows": self._flows(),
                "meta_connected": meta_connected,
                "signup_configured": bool(self.settings.whatsapp_embedded_signup_config_id),
            },
            principal=principal,
        )

    async def connect_start(self, request: Request) -> Response:
        """Send the browser to the provider's login page with a fresh state (and PKCE for X)."""
        principal = await self.admin(request)
        if isinstance(principal, Response):
            return principal
        flow = request.path_params["flow"]
        if flow not in FLOWS or not self._flows()[flow]:
            return self.error(
                request, 404, _("Not found"), _("This provider cannot be connected here."), principal
            )
        channel_id = request.query_params.get("channel") or None
        if channel_id is not None:
            channel = await self.service.channel(principal.tenant_id, channel_id)  # 404 if not theirs
            if reconnect_flow(channel) != flow:
                return self.error(
                    request, 400, _("Not done"), _("This channel is not connected that way."), principal
                )
        login = LoginState(
            flow=flow,
            state=new_state(),
            tenant_id=principal.tenant_id,
            user_id=principal.user_id,
            session=session_hash(request),
            expires_at=self.clock().timestamp() + STATE_TTL_S,
            # PKCE (RFC 7636): 64 characters of the unreserved set; the connector sends its S256 hash
            verifier=secrets.token_urlsafe(48) if flow == "x" else None,
            channel_id=channel_id,
        )
        redirect_uri = self._redirect_uri(request, flow)
        connectors = self.service.connectors
        if flow == "facebook":
            pages = connectors[Provider.MESSENGER]
            assert isinstance(pages, PageLoginStart)
            target = pages.page_login_url(redirect_uri, login.state)
        elif flow == "instagram":
            account = connectors[Provider.INSTAGRAM]
            assert isinstance(account, AccountLoginStart)
            target = account.account_login_url(redirect_uri, login.state)
        elif flow == "whatsapp":
            window = self._signup_window(redirect_uri, login.state)
            assert window is not None
            target = window
        else:
            pkce = connectors[Provider.X]
            assert isinstance(pkce, PkceLoginStart)
            assert login.verifier is not None
            target = pkce.authorize_url(redirect_uri, login.state, login.verifier)
        response = RedirectResponse(target, status_code=303, headers=HEADERS)
        self.logins.start(request, response, login)
        return response

    async def connect_callback(self, request: Request) -> Response:
        """The provider's redirect back: check the state, trade the code through the service."""
        flow = request.path_params["flow"]
        if flow not in FLOWS:
            return await self.not_found(request)
        if session.SESSION_COOKIE not in request.cookies and "again" not in request.query_params:
            # the redirect came from the provider's site, and the session cookie (SameSite=Strict)
            # stays behind on such a navigation: the same address again, from this page, has it
            again = str(request.url.include_query_params(again="1"))
            return self.render(request, "connect_wait.html", {"again": again})
        principal = await self.admin(request)
        if isinstance(principal, Response):
            return principal
        checked_login = self.logins.check(
            request, flow, principal.tenant_id, principal.user_id, self.clock().timestamp()
        )
        if isinstance(checked_login, str):
            return self._login_failed(request, principal, checked_login)
        return await self._finish_login(request, principal, checked_login)

    def _login_failed(
        self, request: Request, principal: Principal, reason: str, status: int = 400
    ) -> Response:
        response = self.error(
            request,
            status,
            _("Nothing was connected"),
            _(LOGIN_REASONS.get(reason, LOGIN_REASONS["oauth_error"])),
            principal,
            reason=reason,
            again=f"{BASE}/channels/add",
        )
        self.logins.forget(request, response)
        return response

    async def _finish_login(self, request: Request, principal: Principal, login: LoginState) -> Response:
        query = request.query_params
        if query.get("error"):
            error = query["error"]
            return self._login_failed(
                request, principal, error if PROVIDER_ERROR.match(error) else "oauth_error"
            )
        code = query.get("code")
        if not code:
            return self._login_failed(request, principal, "oauth_code_missing")
        redirect_uri = self._redirect_uri(request, login.flow)
        tenant, actor = principal.tenant_id, principal.user_id
        try:
            if login.flow == "facebook":
                started = await self.service.start_meta_connection(tenant, actor, code, redirect_uri)
                target = f"/connect/facebook/{seg(started['connection_id'])}"
                if login.channel_id:
                    target += f"?channel={seg(login.channel_id)}"
                response = self.redirect(target)
            elif login.flow == "whatsapp":
                # the same service call as POST /v1/connections/whatsapp/embedded-signup
                waba_id, number_id = query.get("waba_id", ""), query.get("phone_number_id", "")
                if not waba_id or not number_id:
                    return self._login_failed(request, principal, "signup_ids_missing")
                # (never `_, channel = ...`: `_` is the page's translation function)
                signed_up = await self.service.embedded_signup(
                    tenant, actor, code=code, waba_id=waba_id, phone_number_id=number_id
                )
                channel = signed_up[1]
                response = self.redirect(f"/channels/{seg(channel.id)}?done=connected")
            else:
                if login.flow == "instagram":
                    channel = await self.service.connect_instagram_login(tenant, actor, code, redirect_uri)
                else:
                    assert login.verifier is not None
                    channel = await self.service.connect_x(tenant, actor, code, redirect_uri, login.verifier)
                done = "reconnected" if login.channel_id == channel.id else "connected"
                response = self.redirect(f"/channels/{seg(channel.id)}?done={done}")
        except DomainError as exc:
            response = self.error(
                request,
                exc.status,
                _("Nothing was connected"),
                in_words(exc),
                principal,
                reason=exc.code,
                again=f"{BASE}/channels/add",
            )
        except ProviderError as exc:
            response = self.error(
                request,
                502,
                _("The provider refused"),
                _("The provider refused the login's code; start again from Add Channel."),
                principal,
                reason=exc.kind.value,
                again=f"{BASE}/channels/add",
            )
        # the state worked once, whatever came of it
        self.logins.forget(request, response)
        return response

    async def _pages_page(
        self,
        request: Request,
        principal: Principal,
        connection_id: str,
        chosen: set[str],
        channel_id: str | None,
        error: DomainError | None = None,
    ) -> Response:
        view = await self.service.meta_connection(principal.tenant_id, connection_id)
        pages = self.service.connectors.get(Provider.MESSENGER)
        return self.render(
            request,
            "connect_pages.html",
            {
                "nav": "channels",
                "view": view,
                "chosen": chosen,
                "channel_id": channel_id,
                "required_tasks": pages.required_page_tasks if isinstance(pages, PageConnector) else (),
                "error": in_words(error) if error else None,
                "reason": error.code if error else None,
            },
            error.status if error else 200,
            principal,
        )

    async def connect_pages(self, request: Request) -> Response:
        """The granted Pages, the check of the permissions and of each Page's access; Activate."""
        principal = await self.admin(request)
        if isinstance(principal, Response):
            return principal
        channel_id = request.query_params.get("channel") or None
        chosen: set[str] = set()
        if channel_id:
            channel = await self.service.channel(principal.tenant_id, channel_id)
            chosen.add(channel.account_id)
        connection_id = request.path_params["connection_id"]
        return await self._pages_page(request, principal, connection_id, chosen, channel_id)

    async def activate_pages(self, request: Request) -> Response:
        form = await self.form(request)
        principal = await self.admin(request, form)
        if isinstance(principal, Response):
            return principal
        assert form is not None
        connection_id = request.path_params["connection_id"]
        page_ids, instagram_ids = form.get("page_ids", []), form.get("instagram_account_ids", [])
        channel_id = one(form, "channel") or None
        try:
            if not page_ids and not instagram_ids:
                raise DomainError("NOTHING_CHOSEN", _("choose at least one Page or Instagram account"))
            channels = await self.service.activate_meta(
                principal.tenant_id, principal.user_id, connection_id, page_ids, instagram_ids
            )
        except DomainError as exc:
            if exc.code in ("CONNECTION_NOT_FOUND", "CONNECTION_EXPIRED"):
                raise
            chosen = set(page_ids) | set(instagram_ids)
            return await self._pages_page(request, principal, connection_id, chosen, channel_id, exc)
        if channel_id and any(c.id == channel_id for c in channels):
            return self.redirect(f"/channels/{seg(channel_id)}?done=reconnected")
        return self.redirect("/channels?done=activated")

    # --- teams --------------------------------------------------------------------------------

    async def teams(self, request: Request) -> Response:
        principal = await self.admin(request)
        if isinstance(principal, Response):
            return principal
        return await self._teams_page(request, principal)

    async def _teams_page(
        self, request: Request, principal: Principal, errors: dict[str, str] | None = None, status: int = 200
    ) -> Response:
        return self.render(
            request,
            "teams.html",
            {
                "nav": "teams",
                "teams": await self.service.teams(principal.tenant_id),
                "errors": errors or {},
                "done": _done(request),
            },
            status,
            principal,
        )

    async def create_team(self, request: Request) -> Response:
        form = await self.form(request)
        principal = await self.admin(request, form)
        if isinstance(principal, Response):
            return principal
        assert form is not None
        try:
            team = await self.service.create_team(principal.tenant_id, one(form, "name"))
        except DomainError as exc:
            return await self._teams_page(request, principal, {"name": in_words(exc)}, 422)
        return self.redirect(f"/teams/{seg(team.id)}?done=created")

    async def team(self, request: Request) -> Response:
        principal = await self.admin(request)
        if isinstance(principal, Response):
            return principal
        team = await self.service.team(principal.tenant_id, request.path_params["team_id"])
        return await self._team_page(request, principal, team)

    async def _team_page(
        self,
        request: Request,
        principal: Principal,
        team: Team,
        errors: dict[str, str] | None = None,
        status: int = 200,
        hours: dict[str, str] | None = None,
    ) -> Response:
        return self.render(
            request,
            "team.html",
            {
                "nav": "teams",
                "team": team,
                "errors": errors or {},
                # what was typed in the hours form when it was refused, else the team's hours
                "hours": hours if hours is not None else hours_values(team.business_hours),
                "hours_refused": hours is not None,
                "done": _done(request),
            },
            status,
            principal,
        )

    async def save_team_hours(self, request: Request) -> Response:
        form = await self.form(request)
        principal = await self.admin(request, form)
        if isinstance(principal, Response):
            return principal
        assert form is not None
        team_id = request.path_params["team_id"]
        errors = FormErrors()
        hours = hours_from(form, errors)
        if not errors:
            try:
                await self.service.set_team_hours(principal.tenant_id, team_id, hours)
                return self.redirect(f"/teams/{seg(team_id)}?done=hours#team-hours")
            except DomainError as exc:
                if exc.status == 404:
                    raise
                errors.add("hours", in_words(exc))
        team = await self.service.team(principal.tenant_id, team_id)
        typed = {k: one(form, k) for k in form if k != session.CSRF_FIELD}
        return await self._team_page(request, principal, team, errors.by_field, 422, typed)

    async def add_member(self, request: Request) -> Response:
        form = await self.form(request)
        principal = await self.admin(request, form)
        if isinstance(principal, Response):
            return principal
        assert form is not None
        team_id = request.path_params["team_id"]
        user_id = one(form, "user_id")
        if not user_id:
            team = await self.service.team(principal.tenant_id, team_id)
            errors = {"user_id": _("Enter the user's id.")}
            return await self._team_page(request, principal, team, errors, 422)
        await self.service.change_team(principal.tenant_id, team_id, lambda t: t.add_member(user_id))
        return self.redirect(f"/teams/{seg(team_id)}?done=member-added")

    async def remove_member(self, request: Request) -> Response:
        form = await self.form(request)
        principal = await self.admin(request, form)
        if isinstance(principal, Response):
            return principal
        assert form is not None
        team_id = request.path_params["team_id"]
        user_id = one(form, "user_id")
        await self.service.change_team(principal.tenant_id, team_id, lambda t: t.remove_member(user_id))
        return self.redirect(f"/teams/{seg(team_id)}?done=member-removed")

    async def rename_team(self, request: Request) -> Response:
        form = await self.form(request)
        principal = await self.admin(request, form)
        if isinstance(principal, Response):
            return principal
        assert form is not None
        team_id, name = request.path_params["team_id"], one(form, "name")
        try:
            await self.service.change_team(principal.tenant_id, team_id, lambda t: t.rename(name))
        except DomainError as exc:
            if exc.status == 404:
                raise
            team = await self.service.team(principal.tenant_id, team_id)
            return await self._team_page(request, principal, team, {"name": in_words(exc)}, 422)
        return self.redirect(f"/teams/{seg(team_id)}?done=renamed")

    async def delete_team(self, request: Request) -> Response:
        form = await self.form(request)
        principal = await self.admin(request, form)
        if isinstance(principal, Response):
            return principal
        await self.service.delete_team(principal.tenant_id, request.path_params["team_id"])
        return self.redirect("/teams?done=deleted")

    # --- WhatsApp verification ----------------------------------------------------------------

    def _number_rules(self) -> NumberRules | None:
        connector = self.service.connectors.get(Provider.WHATSAPP)
        return connector.rules if isinstance(connector, NumberConnector) else None

    async def whatsapp_home(self, request: Request) -> Response:
        principal = await self.admin(request)
        if isinstance(principal, Response):
            return principal
        wanted = request.query_params.get("id", "").strip()
        if wanted:
            return self.redirect(f"/whatsapp/{seg(wanted)}")
        return self.render(
            request,
            "whatsapp_start.html",
            {"nav": "whatsapp", "configured": self._number_rules() is not None},
            principal=principal,
        )

    async def whatsapp_start(self, request: Request) -> Response:
        form = await self.form(request)
        principal = await self.admin(request, form)
        if isinstance(principal, Response):
            return principal
        onboarding = await self.service.start_whatsapp(principal.tenant_id)
        return self.redirect(f"/whatsapp/{seg(onboarding.id)}?done=started")

    async def whatsapp_page(self, request: Request) -> Response:
        principal = await self.admin(request)
        if isinstance(principal, Response):
            return principal
        onboarding = await self.service.whatsapp(principal.tenant_id, request.path_params["onboarding_id"])
        return await self._whatsapp_page(request, principal, onboarding)

    async def _whatsapp_page(
        self,
        request: Request,
        principal: Principal,
        onboarding: Any,
        errors: dict[str, str] | None = None,
        values: dict[str, str] | None = None,
        status: int = 200,
    ) -> Response:
        rules = self._number_rules()
        actor, who, wait = whatsapp.waiting_for(onboarding)
        return self.render(
            request,
            "whatsapp.html",
            {
                "nav": "whatsapp",
                "onboarding": onboarding,
                "steps": whatsapp.steps(onboarding),
                "who": who,
                "you_next": actor is Actor.CUSTOMER,
                "wait": wait,
                "actions": whatsapp.actions(onboarding.step),
                "clock": whatsapp.code_clock(onboarding, rules, self.clock()) if rules else None,
                "errors": errors or {},
                "values": values or {},
                "done": _done(request),
            },
            status,
            principal,
        )

    async def whatsapp_step(self, request: Request) -> Response:
        form = await self.form(request)
        principal = await self.admin(request, form)
        if isinstance(principal, Response):
            return principal
        assert form is not None
        onboarding_id, action = request.path_params["onboarding_id"], request.path_params["action"]
        if action not in whatsapp.CUSTOMER_ACTIONS:
            return self.error(request, 404, _("Not found"), _("There is no such step."), principal)
        body: dict[str, Any] = {}
        if action == "submit-details":
            body = {
                "phone_number": one(form, "phone_number"),
                "landline": checked(form, "landline"),
                "business_manager_id": one(form, "business_manager_id"),
                "display_name": one(form, "display_name"),
            }
        elif action == "verify-code":
            body = {"code": one(form, "code")}
        try:
            await self.service.whatsapp_step(
                principal.tenant_id, onboarding_id, action, body, principal.user_id
            )
        except DomainError as exc:
            if exc.status == 404:
                raise
            default = {"verify-code": "code", "request-code": "resend"}.get(action, "step")
            rules = self._number_rules()
            message = in_words(exc, "whatsapp", digits=rules.code_digits if rules else "")
            errors = {str(exc.details.get("field") or default): message}
            onboarding = await self.service.whatsapp(principal.tenant_id, onboarding_id)
            # what was typed comes back for correction, never the code
            values = {k: one(form, k) for k in form if k not in ("code", session.CSRF_FIELD)}
            return await self._whatsapp_page(request, principal, onboarding, errors, values, 422)
        return self.redirect(f"/whatsapp/{seg(onboarding_id)}?done={action}")

    # --- reports ------------------------------------------------------------------------------

    async def reports_page(self, request: Request) -> Response:
        """A chart per measure from the reports service, asked with the user's own token: the
        reports service decides who sees what (Supervisors of a channel, administrators)."""
        principal = await self.signed_in(request)
        if principal is None:
            return self.redirect("/sign-in")
        if self.reports is None:
            return self.error(
                request, 404, _("Not found"), _("Reports are not offered on this deployment."), principal
            )
        query = report_page.query_from(request.query_params, self.clock().date())
        channels = await self._reportable(principal)
        context: dict[str, Any] = {
            "nav": "reports",
            "query": query,
            "buckets": {k: _(v) for k, v in report_page.BUCKETS.items()},
            "channels": channels,
            "measures": [],
            "backlog": None,
            "refusal": None,
            "reason": None,
        }
        status = 200 if not query.errors else 422
        if not query.errors:
            token = request.cookies.get(session.SESSION_COOKIE, "")
            try:
                answer = await self.reports.get("activity", token, query.params())
                backlog = (
                    await self.reports.get(
                        "backlog", token, {"channel_id": query.channel} if query.channel else {}
                    )
                    if answer.ok
                    else None
                )
            except ReportsUnavailable:
                return self.error(
                    request,
                    502,
                    _("Reports are unavailable"),
                    _("The reports service did not answer; try again in a moment."),
                    principal,
                    reason="reports_unavailable",
                )
            if answer.status == 401:
                return self.redirect("/sign-in")
            if answer.ok:
                context["measures"] = report_page.measures(answer.body, query.bucket)
                context["total"] = answer.body["total"]
                context["covered"] = [channels.get(c, c) for c in answer.body.get("channel_ids", [])]
                if backlog is not None and backlog.ok:
                    oldest = backlog.body.get("oldest_waiting_since")
                    context["backlog"] = {
                        **backlog.body,
                        "oldest": datetime.fromisoformat(oldest).astimezone(UTC) if oldest else None,
                    }
            elif (on_field := report_page.field_refusal(answer.code)) is not None:
                query.errors[on_field[0]] = on_field[1]
                status = answer.status
            else:
                context["refusal"] = report_page.refusal_sentence(answer.code)
                context["reason"] = answer.code
                status = answer.status
        return self.render(request, "reports.html", context, status, principal)

    async def _reportable(self, principal: Principal) -> dict[str, str]:
        """The channels to choose from, by id: all of the tenant's for an administrator, else those
        the user is Supervisor of by the shared access rule (the reports service checks again)."""
        found = await self.service.channels(principal.tenant_id)
        teams = await self.service.teams(principal.tenant_id)
        theirs = [t.id for t in teams if principal.user_id in t.members]
        names = {}
        for channel in found:
            if channel.status is ChannelStatus.DISCONNECTED:
                continue
            access = ChannelAccess(
                channel.access.user_access,
                channel.access.team_access,
                channel.access.all_users_role,
                channel.access.all_teams_role,
            )
            if (
                principal.is_admin
                or effective_role(principal.user_id, theirs, access) is ChannelRole.SUPERVISOR
            ):
                names[channel.id] = channel.settings.display_name or channel.account_id
        return names

    async def not_found(self, request: Request) -> Response:
        return self.error(request, 404, _("Not found"), _("There is no such page in the console."))

    async def language(self, request: Request) -> Response:
        """The language switch: a cookie naming the language, then back to the page it was on."""
        form = await self.form(request)
        if form is None or not session.csrf_ok(request, one(form, session.CSRF_FIELD)):
            return self.error(
                request, 403, _("The form expired"), _("Reload the page and submit the form again.")
            )
        chosen = one(form, "language")
        back = one(form, "next")
        # only a page of the console: never another site ("//host") or another path
        if not back.startswith(f"{BASE}/") or back.startswith("//") or "\\" in back:
            back = f"{BASE}/"
        response = RedirectResponse(back, status_code=303, headers=HEADERS)
        if chosen in i18n.LANGUAGES:
            session.remember_language(request, response, chosen)
        return response


def _done(request: Request) -> str | None:
    """The page's "what happened" line for the ``done`` of the redirect that led to it."""
    done = DONE.get(request.query_params.get("done", ""))
    return _(done) if done else None


def _form_field(exc: DomainError) -> str:
    """The form field of a domain error's field (the form asks for minutes, the domain for seconds)."""
    name = str(exc.details.get("field") or "settings")
    return name.removesuffix("_s") + "_min" if name.startswith("auto_resolve_") else name


def create_console(
    service: OnboardingService,
    verifier: TokenVerifier,
    settings: OnboardingSettings,
    clock: Callable[[], datetime],
    reports: ReportsApi | None = None,
) -> Starlette:
    """The console app; bootstrap mounts it at ``/console``."""
    templates = Jinja2Templates(directory=HERE / "templates")
    i18n.install(templates.env)
    # the login-state cookie is sealed with onboarding's current encryption key (the vault's)
    logins = LoginStates(TokenVault(parse_keys(settings.encryption_keys.get_secret_value())))
    console = Console(service, verifier, settings, clock, templates, logins, reports)

    def guarded(page: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            i18n.use(
                i18n.negotiate(
                    request.headers.get("accept-language"), request.cookies.get(session.LANGUAGE_COOKIE)
                )
            )
            try:
                return await page(request)
            except DomainError as exc:
                principal = await console.signed_in(request)
                if exc.status == 404:
                    return console.error(
                        request, 404, _("Not found"), in_words(exc), principal, reason=exc.code
                    )
                return console.error(
                    request, exc.status, _("Not done"), in_words(exc), principal, reason=exc.code
                )
            except ProviderError as exc:
                principal = await console.signed_in(request)
                return console.error(
                    request,
                    502,
                    _("The provider refused"),
                    _(
                        "%(provider)s refused the request: %(reason)s",
                        provider=PROVIDER_NAMES.get(exc.provider, exc.provider),
                        reason=_(PROVIDER_REFUSALS.get(exc.kind, UNKNOWN_REFUSAL)),
                    ),
                    principal,
                    reason=exc.kind.value,
                )

        return endpoint

    get, post = ["GET"], ["POST"]
    routes = [
        Route("/", guarded(console.home), methods=get),
        Route("/sign-in", guarded(console.sign_in_page), methods=get),
        Route("/sign-in", guarded(console.sign_in), methods=post),
        Route("/dev-sign-in", guarded(console.dev_sign_in), methods=post),
        Route("/sign-out", guarded(console.sign_out), methods=post),
        Route("/language", guarded(console.language), methods=post),
        Route("/channels", guarded(console.channels), methods=get),
        Route("/channels/add", guarded(console.add_channel), methods=get),
        Route("/channels/{channel_id}", guarded(console.channel), methods=get),
        Route("/channels/{channel_id}/settings", guarded(console.save_settings), methods=post),
        Route("/channels/{channel_id}/access", guarded(console.save_access), methods=post),
        Route("/channels/{channel_id}/disconnect", guarded(console.disconnect), methods=post),
        Route("/channels/{channel_id}/check", guarded(console.check_token), methods=post),
        Route("/connect/{flow}/start", guarded(console.connect_start), methods=get),
        Route("/connect/{flow}/callback", guarded(console.connect_callback), methods=get),
        Route("/connect/facebook/{connection_id}", guarded(console.connect_pages), methods=get),
        Route("/connect/facebook/{connection_id}/activate", guarded(console.activate_pages), methods=post),
        Route("/teams", guarded(console.teams), methods=get),
        Route("/teams", guarded(console.create_team), methods=post),
        Route("/teams/{team_id}", guarded(console.team), methods=get),
        Route("/teams/{team_id}/members", guarded(console.add_member), methods=post),
        Route("/teams/{team_id}/members/remove", guarded(console.remove_member), methods=post),
        Route("/teams/{team_id}/name", guarded(console.rename_team), methods=post),
        Route("/teams/{team_id}/business-hours", guarded(console.save_team_hours), methods=post),
        Route("/teams/{team_id}/delete", guarded(console.delete_team), methods=post),
        Route("/reports", guarded(console.reports_page), methods=get),
        Route("/whatsapp", guarded(console.whatsapp_home), methods=get),
        Route("/whatsapp", guarded(console.whatsapp_start), methods=post),
        Route("/whatsapp/{onboarding_id}", guarded(console.whatsapp_page), methods=get),
        Route("/whatsapp/{onboarding_id}/{action}", guarded(console.whatsapp_step), methods=post),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
        # any method: a form posted to an unknown page gets the console's 404 page, not a bare 405
        Route("/{path:path}", guarded(console.not_found), methods=["GET", "HEAD", "POST"]),
    ]
    return Starlette(routes=routes)
