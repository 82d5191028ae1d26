"""Add Channel and reconnect: the OAuth ``state`` (and X's PKCE verifier) between the redirect to
a provider's login page and the provider's redirect back.

Starting a login puts one encrypted cookie in the browser (AES-GCM with onboarding's current
encryption key, ``parley_shared.vault``): the flow, a random ``state``, the verifier of X's
``code_challenge``, the channel being reconnected, the signed-in administrator and a hash of
their session cookie, and when it ends. The callback takes the provider's ``state`` only if it
equals the cookie's, for the same flow, administrator and session, before the end; the cookie is
deleted whatever the answer, so a state works once. A page of another site can therefore
neither start a connect in an administrator's name nor finish one with its own code (OAuth's
CSRF). The cookie is ``SameSite=Lax``: the provider's redirect back is a top-level navigation
from another site, which a ``Strict`` cookie would not accompany.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import asdict, dataclass
from typing import Literal

from parley_shared.vault import TokenVault, VaultError
from starlette.requests import Request
from starlette.responses import Response

from parley_onboarding.console import session

Flow = Literal["facebook", "instagram", "x", "whatsapp"]
FLOWS: tuple[Flow, ...] = ("facebook", "instagram", "x", "whatsapp")
STATE_COOKIE = "parley_console_oauth"
STATE_PATH = f"{session.PATH}/connect"
STATE_TTL_S = 900
"""How long a started login may take: the provider's page, a password, a choice of Pages."""
_CONTEXT = "parley-console-oauth-state"

StateProblem = Literal["oauth_state_missing", "oauth_state_mismatch", "oauth_state_expired"]


@dataclass(frozen=True)
class LoginState:
    """What the browser carries through one provider login (encrypted: never readable by it)."""

    flow: str
    state: str
    tenant_id: str
    user_id: str
    session: str
    expires_at: float
    verifier: str | None = None
    channel_id: str | None = None


def session_hash(request: Request) -> str:
    """The signed-in session the login belongs to (a hash: the token is never copied)."""
    token = request.cookies.get(session.SESSION_COOKIE, "")
    return hashlib.sha256(token.encode()).hexdigest()[:32]


class LoginStates:
    """Seals and opens the login-state cookie."""

    def __init__(self, vault: TokenVault) -> None:
        self._vault = vault

    def seal(self, login: LoginState) -> str:
        sealed = self._vault.encrypt(json.dumps(asdict(login), separators=(",", ":")), _CONTEXT)
        return base64.urlsafe_b64encode(json.dumps(sealed).encode()).decode()

    def open(self, value: str) -> LoginState | None:
        try:
            sealed = json.loads(base64.urlsafe_b64decode(value.encode()))
            return LoginState(**json.loads(self._vault.decrypt(sealed, _CONTEXT)))
        except (ValueError, TypeError, VaultError, AttributeError):
            return None

    def start(
        self,
        request: Request,
        response: Response,
        login: LoginState,
    ) -> None:
        response.set_cookie(
            STATE_COOKIE,
            self.seal(login),
            max_age=STATE_TTL_S,
            path=STATE_PATH,
            httponly=True,
            samesite="lax",
            secure=session.secure(request),
        )

    @staticmethod
    def forget(request: Request, response: Response) -> None:
        response.delete_cookie(
            STATE_COOKIE, path=STATE_PATH, httponly=True, samesite="lax", secure=session.secure(request)
        )

    def check(
        self, request: Request, flow: str, tenant_id: str, user_id: str, now: float
    ) -> LoginState | StateProblem:
        """The login this callback finishes, or why it is refused."""
        raw = request.cookies.get(STATE_COOKIE)
        login = self.open(raw) if raw else None
        if login is None:
            return "oauth_state_missing"
        given = request.query_params.get("state", "")
        if (
            not hmac.compare_digest(login.state.encode(), given.encode())
            or login.flow != flow
            or (login.tenant_id, login.user_id) != (tenant_id, user_id)
            or not hmac.compare_digest(login.session, session_hash(request))
        ):
            return "oauth_state_mismatch"
        if now >= login.expires_at:
            return "oauth_state_expired"
        return login


def new_state() -> str:
    return secrets.token_urlsafe(32)
