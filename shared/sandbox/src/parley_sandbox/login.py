"""The providers' login pages as a browser sees them: Facebook Login's dialog, Business Login for
Instagram's authorization window and X's authorization page.

Each is plain HTML (forms, no script) that a person, or a browser test, fills in: log in as one of
the sandbox's test users, see the permissions the app asks for, choose (Facebook) the Instagram
accounts and then the Pages to grant, and allow or cancel. The page then redirects to the app's
``redirect_uri`` with ``code`` and ``state``, or with ``error=access_denied`` and ``state``, as
the providers do. A code is good once, for ten minutes, and only with the same ``redirect_uri``
(and, for X, the verifier of the ``code_challenge``): the token endpoints that trade it
(``meta.py``'s ``oauth_access_token``, ``instagram.py``'s code exchange, ``x.py``'s token
endpoint) check all of it.

Facebook remembers what a person granted the app: a returning person is offered "Continue as
<name>" (the same Pages again) or "Edit settings" (choose again, for example more Pages), which
is what ``/me/accounts`` and ``/me/permissions`` answer afterwards.

The same dialog opened with the configuration of WhatsApp Embedded Signup
(``SandboxState.whatsapp_signup_config_id``) is the signup window: the business names its
portfolio, WhatsApp Business Account, number and display name and grants the two WhatsApp
permissions; what it creates is what ``POST /_sandbox/whatsapp/signups`` creates (a verified,
unregistered number, a business token, a 30-second code traded without a ``redirect_uri``). Meta's
window hands its result to the JavaScript SDK of the page that opened it (``FB.login``'s callback
gets the code, a ``message`` event the WABA and number ids); a page without script receives
neither, so this window, and only this one, carries the three back to ``redirect_uri`` as query
parameters (``code``, ``waba_id``, ``phone_number_id``, ``state``), where a script on the page
would have put them together.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from html import escape
from typing import Literal
from urllib.parse import parse_qs, urlencode

from parley_providers.meta.instagram import DEFAULT_INSTAGRAM_LOGIN_SCOPES
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from parley_sandbox.state import (
    CODE_TTL_S,
    DEFAULT_META_PERMISSIONS,
    DEFAULT_X_SCOPES,
    AuthCode,
    MetaUser,
    SandboxState,
)
from parley_sandbox.whatsapp import SIGNUP_SCOPES, NumberOfAnotherWaba, finish_signup

_STYLE = (
    "body{font-family:sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}"
    "fieldset{margin:1rem 0}button{margin-right:.5rem}"
)


def _scopes(raw: str | None, default: Iterable[str]) -> list[str]:
    """A scope parameter, comma- or space-separated (Meta takes both; X separates by spaces)."""
    if not raw:
        return list(default)
    return [s for s in raw.replace(",", " ").split() if s]


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body><main><h1>{escape(title)}</h1>{body}</main></body></html>"
    )
    return HTMLResponse(html, status_code=status)


def _hidden(fields: dict[str, str]) -> str:
    return "".join(f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in fields.items())


def _checkboxes(name: str, legend: str, options: list[tuple[str, str]], checked: set[str]) -> str:
    if not options:
        return f"<fieldset><legend>{escape(legend)}</legend><p>None.</p></fieldset>"
    rows = "".join(
        f'<div><input type="checkbox" id="{escape(name)}-{escape(value)}" name="{escape(name)}" '
        f'value="{escape(value)}"{" checked" if value in checked else ""}>'
        f'<label for="{escape(name)}-{escape(value)}">{escape(label)}</label></div>'
        for value, label in options
    )
    return f"<fieldset><legend>{escape(legend)}</legend>{rows}</fieldset>"


def _radios(name: str, legend: str, options: list[tuple[str, str]]) -> str:
    rows = "".join(
        f'<div><input type="radio" id="{escape(name)}-{escape(value)}" name="{escape(name)}" '
        f'value="{escape(value)}"{" checked" if i == 0 else ""}>'
        f'<label for="{escape(name)}-{escape(value)}">{escape(label)}</label></div>'
        for i, (value, label) in enumerate(options)
    )
    return f"<fieldset><legend>{escape(legend)}</legend>{rows}</fieldset>"


_SIGNUP_FIELDS = {
    "business_id": "Business portfolio id",
    "waba_id": "WhatsApp Business Account id",
    "phone_number_id": "Phone number id",
    "display_phone_number": "Phone number",
    "verified_name": "Display name",
}


def _new_id() -> str:
    """A Meta-sized numeric id (15 digits) for a portfolio, account or number the window creates."""
    return f"1{secrets.randbelow(10**14):014d}"


def _back_to(redirect_uri: str, params: dict[str, str]) -> Response:
    """The provider's redirect to the app (302, as the dialogs answer)."""
    separator = "&" if "?" in redirect_uri else "?"
    return RedirectResponse(f"{redirect_uri}{separator}{urlencode(params)}", status_code=302)


