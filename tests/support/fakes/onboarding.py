"""In-memory adapters of onboarding's ports: its store (``OnboardingStore``) and one connector per
connect flow (``PageConnector``, ``AccountConnector``, ``NumberConnector`` of parley_providers.base).

The store keeps the Mongo adapter's rules: a version is saved once (a second save of it raises
``VersionConflict``, as the version claim's unique ``_id`` does), every claim keeps its first
holder, and what it hands out are copies. The connectors answer what a test configures, record
every call in ``calls`` and raise what ``fail`` queues. tests/unit/test_fakes.py keeps every
signature equal to the port's.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from parley_events import ChannelStatus, Provider
from parley_onboarding.adapters.stores import REFRESH_CLAIM_ATTEMPTS, AccountClaim, account_claim_id
from parley_onboarding.domain.channels import Channel
from parley_onboarding.domain.connections import PageConnection
from parley_onboarding.domain.teams import Team
from parley_onboarding.domain.whatsapp import WhatsAppOnboarding
from parley_providers import ErrorKind, ProviderError, UserToken
from parley_providers.base import (
    AuthorizedAccount,
    MessageTemplate,
    NumberRules,
    PageGrant,
    RefreshStep,
    SignedUpNumber,
    SignupRefusal,
    SubscriptionOutcome,
    TokenRefusal,
)
from parley_providers.meta.client import TokenGrants, WhatsAppPhoneNumber
from parley_providers.meta.connect import (
    DEFAULT_INSTAGRAM_PERMISSIONS,
    DEFAULT_PAGE_PERMISSIONS,
    REQUIRED_PAGE_TASKS,
    missing_page_tasks,
)
from parley_providers.meta.instagram import (
    DEFAULT_INSTAGRAM_LOGIN_SCOPES,
    LONG_LIVED_VALIDITY,
    RefreshTiming,
    refresh_timing,
)
from parley_providers.whatsapp import profile as wa_profile
from parley_providers.whatsapp import templates as wa_templates
from parley_providers.whatsapp.connect import NUMBER_RULES, SIGNUP_SCOPES, signup_refusal
from parley_providers.x.connect import refresh_step as x_refresh_step
from parley_providers.x.connect import refusal_reason as x_refusal_reason
from parley_shared.channels import CLAIMING_STATUSES
from parley_shared.mongo import VersionConflict
from parley_shared.vault import Credential


class FakeOnboardingStore:
    def __init__(self) -> None:
        self.indexed = False
        self.channels: dict[str, Channel] = {}
        self.teams: dict[str, Team] = {}
        self.onboardings: dict[str, WhatsAppOnboarding] = {}
        self.versions: set[tuple[str, int]] = set()  # (id, revision) claimed, as the commits' _ids
        self.account_claims: dict[str, AccountClaim] = {}
        self.waba_claims: dict[str, str] = {}  # WABA id -> tenant id
        self.code_attempts: dict[tuple[str, int], datetime] = {}
        self.refresh_claims: dict[tuple[str, str, int], datetime] = {}
        self.credentials: dict[str, Credential] = {}
        self.whatsapp_tokens: dict[str, str] = {}
        self.whatsapp_pins: dict[str, str] = {}
        self.connections: dict[str, PageConnection] = {}

    def _claim_version(self, doc_id: str, revision: int) -> None:
        if (doc_id, revision) in self.versions:
            raise VersionConflict(doc_id)
        self.versions.add((doc_id, revision))

    # --- channels

    async def channel(self, channel_id: str) -> Channel | None:
        return copy.deepcopy(self.channels.get(channel_id))

    async def tenant_channels(self, tenant_id: str) -> list[Channel]:
        return [copy.deepcopy(c) for c in self.channels.values() if c.tenant_id == tenant_id]

    async def save_channel(self, channel: Channel) -> None:
        self._claim_version(channel.id, channel.revision)
        self.channels[channel.id] = copy.deepcopy(channel)

    async def channels_with_status(self, statuses: Collection[ChannelStatus]) -> AsyncIterator[Channel]:
        for channel in list(self.channels.values()):
            if channel.status in statuses:
                yield copy.deepcopy(channel)

    async def channels_expiring_by(self, horizon: datetime) -> list[Channel]:
        return [
            copy.deepcopy(c)
            for c in self.channels.values()
            if c.status is ChannelStatus.ACTIVE
            and c.token_expires_at is not None
            and c.token_expires_at <= horizon
        ]

    async def channels_of_business_account(
        self, tenant_id: str, provider: Provider, business_account_id: str
    ) -> list[Channel]:
        return [
            copy.deepcopy(c)
            for c in self.channels.values()
            if (c.tenant_id, c.provider, c.business_account_id) == (tenant_id, provider, business_account_id)
        ]

    async def page_in_use(self, page_id: str) -> bool:
        return any(
            c.status in CLAIMING_STATUSES
            and (
                (c.provider is Provider.MESSENGER and c.account_id == page_id)
                or (c.provider is Provider.INSTAGRAM and c.business_account_id == page_id)
            )
            for c in self.channels.values()
        )

    async def waba_connected_elsewhere(self, waba_id: str, tenant_id: str) -> bool:
        return any(
            c.provider is Provider.WHATSAPP
            and c.business_account_id == waba_id
            and c.tenant_id != tenant_id
            and c.status is not ChannelStatus.DISCONNECTED
            for c in self.channels.values()
        )

    # --- who holds an account, a WABA

    async def claim_account(
        self, provider: Provider, account_id: str, channel_id: str, tenant_id: str, at: datetime
    ) -> tuple[bool, AccountClaim | None]:
        claim_id = account_claim_id(provider, account_id)
        holder = self.account_claims.get(claim_id)
        if holder is None:
            self.account_claims[claim_id] = AccountClaim(channel_id, tenant_id, at)
            return True, None
        return False, (None if holder.channel_id == channel_id else holder)

    async def release_account(self, provider: Provider, account_id: str, channel_id: str) -> bool:
        claim_id = account_claim_id(provider, account_id)
        holder = self.account_claims.get(claim_id)
        if holder is None or holder.channel_id != channel_id:
            return False
        del self.account_claims[claim_id]
        return True

    async def claim_waba(self, waba_id: str, tenant_id: str, onboarding_id: str, at: datetime) -> str | None:
        holder = self.waba_claims.setdefault(waba_id, tenant_id)
        return None if holder == tenant_id else holder

    async def release_waba(self, waba_id: str, tenant_id: str) -> bool:
        in_use = any(
            c.tenant_id == tenant_id
            and c.provider is Provider.WHATSAPP
            and c.business_account_id == waba_id
            and c.status is not ChannelStatus.DISCONNECTED
            for c in self.channels.values()
        )
        if in_use or self.waba_claims.get(waba_id) != tenant_id:
            return False
        del self.waba_claims[waba_id]
        return True

    # --- teams

    async def team(self, team_id: str) -> Team | None:
        return copy.deepcopy(self.teams.get(team_id))

    async def tenant_teams(self, tenant_id: str) -> list[Team]:
        return [copy.deepcopy(t) for t in self.teams.values() if t.tenant_id == tenant_id and not t.deleted]

    async def save_team(self, team: Team) -> None:
        self._claim_version(team.id, team.revision)
        self.teams[team.id] = copy.deepcopy(team)

    async def count_teams(self, tenant_id: str) -> int:
        return len(await self.tenant_teams(tenant_id))

    # --- WhatsApp onboardings

    async def onboarding(self, onboarding_id: str) -> WhatsAppOnboarding | None:
        return copy.deepcopy(self.onboardings.get(onboarding_id))

    async def onboarding_of_channel(self, channel_id: str) -> WhatsAppOnboarding | None:
        found = [o for o in self.onboardings.values() if o.channel_id == channel_id]
        return copy.deepcopy(found[0]) if found else None

    async def save_onboarding(self, onboarding: WhatsAppOnboarding) -> None:
        self._claim_version(onboarding.id, onboarding.revision)
        self.onboardings[onboarding.id] = copy.deepcopy(onboarding)

    async def claim_code_attempt(self, onboarding_id: str, numbers: range, at: datetime) -> int | None:
        for n in numbers:
            if (onboarding_id, n) not in self.code_attempts:
                self.code_attempts[(onboarding_id, n)] = at
                return n
        return None

    async def release_code_attempt(self, onboarding_id: str, n: int) -> None:
        self.code_attempts.pop((onboarding_id, n), None)

    async def highest_code_attempt(self, onboarding_id: str) -> int:
        return max((n for (oid, n) in self.code_attempts if oid == onboarding_id), default=0)

    async def claim_token_refresh(
        self, channel_id: str, grant: str, at: datetime, lease: timedelta
    ) -> int | None:
        for n in range(REFRESH_CLAIM_ATTEMPTS):
            held = self.refresh_claims.get((channel_id, grant, n))
            if held is None:
                self.refresh_claims[(channel_id, grant, n)] = at
                return n
            if held > at - lease:
                return None
        return None

    async def release_token_refresh(self, channel_id: str, grant: str, attempt: int) -> None:
        self.refresh_claims.pop((channel_id, grant, attempt), None)

    async def prune_token_refresh_claims(self, before: datetime) -> int:
        old = [key for key, at in self.refresh_claims.items() if at <= before]
        for key in old:
            del self.refresh_claims[key]
        return len(old)

    # --- secrets

    async def put_credential(self, credential: Credential) -> None:
        self.credentials[credential.channel_id] = credential

    async def replace_credential(self, credential: Credential, spent_refresh_token: str) -> bool:
        stored = self.credentials.get(credential.channel_id)
        if stored is None or stored.refresh_token != spent_refresh_token:
            return False
        self.credentials[credential.channel_id] = credential
        return True

    async def credential(self, channel_id: str) -> Credential | None:
        return self.credentials.get(channel_id)

    async def delete_credential(self, channel_id: str) -> None:
        self.credentials.pop(channel_id, None)

    async def save_whatsapp_token(self, onboarding_id: str, token: str) -> None:
        self.whatsapp_tokens[onboarding_id] = token

    async def whatsapp_token(self, onboarding_id: str) -> str | None:
        return self.whatsapp_tokens.get(onboarding_id)

    async def save_whatsapp_pin(self, onboarding_id: str, pin: str) -> None:
        self.whatsapp_pins[onboarding_id] = pin

    async def whatsapp_pin(self, onboarding_id: str) -> str | None:
        return self.whatsapp_pins.get(onboarding_id)

    async def purge_channel_secrets(self, tenant_id: str, channel_id: str, account_id: str) -> int:
        deleted = 0
        for onboarding in self.onboardings.values():
            if (onboarding.tenant_id, onboarding.channel_id) == (tenant_id, channel_id):
                for secrets in (self.whatsapp_tokens, self.whatsapp_pins):
                    deleted += int(secrets.pop(onboarding.id, None) is not None)
                for key in [k for k in self.code_attempts if k[0] == onboarding.id]:
                    del self.code_attempts[key]
        for connection in list(self.connections.values()):
            listed = {p.id for p in connection.pages} | {p.instagram_id for p in connection.pages}
            if connection.tenant_id == tenant_id and account_id in listed:
                del self.connections[connection.id]
                deleted += 1
        return deleted

    # --- started Page connections

    async def save_connection(self, connection: PageConnection) -> None:
        self.connections[connection.id] = connection

    async def connection(self, tenant_id: str, connection_id: str) -> PageConnection | None:
        connection = self.connections.get(connection_id)
        return connection if connection is not None and connection.tenant_id == tenant_id else None

    async def delete_connection(self, connection_id: str) -> None:
        self.connections.pop(connection_id, None)

    async def prune_connections(self, now: datetime, ttl: timedelta) -> int:
        expired = [
            c.id
            for c in self.connections.values()
            if (c.expires_at <= now if c.expires_at is not None else c.created_at <= now - ttl)
        ]
        for connection_id in expired:
            del self.connections[connection_id]
        return len(expired)

    async def ensure_indexes(self) -> None:
        self.indexed = True


# --- connectors -------------------------------------------------------------------------------


@dataclass
class Calls:
    """What a fake connector was asked, in order, and the failures queued for it."""

    calls: list[tuple[Any, ...]] = field(default_factory=list)
    failures: dict[str, list[BaseException]] = field(default_factory=dict)

    def fail(self, method: str, error: BaseException, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` raise ``error``."""
        self.failures.setdefault(method, []).extend([error] * times)

    def record(self, method: str, *args: Any) -> None:
        self.calls.append((method, *args))
        queued = self.failures.get(method)
        if queued:
            raise queued.pop(0)

    def made(self, method: str) -> list[tuple[Any, ...]]:
        """The arguments of every call of ``method``."""
        return [call[1:] for call in self.calls if call[0] == method]


