"""Bearer JWT authentication for Parley's HTTP APIs.

Tokens carry ``sub`` (the user id), ``tenant_id`` and ``roles`` (``admin`` for a tenant's
administrators, ``operator`` for the platform operator who records the provider-side steps of an
onboarding), and may carry ``scope`` (space-separated, RFC 9068): ``parley:automation`` marks a
service principal (a bot or integration) that may send automated replies; a person's token never
carries it. Development signs them with an HS256 secret; production verifies them against a JWKS
URL. Every read and write is scoped to the token's tenant.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from pydantic import Field, SecretStr, model_validator

from parley_shared.logging import get_logger
from parley_shared.settings import ServiceSettings

log = get_logger(__name__)


class ApiSettings(ServiceSettings):
    """Settings of a process that serves an authenticated API."""

    jwt_hs256_secret: SecretStr | None = Field(default=None, description="Development signing secret.")
    jwt_jwks_url: str | None = Field(default=None, description="Production: where the signing keys are.")
    jwt_audience: str | None = Field(default=None, description="Required with a JWKS URL.")
    jwt_issuer: str | None = Field(default=None, description="Required with a JWKS URL.")
    jwt_jwks_cache_s: float = Field(
        default=300.0, gt=0, description="How long fetched signing keys are used before a refetch."
    )
    jwt_jwks_min_refetch_s: float = Field(
        default=30.0,
        ge=0,
        description="A token naming an unknown key id refetches the keys at most once per this many seconds.",
    )

    @model_validator(mode="after")
    def _one_key_source(self) -> ApiSettings:
        if self.jwt_hs256_secret is None and self.jwt_jwks_url is None:
            raise ValueError("set PARLEY_JWT_HS256_SECRET (development) or PARLEY_JWT_JWKS_URL (production)")
        if self.jwt_jwks_url is not None:
            missing = [
                name
                for name, value in (
                    ("PARLEY_JWT_AUDIENCE", self.jwt_audience),
                    ("PARLEY_JWT_ISSUER", self.jwt_issuer),
                )
                if not value
            ]
            if missing:
                raise ValueError(
                    f"PARLEY_JWT_JWKS_URL needs {' and '.join(missing)}: tokens are checked against both"
                )
        if self.jwt_hs256_secret is not None and len(self.jwt_hs256_secret.get_secret_value()) < 32:
            raise ValueError("PARLEY_JWT_HS256_SECRET must be at least 32 characters (RFC 7518 3.2)")
        return self


AUTOMATION_SCOPE = "parley:automation"
"""The scope of a service principal: automated replies need it (docs/security.md)."""
OPERATOR_ROLE = "operator"
"""The platform operator's role: provider-side onboarding steps need it, a tenant admin lacks it."""


class Unauthorized(Exception):
    """No valid bearer token."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as their token says."""

    user_id: str
    tenant_id: str
    roles: frozenset[str]
    scopes: frozenset[str] = frozenset()

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    @property
    def is_operator(self) -> bool:
        """The platform operator (not a tenant admin): records steps only Meta or the platform can."""
        return OPERATOR_ROLE in self.roles

    @property
    def is_automation(self) -> bool:
        """A service principal that may send automated replies; a person's token lacks the scope."""
        return AUTOMATION_SCOPE in self.scopes


ASYMMETRIC = frozenset({"RS256", "ES256", "EdDSA"})