class LoginPages:
    """The three providers' login pages over the sandbox's state."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def _code(
        self,
        provider: Literal["meta", "instagram", "x"],
        user_id: str,
        redirect_uri: str,
        challenge: str | None = None,
        method: str = "S256",
    ) -> str:
        code = AuthCode(
            code=("AQ" if provider == "meta" else "") + secrets.token_urlsafe(48),
            provider=provider,
            user_id=user_id,
            expires_at=self.state.now() + CODE_TTL_S,
            redirect_uri=redirect_uri,
            code_challenge=challenge,
            code_challenge_method=method,
        )
        self.state.codes[code.code] = code
        return code.code

    @staticmethod
    async def _form(request: Request) -> dict[str, list[str]]:
        if request.method != "POST":
            return {}
        return parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)

    # ---- Facebook Login: /{version}/dialog/oauth

    async def facebook(self, request: Request) -> Response:
        state, query = self.state, request.query_params
        if query.get("client_id") != state.meta_app_id:
            return _page("Facebook Login", "<p>Invalid App ID: the app is not known.</p>", 400)
        redirect_uri = query.get("redirect_uri") or ""
        if not redirect_uri:
            return _page("Facebook Login", "<p>The redirect_uri parameter is missing.</p>", 400)
        if query.get("config_id") and query.get("config_id") == state.whatsapp_signup_config_id:
            return await self._whatsapp_signup(request, redirect_uri, query.get("state") or "")
        # a Login for Business configuration (config_id) stands for the permissions it was made with:
        # the sandbox plays it as Parley's Page and Instagram permissions
        requested = _scopes(query.get("scope"), DEFAULT_META_PERMISSIONS)
        back = {"state": query.get("state") or ""}
        form = await self._form(request)
        step = (form.get("step") or ["start"])[0]
        user = state.meta_users.get((form.get("user") or [""])[0])
        if step == "cancel":
            return _back_to(
                redirect_uri,
                {
                    "error": "access_denied",
                    "error_code": "200",
                    "error_description": "Permissions error",
                    "error_reason": "user_denied",
                    **back,
                },
            )
        if user is None:
            users = [(u.id, f"{u.name} ({u.id})") for u in state.meta_users.values()]
            if not users:
                return _page("Log in to Facebook", "<p>The sandbox has no test users yet.</p>", 404)
            body = (
                f'<form method="post">{_radios("user", "Log in as this test user", users)}'
                f'{_hidden({"step": "login"})}<button type="submit">Log in</button></form>'
            )
            return _page("Log in to Facebook", body)
        if step == "grant":
            self._grant(user, requested, form)
            return _back_to(redirect_uri, {"code": self._code("meta", user.id, redirect_uri), **back})
        if step == "continue" and user.granted_page_ids is not None:
            return _back_to(redirect_uri, {"code": self._code("meta", user.id, redirect_uri), **back})
        if step == "login" and user.granted_page_ids is not None:
            names = [state.pages[p].name for p in user.granted_page_ids if p in state.pages]
            body = (
                f"<p>You previously allowed the app to use: {escape(', '.join(names) or 'no Pages')}.</p>"
                f'<form method="post">{_hidden({"user": user.id})}'
                f'<button type="submit" name="step" value="continue">Continue as {escape(user.name)}</button>'
                '<button type="submit" name="step" value="edit">Edit settings</button>'
                '<button type="submit" name="step" value="cancel">Cancel</button></form>'
            )
            return _page(f"Reconnect to the app as {user.name}", body)
        return self._choose(user, requested)

    def _choose(self, user: MetaUser, requested: list[str]) -> Response:
        pages = [self.state.pages[p] for p in user.page_ids if p in self.state.pages]
        instagram = [(p.instagram_id, f"@{p.instagram_username}") for p in pages if p.instagram_id]
        granted_ig = set(user.granted_instagram_ids or [i for i, _ in instagram])
        granted_pages = set(user.granted_page_ids if user.granted_page_ids is not None else user.page_ids)
        # what the person declined before stays unticked; everything else asked for is ticked
        ticked = {p for p in requested if p not in user.declined}
        body = (
            f'<form method="post">{_hidden({"user": user.id})}'
            + _checkboxes("instagram", "Choose the Instagram accounts", instagram, granted_ig)
            + _checkboxes("page", "Choose the Pages", [(p.id, p.name) for p in pages], granted_pages)
            + _checkboxes("permission", "Review what the app may do", [(p, p) for p in requested], ticked)
            + '<button type="submit" name="step" value="grant">Save</button>'
            '<button type="submit" name="step" value="cancel">Cancel</button></form>'
        )
        return _page(f"Choose what the app may use, {user.name}", body)

    def _grant(self, user: MetaUser, requested: list[str], form: dict[str, list[str]]) -> None:
        """What Facebook stores for the person and the app: the permissions, Pages and profiles."""
        allowed = [p for p in form.get("permission", []) if p in requested]
        user.granted = sorted({*(p for p in user.granted if p not in requested), *allowed})
        user.declined = sorted(
            {*(p for p in user.declined if p not in requested), *set(requested) - set(allowed)}
        )
        user.granted_page_ids = [p for p in user.page_ids if p in form.get("page", [])]
        linked = {self.state.pages[p].instagram_id for p in user.page_ids if p in self.state.pages}
        user.granted_instagram_ids = [i for i in form.get("instagram", []) if i in linked]

    # ---- WhatsApp Embedded Signup: the Login dialog with the signup's configuration

    async def _whatsapp_signup(self, request: Request, redirect_uri: str, state: str) -> Response:
        form = await self._form(request)
        step = (form.get("step") or ["start"])[0]
        if step == "cancel":
            return _back_to(
                redirect_uri,
                {"error": "access_denied", "error_reason": "user_denied", "state": state},
            )
        values = {k: (form.get(k) or [""])[0].strip() for k in _SIGNUP_FIELDS}
        problem = ""
        if step == "finish":
            if not all(values[k].isascii() and values[k].isdigit() for k in ("waba_id", "phone_number_id")):
                problem = "The WhatsApp Business Account id and the phone number id are numbers."
            else:
                try:
                    code = finish_signup(
                        self.state,
                        values["waba_id"],
                        values["phone_number_id"],
                        scopes=[p for p in form.get("permission", []) if p in SIGNUP_SCOPES],
                        display_phone_number=values["display_phone_number"] or None,
                        verified_name=values["verified_name"] or None,
                        owner_business_id=values["business_id"] or None,
                    )
                except NumberOfAnotherWaba:
                    problem = "That phone number belongs to another WhatsApp Business Account."
                else:
                    # where Meta's SDK would hand the page the code and a message with the two ids
                    return _back_to(
                        redirect_uri,
                        {
                            "code": code.code,
                            "waba_id": values["waba_id"],
                            "phone_number_id": values["phone_number_id"],
                            "state": state,
                        },
                    )
        defaults = {
            "business_id": _new_id(),
            "waba_id": _new_id(),
            "phone_number_id": _new_id(),
            "display_phone_number": "+1 555 0100",
            "verified_name": "Parley sandbox business",
        }
        shown = {k: values[k] or defaults[k] for k in _SIGNUP_FIELDS}
        rows = "".join(
            f'<div><label for="{k}">{escape(label)}</label> '
            f'<input id="{k}" name="{k}" value="{escape(shown[k])}" required></div>'
            for k, label in _SIGNUP_FIELDS.items()
        )
        body = (
            (f'<p role="alert">{escape(problem)}</p>' if problem else "")
            + f"<p>{escape(self.state.app_name)} asks to manage your WhatsApp Business Account "
            "and to send messages from its number.</p>"
            + '<form method="post"><fieldset><legend>Your business on WhatsApp</legend>'
            + rows
            + "</fieldset>"
            + _checkboxes(
                "permission",
                "Review what the app may do",
                [(p, p) for p in SIGNUP_SCOPES],
                set(SIGNUP_SCOPES),
            )
            + '<button type="submit" name="step" value="finish">Finish</button>'
            '<button type="submit" name="step" value="cancel">Cancel</button></form>'
        )
        return _page("Connect your business to WhatsApp", body, 409 if problem and step == "finish" else 200)

    # ---- Business Login for Instagram: www.instagram.com/oauth/authorize

    async def instagram(self, request: Request) -> Response:
        state, query = self.state, request.query_params
        if query.get("client_id") != state.instagram_app_id:
            return _page("Instagram", "<p>Invalid app ID.</p>", 400)
        redirect_uri = query.get("redirect_uri") or ""
        if not redirect_uri or query.get("response_type") != "code":
            return _page("Instagram", "<p>redirect_uri and response_type=code are required.</p>", 400)
        requested = _scopes(query.get("scope"), DEFAULT_INSTAGRAM_LOGIN_SCOPES)
        back = {"state": query.get("state") or ""}
        form = await self._form(request)
        step = (form.get("step") or ["start"])[0]
        if step == "cancel":
            return _back_to(
                redirect_uri,
                {
                    "error": "access_denied",
                    "error_reason": "user_denied",
                    "error_description": "The user denied your request.",
                    **back,
                },
            )
        account = state.instagram_accounts.get((form.get("account") or [""])[0])
        if step == "grant" and account is not None:
            account.granted = [p for p in form.get("permission", []) if p in requested]
            return _back_to(redirect_uri, {"code": self._code("instagram", account.id, redirect_uri), **back})
        accounts = [(a.id, f"@{a.username}") for a in state.instagram_accounts.values()]
        if not accounts:
            return _page("Log in to Instagram", "<p>The sandbox has no professional accounts yet.</p>", 404)
        body = (
            '<form method="post">'
            + _radios("account", "Log in as this professional account", accounts)
            + _checkboxes("permission", "Allow the app to", [(p, p) for p in requested], set(requested))
            + '<button type="submit" name="step" value="grant">Allow</button>'
            '<button type="submit" name="step" value="cancel">Cancel</button></form>'
        )
        return _page("Log in to Instagram", body)

    # ---- X: x.com/i/oauth2/authorize

    async def x(self, request: Request) -> Response:
        state, query = self.state, request.query_params
        if query.get("client_id") != state.x_client_id:
            return _page("X", "<p>Something went wrong: the app is not known.</p>", 400)
        redirect_uri = query.get("redirect_uri") or ""
        challenge = query.get("code_challenge") or ""
        method = query.get("code_challenge_method") or "plain"
        if not redirect_uri or query.get("response_type") != "code" or not challenge:
            return _page("X", "<p>redirect_uri, response_type=code and code_challenge are required.</p>", 400)
        if method.upper() not in ("S256", "PLAIN"):
            return _page("X", "<p>code_challenge_method must be S256 or plain.</p>", 400)
        requested = _scopes(query.get("scope"), DEFAULT_X_SCOPES)
        back = {"state": query.get("state") or ""}
        form = await self._form(request)
        step = (form.get("step") or ["start"])[0]
        if step == "cancel":
            return _back_to(redirect_uri, {"error": "access_denied", **back})
        account = state.x_users.get((form.get("user") or [""])[0])
        if step == "grant" and account is not None:
            account.scopes = list(requested)  # X grants what the app asks for, or nothing
            code = self._code("x", account.id, redirect_uri, challenge, method)
            return _back_to(redirect_uri, {"code": code, **back})
        users = [(u.id, f"@{u.username}") for u in state.x_users.values()]
        if not users:
            return _page("Log in to X", "<p>The sandbox has no X users yet.</p>", 404)
        scopes = "".join(f"<li>{escape(s)}</li>" for s in requested)
        body = (
            '<form method="post">'
            + _radios("user", "Log in as this X user", users)
            + f"<p>The app will be able to:</p><ul>{scopes}</ul>"
            + '<button type="submit" name="step" value="grant">Authorize app</button>'
            '<button type="submit" name="step" value="cancel">Cancel</button></form>'
        )
        return _page("Authorize the app to access your X account", body)
