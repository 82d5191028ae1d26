"""Bearer JWT authentication for Parley's HTTP APIs.

Tokens carry ``sub`` (the user id), ``tenant_id`` and ``roles`` (``admin`` for a tenant's
administrators, ``operator`` for the platform operator who records the provider-side steps of an
onboarding), and may carry ``scope`` (space-separated, RFC 9068): ``parley:automation`` marks a
service principal (a bot or integration) that may send automated replies; a person's token never
carries it. Development signs them with an HS256 secret; production verifies them against a JWKS
URL. Every read and write is scoped to the token's tenant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt
from pydantic import Field, SecretStr, model_validator

from parley_shared.settings import ServiceSettings


class ApiSettings(ServiceSettings):
    """Settings of a process that serves an authenticated API."""

    jwt_hs256_secret: SecretStr | None = Field(default=None, description="Development signing secret.")
    jwt_jwks_url: str | None = Field(default=None, description="Production: where the signing keys are.")
    jwt_audience: str | None = None
    jwt_issuer: str | None = None

    @model_validator(mode="after")
    def _one_key_source(self) -> ApiSettings:
        if self.jwt_hs256_secret is None and self.jwt_jwks_url is None:
            raise ValueError("set PARLEY_JWT_HS256_SECRET (development) or PARLEY_JWT_JWKS_URL (production)")
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


class TokenVerifier:
    """Checks signature, expiry, audience and issuer, then reads Parley's claims."""

    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self._jwks = jwt.PyJWKClient(settings.jwt_jwks_url) if settings.jwt_jwks_url else None

    def _key(self, token: str) -> tuple[Any, list[str]]:
        if self._jwks is not None:
            return self._jwks.get_signing_key_from_jwt(token).key, ["RS256", "ES256", "EdDSA"]
        assert self.settings.jwt_hs256_secret is not None
        return self.settings.jwt_hs256_secret.get_secret_value(), ["HS256"]

    def verify(self, authorization: str | None) -> Principal:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise Unauthorized("a bearer token is required")
        token = authorization.split(" ", 1)[1].strip()
        try:
            key, algorithms = self._key(token)
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
    claims: dict[str, Any] = {"sub": user_id, "tenant_id": tenant_id, "roles": roles, "iat": now, "exp": now + ttl_s}
    if scopes:
        claims["scope"] = " ".join(scopes)
    return jwt.encode(claims, secret, algorithm="HS256")