class JwksKeys:
    """The signing keys at a JWKS URL, fetched without blocking the event loop and cached.

    A known key id is answered from the cache at once, even when the keys are older than
    ``cache_s``: stale keys are refreshed by a background fetch (the old keys stay in use until
    it succeeds, and if it fails), so no request waits for the identity provider because the
    cache aged. A request waits only when it needs a fetch to be answered at all: the first one
    (no keys yet) and a token naming a key id the cache lacks; such a key id refetches at most
    once per ``min_refetch_s``, so forged key ids cannot make Parley hammer the identity
    provider, and until then such a token is refused. At most one fetch is in flight: every
    waiter and every background refresh shares it. Each fetch has its own short-lived client:
    fetches are rare, and nothing is left open.
    """

    def __init__(
        self,
        url: str,
        cache_s: float = 300.0,
        min_refetch_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        timeout_s: float = 5.0,
    ) -> None:
        self.url = url
        self.cache_s = cache_s
        self.min_refetch_s = min_refetch_s
        self.clock = clock
        self.timeout_s = timeout_s
        self.fetches = 0
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._fetching: asyncio.Task[None] | None = None

    async def key(self, kid: str) -> jwt.PyJWK | None:
        if self._fetching is not None and self._fetching.get_loop() is not asyncio.get_running_loop():
            self._fetching = None  # left behind by an event loop that is gone (tests run several)
        now = self.clock()
        known = self._keys.get(kid)
        if known is not None:
            if self._fetched_at is None or now - self._fetched_at >= self.cache_s:
                self._start_fetch(now)  # refresh in the background; answer from the cache now
            return known
        if self._fetching is None:
            may_refetch = self._fetched_at is None or now - self._fetched_at >= self.min_refetch_s
            if not may_refetch:
                return None
            self._start_fetch(now)
        await self.wait_for_fetch()
        return self._keys.get(kid)

    async def wait_for_fetch(self) -> None:
        """Wait for the fetch in flight, if any (shared: one caller's cancellation stops no one)."""
        fetching = self._fetching
        if fetching is not None:
            await asyncio.shield(fetching)

    def _start_fetch(self, now: float) -> None:
        if self._fetching is not None:
            return  # one fetch at a time: this one is shared
        self.fetches += 1
        self._fetched_at = now  # a failed fetch also waits for the next interval
        self._fetching = asyncio.get_running_loop().create_task(self._fetch())
        self._fetching.add_done_callback(self._fetched)

    def _fetched(self, task: asyncio.Task[None]) -> None:
        self._fetching = None
        if not task.cancelled() and task.exception() is not None:
            log.warning("jwks_fetch_failed", url=self.url, error=repr(task.exception()))

    async def _fetch(self) -> None:
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s) as client:
                response = await client.get(self.url)
                response.raise_for_status()
                document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("jwks_fetch_failed", url=self.url, error=type(exc).__name__)
            return  # keep the keys we have
        entries = document.get("keys") if isinstance(document, dict) else None
        keys: dict[str, jwt.PyJWK] = {}
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict):
                continue
            try:
                key = jwt.PyJWK(entry)
            except (jwt.PyJWTError, TypeError, ValueError):
                continue  # a key of a type or algorithm Parley does not use
            if isinstance(entry.get("kid"), str) and key.algorithm_name in ASYMMETRIC:
                keys[entry["kid"]] = key
        if keys:
            self._keys = keys


class TokenVerifier:
    """Checks signature, expiry, audience and issuer, then reads Parley's claims."""

    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self.jwks = (
            JwksKeys(settings.jwt_jwks_url, settings.jwt_jwks_cache_s, settings.jwt_jwks_min_refetch_s)
            if settings.jwt_jwks_url
            else None
        )

    async def _key(self, token: str) -> tuple[Any, list[str]]:
        if self.jwks is not None:
            kid = jwt.get_unverified_header(token).get("kid")
            if not isinstance(kid, str):
                raise jwt.InvalidTokenError("the token names no key id")
            key = await self.jwks.key(kid)
            if key is None:
                raise jwt.InvalidTokenError("unknown key id")
            return key.key, [key.algorithm_name]
        assert self.settings.jwt_hs256_secret is not None
        return self.settings.jwt_hs256_secret.get_secret_value(), ["HS256"]

    async def verify(self, authorization: str | None) -> Principal:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise Unauthorized("a bearer token is required")
        token = authorization.split(" ", 1)[1].strip()
        try:
            key, algorithms = await self._key(token)
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self.settings.jwt_audience,
                issuer=self.settings.jwt_issuer,
                options={"require": ["sub", "exp"], "verify_aud": self.settings.jwt_audience is not None},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {type(exc).__name__}") from exc
        tenant = claims.get("tenant_id")
        if not isinstance(tenant, str) or not tenant:
            raise Unauthorized("the token has no tenant_id")
        roles = claims.get("roles") or []
        if not isinstance(roles, list):
            raise Unauthorized("roles must be a list")
        scope = claims.get("scope") or ""
        if not isinstance(scope, str):
            raise Unauthorized("scope must be a space-separated string")
        return Principal(
            user_id=str(claims["sub"]),
            tenant_id=tenant,
            roles=frozenset(map(str, roles)),
            scopes=frozenset(scope.split()),
        )


def issue_dev_token(
    secret: str,
    user_id: str,
    tenant_id: str,
    roles: list[str],
    ttl_s: int = 3600,
    scopes: list[str] | None = None,
) -> str:
    """An HS256 token for development and tests (never used by the services themselves)."""
    import time

    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": user_id,
        "tenant_id": tenant_id,
        "roles": roles,
        "iat": now,
        "exp": now + ttl_s,
    }
    if scopes:
        claims["scope"] = " ".join(scopes)
    return jwt.encode(claims, secret, algorithm="HS256")
