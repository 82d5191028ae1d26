"""The console's routes: sign-in, channels, teams; every change through ``OnboardingService``.

Pages answer GET; forms POST and redirect (303) to a page that says what happened, so a reload
repeats nothing. Only tenant administrators get past the sign-in (``Principal.is_admin``, the
check the API makes); everyone else gets the 403 page.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from parley_events import ChannelStatus, Provider
from parley_providers import ProviderError
from parley_providers.base import (
    AccountLoginStart,
    NumberConnector,
    NumberRules,
    PageConnector,
    PageLoginStart,
    PkceLoginStart,
)
from parley_shared.access import ChannelAccess, effective_role
from parley_shared.auth import Principal, TokenVerifier, Unauthorized, issue_dev_token
from parley_shared.vault import TokenVault, parse_keys
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from parley_onboarding.console import session, whatsapp
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
    one,
    settings_changes,
)
from parley_onboarding.domain.channels import DISPLAY_NAME_MAX, Channel
from parley_onboarding.domain.errors import DomainError
from parley_onboarding.domain.teams import Team
from parley_onboarding.service import INSTAGRAM_LOGIN_PATH, OnboardingService
from parley_onboarding.settings import OnboardingSettings


def _(text: str) -> str:
    """The console's strings go through here (the English text is the key of the catalogs)."""
    return text


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
    ChannelStatus.ACTIVE: "Active",
    ChannelStatus.PENDING: "Pending",
    ChannelStatus.REAUTH_REQUIRED: "Reconnect needed",
    ChannelStatus.DISCONNECTED: "Disconnected",
}
DONE = {
    "settings": "Settings saved.",
    "access": "Access saved.",
    "disconnected": "The channel is disconnected.",
    "created": "Team created.",
    "member-added": "Member added.",
    "member-removed": "Member removed.",
    "renamed": "Team renamed.",
    "deleted": "Team deleted; the channels that gave it a role no longer do.",
    "checked": "The provider accepted the token.",
    "reauth": "The provider refused the token: reconnect the account.",
    "started": "WhatsApp onboarding started. Keep this page's address to come back to it.",
    "sign-agreement": "Agreement signed.",
    "accept-terms": "Terms accepted.",
    "submit-details": "Details submitted.",
    "approve-business-manager": "Business Manager approval recorded.",
    "request-code": "The code is on its way.",
    "verify-code": "The number is verified and its channel is active.",
    "profile-completed": "Profile recorded as complete.",
    "request-badge": "Badge requested.",
    "submit-templates": "Templates recorded as submitted.",
    "connected": _("The account is connected and its channel is active."),
    "reconnected": _("The account is reconnected and its channel is active again."),
    "activated": _("The Pages you chose are activated."),
}
REASONS = {
    "access_denied": _("You declined the provider's login, so nothing was connected."),
    "oauth_state_missing": _(
        "This login was not started from this console, or it took too long; start again from Add Channel."
    ),
    "oauth_state_mismatch": _(
        "This login belongs to another login attempt or session; start again from Add Channel."
    ),
    "oauth_state_expired": _("The login took too long; start again from Add Channel."),
    "oauth_code_missing": _("The provider sent no code back; start again from Add Channel."),
    "oauth_error": _("The provider ended the login with an error; start again from Add Channel."),
}
"""Why a provider login ended without a channel, by reason code (the provider's ``error``, or
the console's own check of the login's state)."""
PROVIDER_ERROR = re.compile(r"^[a-z_]{1,40}$")


FIELD_WORDS = {
    "display_name": "the display name",
    "auto_resolve_new_s": "auto-resolve for New",
    "auto_resolve_pending_s": "auto-resolve for Pending",
    "text_limit": "the text limit",
    "x_api": "the X delivery API",
    "phone_number": "the phone number",
    "business_manager_id": "the Business Manager id",
}


def in_words(exc: DomainError) -> str:
    """The domain's message as a sentence for people: field names in words, a capital, a stop."""
    text = exc.message
    for name, words in FIELD_WORDS.items():
        text = text.replace(name, words)
    text = text[:1].upper() + text[1:]
    return text if text.endswith(".") else text + "."