def refused(
    provider: str, status: int, code: int | None, kind: ErrorKind, subcode: int | None = None
) -> ProviderError:
    """A provider's refusal as its package classifies it."""
    return ProviderError(provider, status, code, subcode, f"{provider} refused the call", kind)


class FakePageConnector(Calls):
    """Meta's connect flow: logins (``logins[code]``) grant what a test sets; Page tasks follow
    Meta's rule (providers/meta/connect.py); ``subscribed`` holds the Pages subscribed now."""

    required_page_tasks: tuple[str, ...] = REQUIRED_PAGE_TASKS

    def __init__(
        self,
        page_permissions: Iterable[str] = DEFAULT_PAGE_PERMISSIONS,
        instagram_permissions: Iterable[str] = DEFAULT_INSTAGRAM_PERMISSIONS,
    ) -> None:
        super().__init__()
        self.page_permissions = frozenset(page_permissions)
        self.instagram_permissions = frozenset(instagram_permissions)
        self.logins: dict[str, PageGrant] = {}
        self.subscribed: set[str] = set()
        self.refusals: dict[str, TokenRefusal] = {}  # token -> why Meta refuses it
        self.dropped: dict[str, tuple[str, ...]] = {}  # Page -> webhook fields Meta dropped
        self.stuck: set[str] = set()  # Pages whose dropped fields a restore does not bring back

    async def grant(self, code: str, redirect_uri: str) -> PageGrant:
        self.record("grant", code, redirect_uri)
        if code not in self.logins:
            raise refused("meta", 400, 100, ErrorKind.INVALID_REQUEST)
        return self.logins.pop(code)  # a code is used once

    def missing_permissions(self, granted: Iterable[str], *, instagram: bool) -> list[str]:
        needed = self.instagram_permissions if instagram else self.page_permissions
        return sorted(needed - set(granted))

    def missing_page_tasks(self, tasks: Iterable[str]) -> list[str]:
        return missing_page_tasks(tasks)

    async def subscribe_page(self, page_id: str, page_token: str) -> None:
        self.record("subscribe_page", page_id, page_token)
        self.subscribed.add(page_id)

    async def unsubscribe_page(self, page_id: str, page_token: str) -> None:
        self.record("unsubscribe_page", page_id, page_token)
        self.subscribed.discard(page_id)

    async def token_refusal(self, token: str) -> TokenRefusal | None:
        self.record("token_refusal", token)
        return self.refusals.get(token)

    async def missing_subscriptions(self, account_id: str, token: str) -> tuple[str, ...]:
        self.record("missing_subscriptions", account_id, token)
        return tuple(sorted(self.dropped.get(account_id, ())))

    async def restore_subscriptions(self, account_id: str, token: str) -> None:
        self.record("restore_subscriptions", account_id, token)
        if account_id not in self.stuck:
            self.dropped.pop(account_id, None)
            self.subscribed.add(account_id)


