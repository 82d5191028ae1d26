"""The console's cookies: the bearer token of the signed-in admin and the CSRF token of the browser.

The session cookie holds the same bearer token the APIs take (HttpOnly, SameSite=Strict, Secure
unless the console is reached on the loopback host), so signing in stores nothing on the server.
Every form carries the CSRF token, which must equal the CSRF cookie (double submit): a page of
another site can neither read the cookie nor, with SameSite=Strict, send it.
"""

from __future__ import annotations

import hmac
import secrets

from starlette.requests import Request
from starlette.responses import Response

SESSION_COOKIE = "parley_console"
CSRF_COOKIE = "parley_console_csrf"
CSRF_FIELD = "csrf_token"
LANGUAGE_COOKIE = "parley_console_lang"
PATH = "/console"
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def secure(request: Request) -> bool:
    """Secure cookies everywhere but on the loopback host (plain HTTP during development)."""
    return request.url.hostname not in LOOPBACK


def csrf_token(request: Request) -> str:
    """The browser's CSRF token: its cookie's, or a new one (``remember_csrf`` sets it)."""
    token = request.cookies.get(CSRF_COOKIE)
    if token and len(token) >= 32:
        return token
    cached = request.scope.setdefault("parley_console_new_csrf", secrets.token_urlsafe(32))
    return str(cached)


def remember_csrf(request: Request, response: Response) -> None:
    """Set the CSRF cookie when this response handed out a new token."""
    new = request.scope.get("parley_console_new_csrf")
    if new:
        response.set_cookie(
            CSRF_COOKIE, new, path=PATH, httponly=True, samesite="strict", secure=secure(request)
        )


def csrf_ok(request: Request, submitted: str | None) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie or not submitted:
        return False
    return hmac.compare_digest(cookie.encode(), submitted.encode())


def remember_language(request: Request, response: Response, language: str) -> None:
    """The language switch's choice, for a year (it is no secret: scripts may read it)."""
    response.set_cookie(
        LANGUAGE_COOKIE,
        language,
        max_age=365 * 24 * 3600,
        path=PATH,
        samesite="strict",
        secure=secure(request),
    )


def sign_in(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE, token, path=PATH, httponly=True, samesite="strict", secure=secure(request)
    )


def sign_out(request: Request, response: Response) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path=PATH, httponly=True, samesite="strict", secure=secure(request)
    )