def seg(value: str) -> str:
    """One path segment: an id typed or stored can never add a segment or leave the console."""
    return quote(value, safe="")


def attention(channel: Channel, now: datetime, lead: timedelta) -> list[str]:
    """What an administrator should act on, from what the channel document records."""
    notes: list[str] = []
    if channel.status is ChannelStatus.REAUTH_REQUIRED:
        notes.append("The provider refused the token: reconnect the account.")
    if channel.status is ChannelStatus.ACTIVE and channel.token_expires_at is not None:
        if channel.token_expires_at <= now:
            notes.append("The token has expired: reconnect the account.")
        elif channel.token_expires_at - now <= lead:
            notes.append("The token expires soon: reconnect the account before it does.")
    if channel.status is ChannelStatus.ACTIVE and channel.subscription_gap:
        missing = ", ".join(channel.subscription_gap)
        notes.append(
            f"The provider no longer sends some webhooks ({missing}) and Parley could not subscribe "
            "them again: check the app's webhook settings, or reconnect the account."
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
            return self.error(request, 403, "The form expired", "Reload the page and submit the form again.")
        principal = await self.signed_in(request)
        if principal is None:
            return self.redirect("/sign-in")
        if not principal.is_admin:
            return self.error(
                request,
                403,
                "Administrators only",
                "The console is for tenant administrators; your token does not carry the admin role.",
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
            return self.error(request, 403, "The form expired", "Reload the page and sign in again.")
        token = one(form, "token")
        if token.lower().startswith("bearer "):
            token = token[7:].strip()
        try:
            await self.verifier.verify(f"Bearer {token}")
        except Unauthorized:
            return self.render(
                request,
                "sign_in.html",
                {"errors": {"token": "This token was not accepted: it is invalid or expired."}, "values": {}},
                400,
            )
        response = self.redirect("/channels")
        session.sign_in(request, response, token)
        return response

    async def dev_sign_in(self, request: Request) -> Response:
        if not self.settings.console_dev_sign_in or self.settings.jwt_hs256_secret is None:
            return self.error(request, 404, "Not found", "There is no such page.")
        form = await self.form(request)
        if form is None or not session.csrf_ok(request, one(form, session.CSRF_FIELD)):
            return self.error(request, 403, "The form expired", "Reload the page and sign in again.")
        values = {"user_id": one(form, "user_id"), "tenant_id": one(form, "tenant_id")}
        errors = {k: "Required." for k, v in values.items() if not v}
        if errors:
            return self.render(request, "sign_in.html", {"errors": errors, "values": values}, 400)
        token = issue_dev_token(
            self.settings.jwt_hs256_secret.get_secret_value(),
            values["user_id"],
            values["tenant_id"],
            ["admin"] if checked(form, "admin") else [],
            ttl_s=DEV_TOKEN_TTL_S,
        )
        response = self.redirect("/channels")
        session.sign_in(request, response, token)
        return response

    async def sign_out(self, request: Request) -> Response:
        form = await self.form(request)
        if form is None or not session.csrf_ok(request, one(form, session.CSRF_FIELD)):
            return self.error(request, 403, "The form expired", "Reload the page and sign out again.")
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
        rows = [
            {"channel": c, "status": STATUS_WORDS[c.status], "attention": attention(c, now, lead)}
            for c in await self.service.channels(principal.tenant_id)
        ]
        done = DONE.get(request.query_params.get("done", ""))
        return self.render(
            request, "channels.html", {"rows": rows, "nav": "channels", "done": done}, principal=principal
        )

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
                "status_words": STATUS_WORDS[channel.status],
                "teams": teams,
                "roles": ROLES,
                "user_prefix": USER_PREFIX,
                "team_prefix": TEAM_PREFIX,
                "who": who_can_see(channel, teams),
                "errors": (errors or FormErrors()).by_field,
                "values": values or {},
                "display_name_max": DISPLAY_NAME_MAX,
                "done": DONE.get(request.query_params.get("done", "")),
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
        }

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
            {"nav": "channels", "flows": self._flows(), "meta_connected": meta_connected},
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
            REASONS.get(reason, REASONS["oauth_error"]),
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
                "done": DONE.get(request.query_params.get("done", "")),
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
    ) -> Response:
        return self.render(
            request,
            "team.html",
            {
                "nav": "teams",
                "team": team,
                "errors": errors or {},
                "done": DONE.get(request.query_params.get("done", "")),
            },
            status,
            principal,
        )

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
            return await self._team_page(request, principal, team, {"user_id": "Enter the user's id."}, 422)
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
        who, wait = whatsapp.waiting_for(onboarding)
        return self.render(
            request,
            "whatsapp.html",
            {
                "nav": "whatsapp",
                "onboarding": onboarding,
                "steps": whatsapp.steps(onboarding),
                "who": who,
                "wait": wait,
                "actions": dict(whatsapp.ACTIONS.get(onboarding.step, ())),
                "clock": whatsapp.code_clock(onboarding, rules, self.clock()) if rules else None,
                "errors": errors or {},
                "values": values or {},
                "done": DONE.get(request.query_params.get("done", "")),
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
            return self.error(request, 404, "Not found", "There is no such step.", principal)
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
            message = in_words(exc)
            if "attempts_left" in exc.details:
                message += f" Attempts left on this code: {exc.details['attempts_left']}."
            errors = {str(exc.details.get("field") or default): message}
            onboarding = await self.service.whatsapp(principal.tenant_id, onboarding_id)
            # what was typed comes back for correction, never the code
            values = {k: one(form, k) for k in form if k not in ("code", session.CSRF_FIELD)}
            return await self._whatsapp_page(request, principal, onboarding, errors, values, 422)
        return self.redirect(f"/whatsapp/{seg(onboarding_id)}?done={action}")

    async def not_found(self, request: Request) -> Response:
        return self.error(request, 404, "Not found", "There is no such page in the console.")


def _form_field(exc: DomainError) -> str:
    """The form field of a domain error's field (the form asks for minutes, the domain for seconds)."""
    name = str(exc.details.get("field") or "settings")
    return name.removesuffix("_s") + "_min" if name.startswith("auto_resolve_") else name


def create_console(
    service: OnboardingService,
    verifier: TokenVerifier,
    settings: OnboardingSettings,
    clock: Callable[[], datetime],
) -> Starlette:
    """The console app; bootstrap mounts it at ``/console``."""
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.globals["_"] = _
    # the login-state cookie is sealed with onboarding's current encryption key (the vault's)
    logins = LoginStates(TokenVault(parse_keys(settings.encryption_keys.get_secret_value())))
    console = Console(service, verifier, settings, clock, templates, logins)

    def guarded(page: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                return await page(request)
            except DomainError as exc:
                principal = await console.signed_in(request)
                if exc.status == 404:
                    return console.error(
                        request, 404, "Not found", exc.message.capitalize() + ".", principal, reason=exc.code
                    )
                return console.error(
                    request, exc.status, "Not done", in_words(exc), principal, reason=exc.code
                )
            except ProviderError as exc:
                principal = await console.signed_in(request)
                return console.error(
                    request,
                    502,
                    "The provider refused",
                    f"{exc.provider} refused the request ({exc.kind.value}).",
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
        Route("/teams/{team_id}/delete", guarded(console.delete_team), methods=post),
        Route("/whatsapp", guarded(console.whatsapp_home), methods=get),
        Route("/whatsapp", guarded(console.whatsapp_start), methods=post),
        Route("/whatsapp/{onboarding_id}", guarded(console.whatsapp_page), methods=get),
        Route("/whatsapp/{onboarding_id}/{action}", guarded(console.whatsapp_step), methods=post),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
        # any method: a form posted to an unknown page gets the console's 404 page, not a bare 405
        Route("/{path:path}", guarded(console.not_found), methods=["GET", "HEAD", "POST"]),
    ]
    return Starlette(routes=routes)