class FakeLoginSubscriptions(Calls):
    """The subscription check of Instagram-login accounts: ``dropped[account]`` is what Meta
    dropped from the account's fields, ``stuck`` the accounts a restore does not bring back."""

    def __init__(self) -> None:
        super().__init__()
        self.dropped: dict[str, tuple[str, ...]] = {}
        self.stuck: set[str] = set()

    async def missing_subscriptions(self, account_id: str, token: str) -> tuple[str, ...]:
        self.record("missing_subscriptions", account_id, token)
        return tuple(sorted(self.dropped.get(account_id, ())))

    async def restore_subscriptions(self, account_id: str, token: str) -> None:
        self.record("restore_subscriptions", account_id, token)
        if account_id not in self.stuck:
            self.dropped.pop(account_id, None)


class FakeInstagramConnector(FakePageConnector):
    """Meta's connect flow with Instagram Login configured: each code in ``accounts`` logs its
    account in once; ``refreshed[token]`` is what refreshing ``token`` gives (Instagram's refresh
    timing is the provider's, providers/meta/instagram.py)."""

    def __init__(self) -> None:
        super().__init__()
        self.accounts: dict[str, AuthorizedAccount] = {}
        self.refreshed: dict[str, UserToken] = {}
        self.login_subscriptions = FakeLoginSubscriptions()

    def logs_in(
        self, code: str, account_id: str, username: str, expires_at: datetime | None, **token: Any
    ) -> AuthorizedAccount:
        """Let ``code`` log ``username`` in; the account it gives."""
        token.setdefault("scopes", tuple(sorted(DEFAULT_INSTAGRAM_LOGIN_SCOPES)))
        account = AuthorizedAccount(
            account_id, username, UserToken(access_token=f"ig-{account_id}", expires_at=expires_at, **token)
        )
        self.accounts[code] = account
        return account

    async def login(self, code: str, redirect_uri: str) -> AuthorizedAccount:
        self.record("login", code, redirect_uri)
        if code not in self.accounts:
            raise refused("instagram", 400, None, ErrorKind.INVALID_REQUEST)
        return self.accounts.pop(code)

    def missing_login_permissions(self, granted: Iterable[str]) -> list[str]:
        return sorted(set(DEFAULT_INSTAGRAM_LOGIN_SCOPES) - set(granted))

    async def subscribe_account(self, account_id: str, token: str) -> None:
        self.record("subscribe_account", account_id, token)
        self.subscribed.add(account_id)

    def refresh_step(self, expires_at: datetime, now: datetime, lead: timedelta) -> RefreshStep:
        timing = refresh_timing(expires_at - LONG_LIVED_VALIDITY, expires_at, now, lead)
        if timing is RefreshTiming.DUE:
            return RefreshStep.REFRESH
        return RefreshStep.REPLACE if timing is RefreshTiming.EXPIRED else RefreshStep.WAIT

    async def refresh(self, token: str) -> UserToken:
        self.record("refresh", token)
        if token not in self.refreshed:
            raise refused("instagram", 400, 190, ErrorKind.REAUTH_REQUIRED, 463)
        return self.refreshed[token]


class FakeAccountConnector(Calls):
    """X's connect flow: each code in ``authorizations`` authorizes its account once."""

    def __init__(self) -> None:
        super().__init__()
        self.authorizations: dict[str, AuthorizedAccount] = {}
        self.subscribed: set[str] = set()
        self.apis: dict[str, set[str]] = {}
        self.refusing: dict[str, str] = {}
        self.lacking: dict[str, tuple[str, ...]] = {}
        self.grants: dict[str, UserToken] = {}
        """Refresh token -> what refreshing it gives (once: a spent one is refused, as X does)."""

    def authorizes(self, code: str, account_id: str, username: str, **token: Any) -> AuthorizedAccount:
        """Let ``code`` authorize ``@username``; the account it gives."""
        account = AuthorizedAccount(
            account_id,
            f"@{username}",
            UserToken(**{"access_token": f"tok-{account_id}", "expires_at": None, **token}),
        )
        self.authorizations[code] = account
        return account

    async def authorize(self, code: str, redirect_uri: str, code_verifier: str) -> AuthorizedAccount:
        self.record("authorize", code, redirect_uri, code_verifier)
        if code not in self.authorizations:
            raise refused("x", 400, None, ErrorKind.INVALID_REQUEST)
        return self.authorizations.pop(code)

    async def subscribe(self, account: AuthorizedAccount) -> None:
        self.record("subscribe", account.id)
        self.subscribed.add(account.id)

    # SubscriptionKeeper: ``apis[account]`` is the delivery APIs it is subscribed through; a refusal
    # in ``refusing[account]`` (an error kind) leaves ``"dm.received"`` missing; ``lacking[account]``
    # is what the next repair finds missing and re-creates.
    delivery_apis: tuple[str, ...] = ("activity", "account_activity")

    async def subscribe_via(self, api: str, account_id: str, token: str) -> SubscriptionOutcome:
        self.record("subscribe_via", api, account_id, token)
        if account_id in self.refusing:
            return SubscriptionOutcome(account_id, missing=("dm.received",), reason=self.refusing[account_id])
        self.apis.setdefault(account_id, set()).add(api)
        self.subscribed.add(account_id)
        return SubscriptionOutcome(account_id)

    async def unsubscribe_via(self, api: str, account_id: str) -> tuple[str, ...]:
        self.record("unsubscribe_via", api, account_id)
        held = self.apis.get(account_id, set())
        if api not in held:
            return ()
        held.discard(api)
        if not held:
            self.subscribed.discard(account_id)
        return (api,)

    # RotatingGrant: X's rule (refresh from the lead before the end, and after it); a refresh token
    # works once, through ``grants``; anything else is refused as X refuses it
    def grant_refresh_step(self, expires_at: datetime, now: datetime, lead: timedelta) -> RefreshStep:
        return x_refresh_step(expires_at, now, lead)

    async def refresh_grant(self, refresh_token: str) -> UserToken:
        self.record("refresh_grant", refresh_token)
        await asyncio.sleep(0)  # at X: another replica may run meanwhile
        token = self.grants.pop(refresh_token, None)
        if token is None:
            raise ProviderError(
                "x",
                400,
                None,
                None,
                "Value passed for the token was invalid.",
                ErrorKind.REAUTH_REQUIRED,
                error_type="invalid_request",
            )
        return token

    def grant_refusal_reason(self, error_type: str | None) -> str:
        return x_refusal_reason(error_type)

    async def repair(self, api: str, tokens: Mapping[str, str]) -> list[SubscriptionOutcome]:
        self.record("repair", api, dict(tokens))
        if api != "activity":
            return []
        checks = []
        for account_id in tokens:
            lacking = self.lacking.pop(account_id, ())
            if account_id in self.refusing and lacking:
                checks.append(
                    SubscriptionOutcome(account_id, missing=lacking, reason=self.refusing[account_id])
                )
            else:
                checks.append(SubscriptionOutcome(account_id, restored=lacking))
        return checks


class FakeNumberConnector(Calls):
    """WhatsApp's connect flow: ``numbers[waba]`` lists a WABA's numbers for the tokens in
    ``tokens[waba]``; a requested code is ``next_code``; ``registered`` maps numbers to PINs."""

    def __init__(self, rules: NumberRules = NUMBER_RULES) -> None:
        super().__init__()
        self.rules = rules
        self.numbers: dict[str, set[str]] = {}
        self.tokens: dict[str, set[str]] = {}
        self.next_code = "123456"
        self.codes: dict[str, str] = {}  # number id -> the code sent
        self.voice: dict[str, bool] = {}  # number id -> the last code came by voice call
        self.verified: set[str] = set()
        self.registered: dict[str, str] = {}
        self.refusals: dict[str, TokenRefusal] = {}
        self.by_waba: dict[str, list[MessageTemplate]] = {}  # the templates of each WABA
        self.profiles: dict[str, dict[str, Any]] = {}  # by number id
        self.signup_codes: dict[str, str] = {}  # Embedded Signup code -> the business token
        self.spent_codes: set[str] = set()
        self.grants: dict[str, tuple[str, ...]] = {}  # business token -> its scopes
        self.subscribed_wabas: set[str] = set()
        self.down: set[str] = set()  # methods whose next call fails as an outage (503)
        self.lost_answers: set[str] = set()  # numbers whose next register succeeds, its answer lost

    def waba(self, waba_id: str, token: str, *number_ids: str) -> None:
        """A WABA with these numbers, manageable with ``token``."""
        self.numbers.setdefault(waba_id, set()).update(number_ids)
        self.tokens.setdefault(waba_id, set()).add(token)

    async def number_ids(self, business_account_id: str, token: str) -> frozenset[str]:
        self.record("number_ids", business_account_id, token)
        if token not in self.tokens.get(business_account_id, set()):
            raise refused("whatsapp", 403, 200, ErrorKind.PERMISSION_MISSING)
        return frozenset(self.numbers[business_account_id])

    async def request_code(self, number_id: str, token: str, *, voice: bool) -> None:
        self.record("request_code", number_id, token, voice)
        self.codes[number_id] = self.next_code
        self.voice[number_id] = voice

    async def verify_code(self, number_id: str, token: str, code: str) -> bool:
        self.record("verify_code", number_id, token, code)
        if self.codes.get(number_id) != code:
            return False
        self.verified.add(number_id)
        return True

    async def register(self, number_id: str, token: str, pin: str) -> None:
        self.record("register", number_id, token, pin)
        self._maybe_down("register")
        if number_id not in self.verified:
            raise refused("whatsapp", 400, 133006, ErrorKind.INVALID_REQUEST)
        if self.registered.get(number_id, pin) != pin:  # two-step verification PIN mismatch
            raise refused("whatsapp", 400, 133005, ErrorKind.INVALID_REQUEST)
        if number_id in self.lost_answers:
            # Meta registered the number, its answer was lost: the same PIN is the only way back
            self.registered[number_id] = pin
            self.lost_answers.discard(number_id)
            raise refused("whatsapp", 504, None, ErrorKind.RETRYABLE)
        self.registered[number_id] = pin

    async def token_refusal(self, token: str) -> TokenRefusal | None:
        self.record("token_refusal", token)
        return self.refusals.get(token)

    # --- Embedded Signup (an EmbeddedSignup): ``signup`` plays Meta's window

    def signup(
        self, code: str, token: str, waba_id: str, number_id: str, scopes: Iterable[str] = SIGNUP_SCOPES
    ) -> None:
        """A business finished the window: a verified number on its WABA, a token granted
        ``scopes`` on that WABA, and a single-use ``code`` for the token."""
        self.waba(waba_id, token, number_id)
        self.verified.add(number_id)
        self.signup_codes[code] = token
        self.grants[token] = tuple(scopes)

    async def exchange_signup_code(self, code: str) -> str:
        self.record("exchange_signup_code", code)
        self._maybe_down("exchange_signup_code")
        token = self.signup_codes.get(code)
        if token is None or code in self.spent_codes:
            raise refused("whatsapp", 400, 100, ErrorKind.INVALID_REQUEST, subcode=36009)
        self.spent_codes.add(code)
        return token

    async def check_signup(
        self, token: str, business_account_id: str, number_id: str
    ) -> SignedUpNumber | SignupRefusal:
        self.record("check_signup", token, business_account_id, number_id)
        self._maybe_down("check_signup")
        scopes = self.grants.get(token, ())
        wabas = tuple(w for w, tokens in self.tokens.items() if token in tokens)
        grants = TokenGrants(
            valid=token in self.grants, expires_at=None, scopes=scopes, targets={s: wabas for s in scopes}
        )
        listed = None
        if token in self.tokens.get(business_account_id, set()):
            listed = [
                WhatsAppPhoneNumber(n, "+1 555-010-0001", "Acme")
                for n in sorted(self.numbers[business_account_id])
            ]
        refusal = signup_refusal(grants, business_account_id, number_id, listed)
        if refusal is not None:
            return refusal
        return SignedUpNumber(business_account_id, number_id, "+1 555-010-0001", "Acme", None, scopes)

    async def subscribe_app(self, business_account_id: str, token: str) -> None:
        self.record("subscribe_app", business_account_id, token)
        self._maybe_down("subscribe_app")
        self._manages(business_account_id, token)
        self.subscribed_wabas.add(business_account_id)

    def _maybe_down(self, method: str) -> None:
        if method in self.down:
            self.down.discard(method)
            raise refused("whatsapp", 503, 2, ErrorKind.RETRYABLE)

    # --- templates and the business profile (WhatsApp's TemplateManager, BusinessProfileManager)

    picture_types: frozenset[str] = wa_profile.PICTURE_TYPES

    def _manages(self, waba_id: str, token: str) -> None:
        if token not in self.tokens.get(waba_id, set()):
            raise refused("whatsapp", 403, 200, ErrorKind.PERMISSION_MISSING)

    def template_problem(
        self, name: str, category: str, components: list[dict[str, Any]], parameter_format: str | None
    ) -> tuple[str, str] | None:
        problem = wa_templates.template_problem(name, category, components, parameter_format)
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
        self.record("create_template", business_account_id, name, language, category)
        self._manages(business_account_id, token)
        template = MessageTemplate(
            id=f"tpl_{sum(len(t) for t in self.by_waba.values()) + 1}",
            name=name,
            language=language,
            status="PENDING",
            category=category,
            parameter_count=wa_templates.parameter_count(components),
        )
        self.by_waba.setdefault(business_account_id, []).append(template)
        return template

    async def templates(self, business_account_id: str, token: str) -> list[MessageTemplate]:
        self.record("templates", business_account_id)
        self._manages(business_account_id, token)
        return list(self.by_waba.get(business_account_id, []))

    async def delete_template(
        self, business_account_id: str, token: str, name: str, template_id: str | None
    ) -> None:
        self.record("delete_template", business_account_id, name, template_id)
        self._manages(business_account_id, token)
        self.by_waba[business_account_id] = [
            t
            for t in self.by_waba.get(business_account_id, [])
            if not (t.name == name and (template_id is None or t.id == template_id))
        ]

    def profile_problem(self, fields: Mapping[str, Any]) -> tuple[str, str] | None:
        return wa_profile.profile_problem(fields)

    async def business_profile(self, number_id: str, token: str) -> dict[str, Any]:
        self.record("business_profile", number_id)
        return dict(self.profiles.get(number_id, {}))

    async def update_business_profile(
        self, number_id: str, token: str, fields: Mapping[str, Any], picture: tuple[bytes, str] | None
    ) -> None:
        self.record("update_business_profile", number_id, dict(fields), picture)
        profile = self.profiles.setdefault(number_id, {})
        profile.update(fields)
        if picture is not None:
            profile["profile_picture_url"] = f"https://pps.example/{number_id}.jpg"


class FakePortfolioNumbers(FakeNumberConnector):
    """:class:`FakeNumberConnector` that also names each WABA's business portfolio
    (``portfolios[waba]``; a WABA not listed has none): WhatsApp's PortfolioCheck."""

    def __init__(self, rules: NumberRules = NUMBER_RULES) -> None:
        super().__init__(rules)
        self.portfolios: dict[str, str] = {}

    async def business_portfolio(self, business_account_id: str, token: str) -> str | None:
        self.record("business_portfolio", business_account_id, token)
        self._manages(business_account_id, token)
        return self.portfolios.get(business_account_id)
