"""OnboardingService against its in-memory store and fake connectors: Meta's login and activation,
X's authorization, WhatsApp's steps, disconnects, token checks, teams and template reviews. No
broker, no store, no provider sandbox (tests/integration/test_onboarding.py runs the same flows
against them)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest
from parley_events import (
    ChannelConnected,
    ChannelDisconnected,
    ChannelReauthRequired,
    ChannelReconnected,
    ChannelRole,
    ChannelSettingsChanged,
    ChannelSnapshot,
    ChannelStatus,
    ChannelSubscriptionLost,
    ChannelSubscriptionRepaired,
    ChannelTemplateCategoryChanged,
    ChannelTemplateQualityChanged,
    ChannelTemplateStatusChanged,
    ChannelTokenExpiring,
    Event,
    Provider,
    TeamSnapshot,
    TemplateCategoryChanged,
    TemplateQualityChanged,
    TemplateStatusChanged,
    WhatsAppStepChanged,
)
from parley_onboarding.adapters.stores import AccountClaim, account_claim_id
from parley_onboarding.domain.channels import Access, Channel, channel_id_for
from parley_onboarding.domain.errors import Conflict, DomainError
from parley_onboarding.domain.whatsapp import MAX_CODE_ATTEMPTS, Step, WhatsAppOnboarding
from parley_onboarding.service import (
    PORTFOLIO_READS_PER_ROUND,
    STALE_CLAIM_AFTER,
    NotFound,
    OnboardingService,
)
from parley_onboarding.settings import OnboardingSettings
from parley_providers import ErrorKind, ProviderError
from parley_providers.base import Connector, GrantedPage, MessageTemplate, PageGrant, TokenRefusal
from parley_providers.meta.connect import DEFAULT_INSTAGRAM_PERMISSIONS, DEFAULT_PAGE_PERMISSIONS
from parley_providers.meta.instagram import DEFAULT_INSTAGRAM_LOGIN_SCOPES
from parley_providers.oauth import UserToken
from parley_shared.vault import Credential

from tests.support.fakes.onboarding import (
    FakeAccountConnector,
    FakeInstagramConnector,
    FakeNumberConnector,
    FakeOnboardingStore,
    FakePageConnector,
    FakePortfolioNumbers,
    refused,
)
from tests.unit.factories import T0

pytestmark = pytest.mark.unit

ACME, GLOBEX = "ten_acme", "ten_globex"
ADMIN = "usr_admin"
REDIRECT = "https://app.parley.test/oauth/callback"
PAGE, OTHER_PAGE, IG = "104500000000001", "104500000000002", "178400000000001"
EVERY_PERMISSION = frozenset(DEFAULT_PAGE_PERMISSIONS + DEFAULT_INSTAGRAM_PERMISSIONS)
WABA, NUMBER, WA_TOKEN = "waba_1", "pn_1", "system-user-token"


def page(
    page_id: str = PAGE, *, tasks: tuple[str, ...] = ("MANAGE",), instagram: str | None = None
) -> GrantedPage:
    return GrantedPage(
        id=page_id,
        name=f"Page {page_id[-1]}",
        access_token=f"page-token-{page_id}",
        tasks=tasks,
        instagram_id=instagram,
        instagram_username=f"profile{instagram[-1]}" if instagram else None,
    )


class Harness:
    def __init__(self, **settings: Any) -> None:
        self.store = FakeOnboardingStore()
        self.pages = FakePageConnector()
        self.accounts = FakeAccountConnector()
        self.numbers = FakeNumberConnector()
        self.now = T0
        self.published: list[tuple[Event, str]] = []
        connectors: dict[Provider, Connector] = {
            Provider.MESSENGER: self.pages,  # Meta's connector serves Pages and profiles alike
            Provider.INSTAGRAM: self.pages,
            Provider.X: self.accounts,
            Provider.WHATSAPP: self.numbers,
        }
        self.settings = OnboardingSettings(
            encryption_keys="k1:" + "A" * 43 + "=",
            meta_app_id="parley-test-app",
            meta_app_secret="app-secret",
            jwt_hs256_secret="jwt-secret-for-unit-tests-only-32b",
            **settings,
        )
        self.service = OnboardingService(
            self.store, connectors, self.publish, self.settings, lambda: self.now
        )

    async def publish(self, event: Event, key: str) -> None:
        self.published.append((event, key))

    def of(self, kind: type[Event]) -> list[Any]:
        return [e for e, _ in self.published if isinstance(e, kind)]

    def login(self, code: str, *pages: GrantedPage, granted: frozenset[str] = EVERY_PERMISSION) -> None:
        self.pages.logins[code] = PageGrant(granted, pages, expires_at=T0 + timedelta(days=60))

    async def start(self, code: str, tenant: str = ACME) -> dict[str, Any]:
        return await self.service.start_meta_connection(tenant, ADMIN, code, REDIRECT)

    async def connect(
        self, *pages: GrantedPage, tenant: str = ACME, instagram: bool = True, code: str = "code"
    ) -> dict[str, Any]:
        """Log in with ``pages`` and activate all of them (and their profiles); channels by account."""
        self.login(code, *pages)
        started = await self.start(code, tenant)
        ig = [p.instagram_id for p in pages if p.instagram_id and instagram]
        channels = await self.service.activate_meta(
            tenant, ADMIN, started["connection_id"], [p.id for p in pages], [i for i in ig if i]
        )
        return {c.account_id: c for c in channels}


# --- Meta: login and activation ----------------------------------------------------------------


async def test_a_login_lists_pages_and_profiles_names_missing_permissions_and_keeps_no_user_token() -> None:
    h = Harness()
    h.login("code", page(instagram=IG), page(OTHER_PAGE), granted=EVERY_PERMISSION - {"pages_messaging"})
    started = await h.start("code")
    assert started["missing_permissions"] == ["pages_messaging"]
    assert started["missing_instagram_permissions"] == []
    assert [(p["page_id"], p["connected"]) for p in started["pages"]] == [(PAGE, False), (OTHER_PAGE, False)]
    assert started["pages"][0]["instagram"] == {"id": IG, "username": "profile1", "connected": False}
    assert started["pages"][1]["instagram"] is None
    [connection] = h.store.connections.values()
    assert connection.id == started["connection_id"]
    assert connection.expires_at == T0 + timedelta(seconds=h.settings.connection_ttl_s)
    assert connection.user_token_expires_at == T0 + timedelta(days=60)
    assert {p.access_token for p in connection.pages} == {f"page-token-{PAGE}", f"page-token-{OTHER_PAGE}"}
    assert h.pages.made("grant") == [("code", REDIRECT)]


async def test_activation_subscribes_each_page_and_makes_a_channel_per_page_and_profile() -> None:
    h = Harness()
    channels = await h.connect(page(instagram=IG))
    messenger, instagram = channels[PAGE], channels[IG]
    assert (messenger.provider, messenger.settings.display_name) == (Provider.MESSENGER, "Page 1")
    assert (instagram.provider, instagram.business_account_id) == (Provider.INSTAGRAM, PAGE)
    assert instagram.settings.display_name == "profile1"
    # the profile's webhooks come through its Page: the Page is subscribed for each
    assert h.pages.made("subscribe_page") == [(PAGE, f"page-token-{PAGE}")] * 2
    credential = h.store.credentials[messenger.id]
    # the Page token of a long-lived login does not expire: no expiry tracked, whatever the login's
    assert (credential.access_token, credential.expires_at) == (f"page-token-{PAGE}", None)
    assert messenger.token_expires_at is None and instagram.token_expires_at is None
    assert credential.scopes == tuple(sorted(EVERY_PERMISSION))
    assert set(h.store.account_claims) == {
        account_claim_id(Provider.MESSENGER, PAGE),
        account_claim_id(Provider.INSTAGRAM, IG),
    }
    assert h.store.connections == {}  # the Page tokens now live in the channels' credentials
    assert [e.channel_id for e in h.of(ChannelConnected)] == [messenger.id, instagram.id]
    # snapshots are keyed by channel and revision, lifecycle events by their own id
    assert (ChannelSnapshot, f"{messenger.id}:1") in [(type(e), k) for e, k in h.published]
    h.login("code", page(instagram=IG))
    started = await h.start("code")
    assert started["pages"][0]["connected"] and started["pages"][0]["instagram"]["connected"]


async def test_activating_again_is_a_reconnect_that_keeps_the_channels_settings() -> None:
    h = Harness()
    first = (await h.connect(page()))[PAGE]
    await h.service.update_settings(ACME, first.id, {"auto_ownership": False}, ADMIN)
    again = (await h.connect(page(), code="code-2"))[PAGE]
    assert again.id == first.id
    assert again.settings.auto_ownership is False
    assert [e.channel_id for e in h.of(ChannelReconnected)] == [first.id]


async def test_missing_permissions_refuse_the_pages_they_concern_and_nothing_is_subscribed() -> None:
    h = Harness()
    h.login("code", page(instagram=IG), granted=frozenset(DEFAULT_PAGE_PERMISSIONS))
    connection_id = (await h.start("code"))["connection_id"]
    with pytest.raises(DomainError) as refused_ig:
        await h.service.activate_meta(ACME, ADMIN, connection_id, [PAGE], [IG])
    assert refused_ig.value.code == "PERMISSIONS_MISSING"
    assert refused_ig.value.details["missing"] == sorted(DEFAULT_INSTAGRAM_PERMISSIONS)
    assert h.pages.subscribed == set() and h.store.channels == {}
    # the Page alone needs only the Page permissions, which were granted
    [channel] = await h.service.activate_meta(ACME, ADMIN, connection_id, [PAGE], [])
    assert channel.provider is Provider.MESSENGER


async def test_a_page_without_the_tasks_parley_needs_is_refused_naming_them() -> None:
    h = Harness()
    h.login("code", page(tasks=("MODERATE", "ANALYZE"), instagram=IG))
    connection_id = (await h.start("code"))["connection_id"]
    for page_ids, instagram_ids, field in (([PAGE], [], "page_ids"), ([], [IG], "instagram_account_ids")):
        with pytest.raises(DomainError) as exc:
            await h.service.activate_meta(ACME, ADMIN, connection_id, page_ids, instagram_ids)
        assert exc.value.code == "PAGE_ACCESS_INSUFFICIENT"
        assert exc.value.details == {"field": field, "missing_tasks": ["MESSAGING"]}
        assert "MESSAGING and MODERATE" in exc.value.message
    assert h.pages.made("subscribe_page") == [] and h.store.account_claims == {}


async def test_pages_not_granted_and_profiles_not_linked_are_refused() -> None:
    h = Harness()
    h.login("code", page())
    connection_id = (await h.start("code"))["connection_id"]
    with pytest.raises(DomainError) as not_granted:
        await h.service.activate_meta(ACME, ADMIN, connection_id, [OTHER_PAGE], [])
    with pytest.raises(DomainError) as not_linked:
        await h.service.activate_meta(ACME, ADMIN, connection_id, [], [IG])
    assert (not_granted.value.code, not_linked.value.code) == ("PAGE_NOT_GRANTED", "INSTAGRAM_NOT_LINKED")


async def test_a_connection_is_refused_and_deleted_once_expired_and_another_tenants_is_not_found() -> None:
    h = Harness()
    h.login("code", page())
    connection_id = (await h.start("code"))["connection_id"]
    with pytest.raises(NotFound):
        await h.service.activate_meta(GLOBEX, ADMIN, connection_id, [PAGE], [])
    h.now += timedelta(seconds=h.settings.connection_ttl_s + 1)
    with pytest.raises(DomainError) as exc:
        await h.service.activate_meta(ACME, ADMIN, connection_id, [PAGE], [])
    assert exc.value.code == "CONNECTION_EXPIRED"
    assert h.store.connections == {}


async def test_expired_connections_are_pruned_and_live_ones_kept() -> None:
    h = Harness()
    h.login("old", page())
    await h.start("old")
    h.now += timedelta(seconds=h.settings.connection_ttl_s)
    h.login("new", page())
    live = (await h.start("new"))["connection_id"]
    assert await h.service.prune_connections() == 1
    assert set(h.store.connections) == {live}


async def test_an_account_another_tenant_holds_is_refused_before_its_page_is_subscribed() -> None:
    h = Harness()
    await h.connect(page())
    with pytest.raises(Conflict) as exc:
        await h.connect(page(), tenant=GLOBEX, code="globex")
    assert (exc.value.code, exc.value.status) == ("ACCOUNT_CONNECTED_ELSEWHERE", 409)
    assert len(h.pages.made("subscribe_page")) == 1  # only Acme's activation subscribed the Page
    assert h.store.account_claims[account_claim_id(Provider.MESSENGER, PAGE)].tenant_id == ACME
    assert await h.service.channels(GLOBEX) == []


async def test_a_claim_made_for_a_subscription_that_fails_is_given_back() -> None:
    h = Harness()
    h.pages.fail("subscribe_page", refused("meta", 500, 2, ErrorKind.RETRYABLE))
    with pytest.raises(ProviderError):
        await h.connect(page())
    assert h.store.account_claims == {} and h.store.channels == {}
    # another tenant may connect the Page now
    assert PAGE in await h.connect(page(), tenant=GLOBEX, code="globex")


async def test_a_stale_claim_whose_channel_does_not_hold_the_account_is_released_for_another_tenant() -> None:
    h = Harness()
    claim = account_claim_id(Provider.MESSENGER, PAGE)
    ghost = channel_id_for(ACME, Provider.MESSENGER, PAGE)  # a connect that stopped before saving
    h.store.account_claims[claim] = AccountClaim(ghost, ACME, T0 - STALE_CLAIM_AFTER + timedelta(minutes=1))
    with pytest.raises(Conflict):  # young: it may belong to a connect still saving its channel
        await h.connect(page(), tenant=GLOBEX, code="young")
    h.now += timedelta(minutes=2)
    channels = await h.connect(page(), tenant=GLOBEX, code="stale")
    assert h.store.account_claims[claim].channel_id == channels[PAGE].id


async def test_channels_that_predate_claims_get_them_and_a_second_holder_of_an_account_does_not() -> None:
    h = Harness()
    acme = (await h.connect(page()))[PAGE]
    # before claims existed, another tenant could connect the same Page
    globex, _ = Channel.connect(
        tenant_id=GLOBEX, provider=Provider.MESSENGER, account_id=PAGE, actor_id=ADMIN, at=T0
    )
    await h.store.save_channel(globex)
    h.store.account_claims.clear()
    assert await h.service.ensure_account_claims() == 1
    assert h.store.account_claims[account_claim_id(Provider.MESSENGER, PAGE)].channel_id == acme.id
    assert await h.service.ensure_account_claims() == 0  # idempotent


# --- X -------------------------------------------------------------------------------------


async def test_x_authorizes_subscribes_and_makes_one_channel_per_handle() -> None:
    h = Harness()
    h.accounts.authorizes("code-1", "42", "acme", refresh_token="refresh-1", scopes=("dm.read",))
    channel = await h.service.connect_x(ACME, ADMIN, "code-1", REDIRECT, "verifier")
    assert (channel.provider, channel.account_id, channel.settings.display_name) == (
        Provider.X,
        "42",
        "@acme",
    )
    assert [c[0] for c in h.accounts.calls] == ["authorize", "subscribe_via"]
    assert h.accounts.made("authorize") == [("code-1", REDIRECT, "verifier")]
    # a new handle gets the first delivery API the deployment offers (the X Activity API)
    assert h.accounts.made("subscribe_via") == [("activity", "42", "tok-42")]
    assert channel.x_api == "activity" == h.store.channels[channel.id].settings.x_api
    credential = h.store.credentials[channel.id]
    assert (credential.access_token, credential.refresh_token, credential.scopes) == (
        "tok-42",
        "refresh-1",
        ("dm.read",),
    )
    h.accounts.authorizes("code-2", "43", "acme_help")
    other = await h.service.connect_x(ACME, ADMIN, "code-2", REDIRECT, "verifier")
    assert other.id != channel.id and h.accounts.subscribed == {"42", "43"}


async def test_an_x_account_whose_subscription_fails_is_not_connected() -> None:
    h = Harness()
    h.accounts.authorizes("code", "42", "acme")
    h.accounts.fail("subscribe_via", refused("x", 503, None, ErrorKind.RETRYABLE))
    with pytest.raises(ProviderError):
        await h.service.connect_x(ACME, ADMIN, "code", REDIRECT, "verifier")
    assert h.store.channels == {} and h.store.account_claims == {} and h.store.credentials == {}


async def test_an_x_account_with_an_event_type_refused_is_not_connected_and_says_what_is_missing() -> None:
    h = Harness()
    h.accounts.authorizes("code", "42", "acme")
    h.accounts.refusing["42"] = "permission_missing"
    with pytest.raises(DomainError) as exc:
        await h.service.connect_x(ACME, ADMIN, "code", REDIRECT, "verifier")
    assert (exc.value.code, exc.value.status) == ("SUBSCRIPTION_FAILED", 502)
    assert exc.value.details == {"missing": ["dm.received"], "reason": "permission_missing"}
    assert h.store.channels == {} and h.store.credentials == {}


async def aaa_channel(h: Harness, account_id: str = "42") -> Channel:
    """An X channel stored before the x_api setting existed (no x_api: the Account Activity API)."""
    channel, _ = Channel.connect(
        tenant_id=ACME, provider=Provider.X, account_id=account_id, actor_id=ADMIN, at=T0
    )
    await h.store.save_channel(channel)
    await h.store.put_credential(Credential(channel.id, f"tok-{account_id}", None))
    h.accounts.apis[account_id] = {"account_activity"}
    return channel


async def test_an_x_channel_stored_before_the_setting_reconnects_through_account_activity() -> None:
    h = Harness()
    channel = await aaa_channel(h)
    assert (await h.service.channel(ACME, channel.id)).x_api == "account_activity"
    h.accounts.authorizes("code", "42", "acme")
    again = await h.service.connect_x(ACME, ADMIN, "code", REDIRECT, "verifier")
    assert again.id == channel.id and again.x_api == "account_activity"
    assert h.accounts.made("subscribe_via") == [("account_activity", "42", "tok-42")]


async def test_switching_to_the_activity_api_subscribes_first_then_drops_account_activity() -> None:
    h = Harness()
    channel = await aaa_channel(h)
    switched = await h.service.update_settings(ACME, channel.id, {"x_api": "activity"}, ADMIN)
    assert switched.x_api == "activity"
    assert [c[:3] for c in h.accounts.calls] == [
        ("subscribe_via", "activity", "42"),
        ("unsubscribe_via", "account_activity", "42"),
    ]
    assert h.accounts.apis["42"] == {"activity"}
    [changed] = h.of(ChannelSettingsChanged)
    assert changed.changed == ("x_api",)
    # switching again to the same API does nothing
    await h.service.update_settings(ACME, channel.id, {"x_api": "activity"}, ADMIN)
    assert len(h.accounts.calls) == 2 and len(h.of(ChannelSettingsChanged)) == 1


async def test_a_switch_the_provider_refuses_keeps_the_old_api_subscribed_and_recorded() -> None:
    h = Harness()
    channel = await aaa_channel(h)
    h.accounts.refusing["42"] = "reauth_required"
    with pytest.raises(DomainError) as exc:
        await h.service.update_settings(ACME, channel.id, {"x_api": "activity"}, ADMIN)
    assert exc.value.code == "SUBSCRIPTION_FAILED"
    assert (await h.service.channel(ACME, channel.id)).x_api == "account_activity"
    assert h.accounts.made("unsubscribe_via") == [] and h.accounts.apis["42"] == {"account_activity"}


async def test_x_api_is_refused_on_other_channels_and_outside_its_values() -> None:
    h = Harness()
    meta = (await h.connect(page()))[PAGE]
    with pytest.raises(DomainError):
        await h.service.update_settings(ACME, meta.id, {"x_api": "activity"}, ADMIN)
    x = await aaa_channel(h)
    with pytest.raises(DomainError):
        await h.service.update_settings(ACME, x.id, {"x_api": "streaming"}, ADMIN)


async def test_disconnecting_an_x_channel_removes_its_subscriptions_of_its_api() -> None:
    h = Harness()
    h.accounts.authorizes("code", "42", "acme")
    channel = await h.service.connect_x(ACME, ADMIN, "code", REDIRECT, "verifier")
    await h.service.disconnect(ACME, channel.id, ADMIN)
    assert h.accounts.made("unsubscribe_via") == [("activity", "42")]
    assert h.accounts.subscribed == set()


async def test_a_removal_that_fails_does_not_stop_the_disconnect() -> None:
    h = Harness()
    h.accounts.authorizes("code", "42", "acme")
    channel = await h.service.connect_x(ACME, ADMIN, "code", REDIRECT, "verifier")
    h.accounts.fail("unsubscribe_via", refused("x", 503, None, ErrorKind.RETRYABLE))
    disconnected = await h.service.disconnect(ACME, channel.id, ADMIN)
    assert disconnected.status is ChannelStatus.DISCONNECTED and h.store.account_claims == {}


async def test_the_subscription_check_restores_what_is_missing_and_says_what_it_cannot() -> None:
    h = Harness()
    for code, account in (("c1", "42"), ("c2", "43"), ("c3", "44")):
        h.accounts.authorizes(code, account, f"acme{account}")
        await h.service.connect_x(ACME, ADMIN, code, REDIRECT, "verifier")
    legacy = await aaa_channel(h, "45")
    h.accounts.lacking["42"] = ("dm.received", "post.mention.create")
    h.accounts.lacking["43"] = ("chat.received",)
    h.accounts.refusing["43"] = "reauth_required"
    assert await h.service.check_kept_subscriptions() == 3  # the Account Activity channel is not checked
    tokens = dict(h.accounts.made("repair"))["activity"]  # one listing for every handle of the API
    assert set(tokens) == {"42", "43", "44"} and tokens["42"] == "tok-42"
    [repaired] = h.of(ChannelSubscriptionRepaired)
    assert (repaired.channel_id, repaired.restored) == (
        channel_id_for(ACME, Provider.X, "42"),
        ["dm.received", "post.mention.create"],
    )
    [lost] = h.of(ChannelSubscriptionLost)
    assert (lost.channel_id, lost.missing, lost.reason) == (
        channel_id_for(ACME, Provider.X, "43"),
        ["chat.received"],
        "reauth_required",
    )
    assert legacy.id not in {repaired.channel_id, lost.channel_id}


async def test_an_admin_checks_one_channel_and_a_channel_of_another_api_is_not_checked() -> None:
    h = Harness()
    h.accounts.authorizes("code", "42", "acme")
    channel = await h.service.connect_x(ACME, ADMIN, "code", REDIRECT, "verifier")
    h.accounts.lacking["42"] = ("dm.sent",)
    check = await h.service.repair_channel_subscriptions(ACME, channel.id, ADMIN)
    assert check is not None and check.restored == ("dm.sent",)
    [repaired] = h.of(ChannelSubscriptionRepaired)
    assert repaired.actor_id == ADMIN
    legacy = await aaa_channel(h, "45")
    assert await h.service.repair_channel_subscriptions(ACME, legacy.id, ADMIN) is None
    with pytest.raises(NotFound):
        await h.service.repair_channel_subscriptions(GLOBEX, channel.id, ADMIN)


async def test_x_without_a_connector_is_not_configured() -> None:
    h = Harness()
    h.service.connectors.pop(Provider.X)
    with pytest.raises(DomainError) as exc:
        await h.service.connect_x(ACME, ADMIN, "code", REDIRECT, "verifier")
    assert exc.value.code == "X_NOT_CONFIGURED"


# --- WhatsApp --------------------------------------------------------------------------------


DETAILS = {
    "phone_number": "+14155550123",
    "landline": True,
    "business_manager_id": "1234567890",
    "display_name": "Acme Support",
}
ACCOUNT = {"phone_number_id": NUMBER, "waba_id": WABA, "access_token": WA_TOKEN}


async def whatsapp_to(h: Harness, last: str, tenant: str = ACME) -> str:
    """A new onboarding taken through the steps up to and including ``last``; its id."""
    onboarding = await h.service.start_whatsapp(tenant)
    steps = [
        ("sign-agreement", {}),
        ("accept-terms", {}),
        ("submit-details", DETAILS),
        ("account-created", ACCOUNT),
        ("approve-business-manager", {}),
        ("business-verified", {}),
        ("request-code", {}),
    ]
    for action, body in steps:
        await h.service.whatsapp_step(tenant, onboarding.id, action, body, ADMIN)
        if action == last:
            break
    return onboarding.id


async def test_a_verified_number_is_registered_with_its_pin_and_becomes_an_active_channel() -> None:
    h = Harness()
    h.numbers.waba(WABA, WA_TOKEN, NUMBER, "pn_other")
    onboarding_id = await whatsapp_to(h, "request-code")
    assert h.numbers.made("request_code") == [(NUMBER, WA_TOKEN, True)]  # a landline gets a call
    assert h.store.whatsapp_tokens[onboarding_id] == WA_TOKEN
    done = await h.service.whatsapp_step(ACME, onboarding_id, "verify-code", {"code": "123456"}, ADMIN)
    assert done.step is Step.ACTIVATED
    pin = h.numbers.registered[NUMBER]
    assert len(pin) == 6 and pin.isdigit() and h.store.whatsapp_pins[onboarding_id] == pin
    channel = await h.service.channel(ACME, done.channel_id or "")
    assert (channel.provider, channel.account_id, channel.business_account_id) == (
        Provider.WHATSAPP,
        NUMBER,
        WABA,
    )
    assert h.store.credentials[channel.id].access_token == WA_TOKEN
    steps = [e.step for e in h.of(WhatsAppStepChanged)]
    assert steps[-3:] == ["code_sent", "phone_verified", "activated"]
    [code_sent] = [e for e in h.of(WhatsAppStepChanged) if e.step == "code_sent"]
    assert code_sent.expected_wait == "10 minutes"  # the code's validity, from WhatsApp's rules


async def test_a_pin_given_is_the_one_registered_and_a_malformed_one_is_refused_before_meta() -> None:
    h = Harness()
    h.numbers.waba(WABA, WA_TOKEN, NUMBER)
    onboarding_id = await whatsapp_to(h, "request-code")
    with pytest.raises(DomainError) as exc:
        await h.service.whatsapp_step(
            ACME, onboarding_id, "verify-code", {"code": "123456", "pin": "12ab56"}, ADMIN
        )
    assert exc.value.code == "INVALID_PIN" and h.numbers.made("verify_code") == []
    await h.service.whatsapp_step(
        ACME, onboarding_id, "verify-code", {"code": "123456", "pin": "024680"}, ADMIN
    )
    assert h.numbers.registered[NUMBER] == h.store.whatsapp_pins[onboarding_id] == "024680"


async def test_wrong_codes_count_and_the_sixth_attempt_is_refused_without_asking_meta() -> None:
    h = Harness()
    h.numbers.waba(WABA, WA_TOKEN, NUMBER)
    onboarding_id = await whatsapp_to(h, "request-code")
    left = []
    for _ in range(MAX_CODE_ATTEMPTS):
        with pytest.raises(DomainError) as exc:
            await h.service.whatsapp_step(ACME, onboarding_id, "verify-code", {"code": "999999"}, ADMIN)
        assert exc.value.code == "WRONG_CODE"
        left.append(exc.value.details["attempts_left"])
    assert left == [4, 3, 2, 1, 0]
    with pytest.raises(DomainError) as exc:
        await h.service.whatsapp_step(ACME, onboarding_id, "verify-code", {"code": "123456"}, ADMIN)
    assert exc.value.code == "TOO_MANY_ATTEMPTS"
    assert len(h.numbers.made("verify_code")) == MAX_CODE_ATTEMPTS
    assert (await h.service.whatsapp(ACME, onboarding_id)).code_attempts == MAX_CODE_ATTEMPTS


async def test_an_attempt_meta_did_not_judge_is_given_back() -> None:
    h = Harness()
    h.numbers.waba(WABA, WA_TOKEN, NUMBER)
    onboarding_id = await whatsapp_to(h, "request-code")
    h.numbers.fail(
        "verify_code", refused("whatsapp", 503, None, ErrorKind.RETRYABLE), times=MAX_CODE_ATTEMPTS + 1
    )
    for _ in range(MAX_CODE_ATTEMPTS + 1):
        with pytest.raises(ProviderError):
            await h.service.whatsapp_step(ACME, onboarding_id, "verify-code", {"code": "123456"}, ADMIN)
    assert h.store.code_attempts == {}
    done = await h.service.whatsapp_step(ACME, onboarding_id, "verify-code", {"code": "123456"}, ADMIN)
    assert done.step is Step.ACTIVATED


async def test_account_created_checks_the_waba_before_anything_is_kept() -> None:
    h = Harness()
    h.numbers.waba(WABA, "another-token", NUMBER)
    onboarding_id = await whatsapp_to(h, "submit-details")
    with pytest.raises(DomainError) as not_accessible:
        await h.service.whatsapp_step(ACME, onboarding_id, "account-created", ACCOUNT, ADMIN)
    assert (not_accessible.value.code, not_accessible.value.details["provider_code"]) == (
        "WABA_NOT_ACCESSIBLE",
        200,
    )
    h.numbers.waba(WABA, WA_TOKEN)
    with pytest.raises(DomainError) as mismatch:
        await h.service.whatsapp_step(
            ACME, onboarding_id, "account-created", {**ACCOUNT, "phone_number_id": "pn_x"}, ADMIN
        )
    assert mismatch.value.code == "WABA_NUMBER_MISMATCH"
    assert h.store.whatsapp_tokens == {} and h.store.waba_claims == {}
    assert (await h.service.whatsapp(ACME, onboarding_id)).step is Step.DETAILS_SUBMITTED


async def test_an_outage_listing_the_numbers_is_the_providers_error_not_a_refusal() -> None:
    h = Harness()
    onboarding_id = await whatsapp_to(h, "submit-details")
    h.numbers.fail("number_ids", refused("whatsapp", 500, 2, ErrorKind.RETRYABLE))
    with pytest.raises(ProviderError):
        await h.service.whatsapp_step(ACME, onboarding_id, "account-created", ACCOUNT, ADMIN)


async def test_a_waba_claimed_by_another_tenant_is_refused_at_account_created_and_at_verify_code() -> None:
    h = Harness()
    h.numbers.waba(WABA, WA_TOKEN, NUMBER)
    onboarding_id = await whatsapp_to(h, "request-code")
    # meanwhile Acme's claim went (as after a disconnect of its last channel) and Globex took the WABA
    h.store.waba_claims[WABA] = GLOBEX
    with pytest.raises(Conflict) as at_verify:
        await h.service.whatsapp_step(ACME, onboarding_id, "verify-code", {"code": "123456"}, ADMIN)
    assert at_verify.value.code == "WABA_CLAIMED_ELSEWHERE"
    assert h.numbers.made("verify_code") == [] and h.store.code_attempts == {}
    other = await whatsapp_to(h, "submit-details")
    with pytest.raises(Conflict) as at_created:
        await h.service.whatsapp_step(ACME, other, "account-created", ACCOUNT, ADMIN)
    assert at_created.value.code == "WABA_CLAIMED_ELSEWHERE"
    assert other not in h.store.whatsapp_tokens


# --- disconnect ------------------------------------------------------------------------------


async def test_disconnecting_a_page_unsubscribes_it_releases_its_claim_and_purges_its_secrets() -> None:
    h = Harness()
    channel = (await h.connect(page()))[PAGE]
    h.login("pending", page())
    await h.start("pending")  # a started connection holding the Page's token
    disconnected = await h.service.disconnect(ACME, channel.id, ADMIN)
    assert disconnected.status is ChannelStatus.DISCONNECTED
    assert h.pages.made("unsubscribe_page") == [(PAGE, f"page-token-{PAGE}")]
    assert h.pages.subscribed == set()
    assert h.store.account_claims == {} and h.store.credentials == {} and h.store.connections == {}
    assert [e.channel_id for e in h.of(ChannelDisconnected)] == [channel.id]
    assert PAGE in await h.connect(page(), tenant=GLOBEX, code="globex")


async def test_a_page_that_still_serves_its_instagram_profile_stays_subscribed() -> None:
    h = Harness()
    channels = await h.connect(page(instagram=IG))
    await h.service.disconnect(ACME, channels[PAGE].id, ADMIN)
    assert h.pages.made("unsubscribe_page") == []
    await h.service.disconnect(ACME, channels[IG].id, ADMIN)
    assert h.pages.made("unsubscribe_page") == [(PAGE, f"page-token-{PAGE}")]


async def test_a_failed_unsubscribe_does_not_stop_the_disconnect_and_repeating_it_finishes() -> None:
    h = Harness()
    channel = (await h.connect(page()))[PAGE]
    h.pages.fail("unsubscribe_page", refused("meta", 500, 1, ErrorKind.RETRYABLE))
    await h.service.disconnect(ACME, channel.id, ADMIN)
    assert h.store.account_claims == {} and h.store.credentials == {}
    snapshots = len(h.of(ChannelSnapshot))
    await h.service.disconnect(ACME, channel.id, ADMIN)
    assert len(h.of(ChannelSnapshot)) == snapshots + 1  # the snapshot is published again
    assert len(h.of(ChannelDisconnected)) == 1


async def test_a_whatsapp_disconnect_purges_its_token_and_pin_and_frees_the_waba() -> None:
    h = Harness()
    h.numbers.waba(WABA, WA_TOKEN, NUMBER)
    onboarding_id = await whatsapp_to(h, "request-code")
    done = await h.service.whatsapp_step(ACME, onboarding_id, "verify-code", {"code": "123456"}, ADMIN)
    await h.service.disconnect(ACME, done.channel_id or "", ADMIN)
    assert h.store.whatsapp_tokens == {} and h.store.whatsapp_pins == {} and h.store.code_attempts == {}
    assert h.store.waba_claims == {}
    assert h.pages.made("unsubscribe_page") == []  # no Page behind a number
    globex = await whatsapp_to(h, "account-created", tenant=GLOBEX)
    assert (await h.service.whatsapp(GLOBEX, globex)).step is Step.ACCOUNT_CREATED


# --- tokens ---------------------------------------------------------------------------------


async def test_an_expiring_token_is_announced_once_per_expiry_date() -> None:
    h = Harness()
    h.accounts.authorizes("code", "42", "acme", expires_at=T0 + timedelta(days=10))
    channel = await h.service.connect_x(ACME, ADMIN, "code", REDIRECT, "verifier")
    assert await h.service.check_token_expiry() == 0  # 10 days out, the lead is 7
    h.now += timedelta(days=4)
    assert await h.service.check_token_expiry() == 1
    assert await h.service.check_token_expiry() == 0
    [expiring] = h.of(ChannelTokenExpiring)
    assert (expiring.channel_id, expiring.expires_at) == (channel.id, T0 + timedelta(days=10))
    h.accounts.authorizes("again", "42", "acme", expires_at=T0 + timedelta(days=11))
    await h.service.connect_x(ACME, ADMIN, "again", REDIRECT, "verifier")
    assert await h.service.check_token_expiry() == 1  # a new expiry date is announced again


async def test_a_token_the_provider_refuses_marks_the_channel_for_reconnect_with_the_providers_reason() -> (
    None
):
    h = Harness()
    channel = (await h.connect(page()))[PAGE]
    assert (await h.service.check_channel_token(ACME, channel.id)).status is ChannelStatus.ACTIVE
    h.pages.refusals[f"page-token-{PAGE}"] = TokenRefusal(190, 460)
    checked = await h.service.check_channel_token(ACME, channel.id)
    assert checked.status is ChannelStatus.REAUTH_REQUIRED
    [reauth] = h.of(ChannelReauthRequired)
    assert (reauth.reason, reauth.provider_code, reauth.provider_subcode) == ("password_changed", 190, 460)


async def test_a_channel_whose_connector_cannot_check_tokens_is_left_as_it_is() -> None:
    h = Harness()
    h.accounts.authorizes("code", "42", "acme")
    channel = await h.service.connect_x(ACME, ADMIN, "code", REDIRECT, "verifier")
    assert (await h.service.check_channel_token(ACME, channel.id)).status is ChannelStatus.ACTIVE
    assert h.pages.made("token_refusal") == h.numbers.made("token_refusal") == []


# --- Instagram Login (no Page) and its token refresh -----------------------------------------------

IG_LOGIN = "178400000000009"


def with_instagram_login(**settings: Any) -> tuple[Harness, FakeInstagramConnector]:
    h = Harness(**settings)
    ig = FakeInstagramConnector()
    h.service.connectors[Provider.INSTAGRAM] = ig
    return h, ig


async def test_instagram_login_makes_a_channel_without_a_page_on_its_own_token() -> None:
    h, ig = with_instagram_login()
    ig.logs_in("code", IG_LOGIN, "acme.shop", expires_at=T0 + timedelta(days=60))
    channel = await h.service.connect_instagram_login(ACME, ADMIN, "code", REDIRECT)
    assert (channel.provider, channel.account_id, channel.business_account_id) == (
        Provider.INSTAGRAM,
        IG_LOGIN,
        None,
    )
    assert (channel.connect_path, channel.settings.display_name) == ("instagram_login", "acme.shop")
    assert h.of(ChannelSnapshot)[-1].connect_path == "instagram_login"  # policy's sender reads it
    assert channel.token_expires_at == T0 + timedelta(days=60)
    credential = h.store.credentials[channel.id]
    assert (credential.access_token, credential.expires_at) == (f"ig-{IG_LOGIN}", T0 + timedelta(days=60))
    assert ig.made("subscribe_account") == [(IG_LOGIN, f"ig-{IG_LOGIN}")]
    assert set(h.store.account_claims) == {account_claim_id(Provider.INSTAGRAM, IG_LOGIN)}
    [connected] = h.of(ChannelConnected)
    assert connected.channel_id == channel.id


async def test_instagram_login_missing_a_permission_is_refused_before_anything_is_subscribed() -> None:
    h, ig = with_instagram_login()
    ig.logs_in("code", IG_LOGIN, "acme.shop", T0 + timedelta(days=60), scopes=("instagram_business_basic",))
    with pytest.raises(DomainError) as refusal:
        await h.service.connect_instagram_login(ACME, ADMIN, "code", REDIRECT)
    assert refusal.value.code == "PERMISSIONS_MISSING"
    assert refusal.value.details["missing"] == [
        "instagram_business_manage_comments",
        "instagram_business_manage_messages",
    ]
    assert ig.made("subscribe_account") == [] and h.store.account_claims == {}


async def test_instagram_login_needs_an_instagram_app_and_the_page_path_records_itself() -> None:
    h = Harness()  # Meta's connector without an Instagram app: the Page flow only
    with pytest.raises(DomainError) as refusal:
        await h.service.connect_instagram_login(ACME, ADMIN, "code", REDIRECT)
    assert refusal.value.code == "INSTAGRAM_LOGIN_NOT_CONFIGURED"
    channels = await h.connect(page(instagram=IG))
    assert (channels[IG].connect_path, channels[PAGE].connect_path) == ("page", None)
    assert await h.service.refresh_login_tokens() == 0


async def test_a_login_token_is_refreshed_within_the_lead_time_and_not_before() -> None:
    h, ig = with_instagram_login()  # lead: 14 days
    ig.logs_in("code", IG_LOGIN, "acme.shop", expires_at=T0 + timedelta(days=60))
    channel = await h.service.connect_instagram_login(ACME, ADMIN, "code", REDIRECT)
    h.now = T0 + timedelta(days=46) - timedelta(seconds=1)  # just outside the lead time
    assert await h.service.refresh_login_tokens() == 0
    assert ig.made("refresh") == []
    h.now = T0 + timedelta(days=46)
    ig.refreshed[f"ig-{IG_LOGIN}"] = UserToken("ig-refreshed", h.now + timedelta(days=60))
    assert await h.service.refresh_login_tokens() == 1
    credential = h.store.credentials[channel.id]
    assert (credential.access_token, credential.expires_at) == ("ig-refreshed", T0 + timedelta(days=106))
    assert credential.scopes == tuple(sorted(DEFAULT_INSTAGRAM_LOGIN_SCOPES))
    stored = await h.service.channel(ACME, channel.id)
    assert (stored.status, stored.token_expires_at) == (ChannelStatus.ACTIVE, T0 + timedelta(days=106))
    snapshot = h.of(ChannelSnapshot)[-1]
    assert snapshot.revision == stored.revision
    assert await h.service.refresh_login_tokens() == 0  # 60 days again: nothing due
    assert await h.service.check_token_expiry() == 0  # and nothing to warn about
    # its webhook subscription is not on a Page: it is checked on its own, with the new token
    assert await h.service.check_subscriptions() == 0
    assert ig.made("missing_subscriptions") == []
    assert ig.login_subscriptions.made("missing_subscriptions") == [(IG_LOGIN, "ig-refreshed")]


async def test_a_login_token_younger_than_24_hours_waits_even_within_the_lead_time() -> None:
    h, ig = with_instagram_login(instagram_token_refresh_lead_s=61 * 86400)  # always within the lead
    ig.logs_in("code", IG_LOGIN, "acme.shop", expires_at=T0 + timedelta(days=60))
    await h.service.connect_instagram_login(ACME, ADMIN, "code", REDIRECT)
    h.now = T0 + timedelta(hours=24) - timedelta(seconds=1)
    assert await h.service.refresh_login_tokens() == 0
    assert ig.made("refresh") == []
    h.now = T0 + timedelta(hours=24)
    ig.refreshed[f"ig-{IG_LOGIN}"] = UserToken("ig-refreshed", h.now + timedelta(days=60))
    assert await h.service.refresh_login_tokens() == 1


async def test_a_refused_refresh_marks_the_channel_for_reconnect_with_the_providers_code() -> None:
    h, ig = with_instagram_login()
    ig.logs_in("code", IG_LOGIN, "acme.shop", expires_at=T0 + timedelta(days=60))
    channel = await h.service.connect_instagram_login(ACME, ADMIN, "code", REDIRECT)
    h.now = T0 + timedelta(days=50)
    ig.fail("refresh", refused("instagram", 400, 190, ErrorKind.REAUTH_REQUIRED, 460))
    assert await h.service.refresh_login_tokens() == 0
    [reauth] = h.of(ChannelReauthRequired)
    assert (reauth.channel_id, reauth.provider_code, reauth.provider_subcode, reauth.reason) == (
        channel.id,
        190,
        460,
        "password_changed",
    )
    assert (await h.service.channel(ACME, channel.id)).status is ChannelStatus.REAUTH_REQUIRED
    assert await h.service.refresh_login_tokens() == 0  # a channel awaiting a reconnect is left alone
    assert len(ig.made("refresh")) == 1


async def test_a_token_past_its_end_is_reported_with_the_providers_code_and_an_outage_waits() -> None:
    h, ig = with_instagram_login()
    ig.logs_in("code", IG_LOGIN, "acme.shop", expires_at=T0 + timedelta(days=60))
    channel = await h.service.connect_instagram_login(ACME, ADMIN, "code", REDIRECT)
    h.now = T0 + timedelta(days=50)
    ig.fail("refresh", refused("instagram", 503, 2, ErrorKind.RETRYABLE))
    assert await h.service.refresh_login_tokens() == 0
    assert h.of(ChannelReauthRequired) == []  # an outage says nothing about the token
    h.now = T0 + timedelta(days=61)  # the job never got through: the token is gone
    assert await h.service.refresh_login_tokens() == 0
    [reauth] = h.of(ChannelReauthRequired)
    assert (reauth.channel_id, reauth.provider_code, reauth.provider_subcode) == (channel.id, 190, 463)
    assert reauth.reason == "token_expired"


# --- webhook subscription health ---------------------------------------------------------------


async def test_a_complete_subscription_is_left_alone_and_a_page_is_read_once_for_its_profile_too() -> None:
    h = Harness()
    await h.connect(page(instagram=IG))
    assert await h.service.check_subscriptions() == 0
    assert h.pages.made("missing_subscriptions") == [(PAGE, f"page-token-{PAGE}")]
    assert h.pages.made("restore_subscriptions") == []
    assert h.of(ChannelSubscriptionRepaired) == h.of(ChannelSubscriptionLost) == []


async def test_dropped_fields_are_restored_and_every_channel_on_the_page_is_told() -> None:
    h = Harness()
    channels = await h.connect(page(instagram=IG))
    h.pages.dropped[PAGE] = ("messages", "feed")
    assert await h.service.check_subscriptions() == 1
    assert h.pages.made("restore_subscriptions") == [(PAGE, f"page-token-{PAGE}")]
    repaired = h.of(ChannelSubscriptionRepaired)
    assert sorted(e.channel_id for e in repaired) == sorted(c.id for c in channels.values())
    assert {tuple(e.restored) for e in repaired} == {("feed", "messages")}
    assert all(e.actor_id is None for e in repaired)
    assert await h.service.check_subscriptions() == 0  # whole again: nothing more to say


async def test_fields_a_restore_does_not_bring_back_are_announced_lost() -> None:
    h = Harness()
    channel = (await h.connect(page()))[PAGE]
    h.pages.dropped[PAGE] = ("feed",)
    h.pages.stuck.add(PAGE)
    assert await h.service.check_subscriptions() == 1
    [lost] = h.of(ChannelSubscriptionLost)
    assert (lost.channel_id, lost.missing, lost.reason) == (channel.id, ["feed"], "not_restored")
    assert h.of(ChannelSubscriptionRepaired) == []
    # the gap is announced when it opens, not again at every hourly check while it lasts
    assert await h.service.check_subscriptions() == 1
    assert await h.service.check_subscriptions() == 1
    assert len(h.of(ChannelSubscriptionLost)) == 1
    assert (await h.service.channel(ACME, channel.id)).subscription_gap == ("feed",)
    # an admin fixes it in Meta: the next check finds it whole and announces the gap closed, once
    h.pages.stuck.discard(PAGE)
    h.pages.dropped.pop(PAGE)
    assert await h.service.check_subscriptions() == 0
    [closed] = h.of(ChannelSubscriptionRepaired)
    assert (closed.channel_id, closed.restored) == (channel.id, ["feed"])
    assert await h.service.check_subscriptions() == 0
    assert len(h.of(ChannelSubscriptionRepaired)) == 1
    assert (await h.service.channel(ACME, channel.id)).subscription_gap == ()


async def test_a_refused_token_loses_the_subscription_and_marks_the_channel_for_reconnect() -> None:
    h = Harness()
    channel = (await h.connect(page()))[PAGE]
    h.pages.dropped[PAGE] = ("messages",)
    h.pages.fail("restore_subscriptions", refused("meta", 400, 190, ErrorKind.REAUTH_REQUIRED, 460))
    assert await h.service.check_subscriptions() == 1
    [lost] = h.of(ChannelSubscriptionLost)
    assert (lost.missing, lost.reason, lost.provider_code, lost.provider_subcode) == (
        ["messages"],
        "token_invalid",
        190,
        460,
    )
    assert (await h.service.channel(ACME, channel.id)).status is ChannelStatus.REAUTH_REQUIRED
    # a channel waiting for a reconnect is not checked again
    assert await h.service.check_subscriptions() == 0
    assert len(h.pages.made("missing_subscriptions")) == 1


async def test_an_outage_says_nothing_and_the_next_check_tries_again() -> None:
    h = Harness()
    await h.connect(page())
    h.pages.dropped[PAGE] = ("messages",)
    h.pages.fail("missing_subscriptions", refused("meta", 503, 2, ErrorKind.RETRYABLE))
    assert await h.service.check_subscriptions() == 0
    assert h.of(ChannelSubscriptionLost) == h.of(ChannelSubscriptionRepaired) == []
    assert await h.service.check_subscriptions() == 1
    assert len(h.of(ChannelSubscriptionRepaired)) == 1


async def test_an_admin_check_names_the_admin_and_refuses_channels_it_cannot_check() -> None:
    h = Harness()
    channels = await h.connect(page(instagram=IG))
    h.pages.dropped[PAGE] = ("messages",)
    # asked about the profile: its Page is read, the Page's own channel is told too
    assert await h.service.check_channel_subscription(ACME, channels[IG].id, ADMIN) == (
        "repaired",
        ("messages",),
    )
    repaired = h.of(ChannelSubscriptionRepaired)
    assert sorted(e.channel_id for e in repaired) == sorted(c.id for c in channels.values())
    assert {e.actor_id for e in repaired} == {ADMIN}
    h.accounts.authorizes("code", "42", "acme")
    x = await h.service.connect_x(ACME, ADMIN, "code", REDIRECT, "verifier")
    with pytest.raises(DomainError) as refusal:
        await h.service.check_channel_subscription(ACME, x.id, ADMIN)
    assert refusal.value.code == "SUBSCRIPTION_CHECK_UNSUPPORTED"
    with pytest.raises(NotFound):
        await h.service.check_channel_subscription(GLOBEX, channels[PAGE].id, ADMIN)


async def test_an_instagram_login_account_is_checked_on_its_own_token_and_repaired() -> None:
    h, ig = with_instagram_login()
    ig.logs_in("code", IG_LOGIN, "acme.shop", expires_at=T0 + timedelta(days=60))
    channel = await h.service.connect_instagram_login(ACME, ADMIN, "code", REDIRECT)
    assert await h.service.check_subscriptions() == 0
    # the account itself is read, with its own token: no Page, and the Page check is not asked
    assert ig.login_subscriptions.made("missing_subscriptions") == [(IG_LOGIN, f"ig-{IG_LOGIN}")]
    assert ig.made("missing_subscriptions") == []
    ig.login_subscriptions.dropped[IG_LOGIN] = ("messages", "comments")
    assert await h.service.check_subscriptions() == 1
    [repaired] = h.of(ChannelSubscriptionRepaired)
    assert (repaired.channel_id, repaired.restored, repaired.actor_id) == (
        channel.id,
        ["comments", "messages"],
        None,
    )
    assert ig.login_subscriptions.made("restore_subscriptions") == [(IG_LOGIN, f"ig-{IG_LOGIN}")]
    # an admin's check of the channel takes the same way; fields that stay gone are announced lost
    ig.login_subscriptions.dropped[IG_LOGIN] = ("mentions",)
    ig.login_subscriptions.stuck.add(IG_LOGIN)
    assert await h.service.check_channel_subscription(ACME, channel.id, ADMIN) == ("lost", ("mentions",))
    [lost] = h.of(ChannelSubscriptionLost)
    assert (lost.channel_id, lost.missing, lost.reason, lost.actor_id) == (
        channel.id,
        ["mentions"],
        "not_restored",
        ADMIN,
    )


async def test_an_instagram_login_channel_is_not_checked_by_a_connector_without_the_login_check() -> None:
    h, ig = with_instagram_login()
    ig.logs_in("code", IG_LOGIN, "acme.shop", expires_at=T0 + timedelta(days=60))
    channel = await h.service.connect_instagram_login(ACME, ADMIN, "code", REDIRECT)
    del ig.login_subscriptions  # a connector that can check Pages only
    assert await h.service.check_subscriptions() == 0
    assert ig.made("missing_subscriptions") == []  # never read as if it were a Page
    with pytest.raises(DomainError) as refusal:
        await h.service.check_channel_subscription(ACME, channel.id, ADMIN)
    assert refusal.value.code == "SUBSCRIPTION_CHECK_UNSUPPORTED"


# --- teams and access -----------------------------------------------------------------------


async def test_a_tenant_may_have_the_configured_number_of_teams_and_deleted_ones_do_not_count() -> None:
    h = Harness(max_teams_per_tenant=2)
    first = await h.service.create_team(ACME, "Support")
    await h.service.create_team(ACME, "Sales")
    with pytest.raises(Conflict) as exc:
        await h.service.create_team(ACME, "Billing")
    assert (exc.value.code, exc.value.details) == ("TEAM_LIMIT_REACHED", {"limit": 2})
    await h.service.create_team(GLOBEX, "Support")  # another tenant has its own allowance
    await h.service.delete_team(ACME, first.id)
    await h.service.create_team(ACME, "Billing")
    assert [t.name for t in await h.service.teams(ACME)] == ["Billing", "Sales"]
    assert all(k == f"{e.team_id}:{e.revision}" for e, k in h.published if isinstance(e, TeamSnapshot))


async def test_deleting_a_team_withdraws_its_grants_and_an_unknown_team_cannot_be_granted() -> None:
    h = Harness()
    channel = (await h.connect(page()))[PAGE]
    team = await h.service.create_team(ACME, "Support")
    with pytest.raises(DomainError) as unknown:
        await h.service.set_access(
            ACME, channel.id, Access(team_access={"team_nope": ChannelRole.VIEWER}), ADMIN
        )
    assert unknown.value.code == "UNKNOWN_TEAM"
    await h.service.set_access(
        ACME, channel.id, Access(team_access={team.id: ChannelRole.CONTRIBUTOR}), ADMIN
    )
    await h.service.delete_team(ACME, team.id)
    assert (await h.service.channel(ACME, channel.id)).access.team_access == {}


# --- template reviews -----------------------------------------------------------------------


async def test_a_template_review_is_published_for_each_channel_of_the_tenant_on_that_waba() -> None:
    h = Harness()
    registered = [
        await h.service.register(
            tenant_id=tenant,
            provider=Provider.WHATSAPP,
            account_id=number,
            display_name=None,
            business_account_id=waba,
            access_token=None,
            actor_id=None,
        )
        for tenant, number, waba in ((ACME, NUMBER, WABA), (ACME, "pn_2", "waba_2"), (GLOBEX, "pn_3", WABA))
    ]
    mine = registered[0]  # the other WABA of the tenant, and the other tenant, hear nothing
    review = TemplateStatusChanged(
        event_id="tpl_1",
        tenant_id=ACME,
        business_account_id=WABA,
        template_name="order_update",
        language="en_US",
        status="APPROVED",
        provider_timestamp=T0,
        delivery_id="dlv_1",
    )
    await h.service.on_template_update(review)
    [published] = h.of(ChannelTemplateStatusChanged)
    assert (published.channel_id, published.template_name, published.status) == (
        mine.id,
        "order_update",
        "APPROVED",
    )
    assert published.event_id == f"tplch_{mine.id}_tpl_1"


async def test_a_channel_on_an_api_the_deployment_no_longer_offers_is_refused_not_failed() -> None:
    h = Harness()
    h.accounts.authorizes("code", "42", "acme")
    channel = await h.service.connect_x(ACME, ADMIN, "code", REDIRECT, "verifier")
    h.accounts.delivery_apis = ("account_activity",)  # the X Activity API's settings were removed
    h.accounts.authorizes("again", "42", "acme")
    for attempt in (
        h.service.connect_x(ACME, ADMIN, "again", REDIRECT, "verifier"),
        h.service.repair_channel_subscriptions(ACME, channel.id, ADMIN),
    ):
        with pytest.raises(DomainError) as exc:
            await attempt
        assert exc.value.code == "X_API_NOT_CONFIGURED"
    assert h.accounts.made("subscribe_via") == [("activity", "42", "tok-42")]  # only the first connect


# --- WhatsApp templates and business profile ---------------------------------------------------

ORDER_UPDATE: dict[str, Any] = {
    "name": "order_update",
    "language": "en_US",
    "category": "utility",
    "components": [
        {"type": "HEADER", "format": "TEXT", "text": "Order {{1}}", "example": {"header_text": ["#42"]}},
        {"type": "BODY", "text": "Hi {{1}}, it ships {{2}}.", "example": {"body_text": [["Ada", "today"]]}},
    ],
}


async def active_number(h: Harness) -> WhatsAppOnboarding:
    """An onboarding taken to an active channel (a second number of the WABA is connected too)."""
    h.numbers.waba(WABA, WA_TOKEN, NUMBER)
    onboarding_id = await whatsapp_to(h, "request-code")
    return await h.service.whatsapp_step(ACME, onboarding_id, "verify-code", {"code": "123456"}, ADMIN)


async def test_a_created_template_reaches_policy_with_its_count_on_every_channel_of_the_waba() -> None:
    h = Harness()
    onboarding = await active_number(h)
    sibling = await h.service.register(
        tenant_id=ACME,
        provider=Provider.WHATSAPP,
        account_id="pn_2",
        display_name=None,
        business_account_id=WABA,
        access_token=None,
        actor_id=None,
    )

    template = await h.service.create_template(ACME, onboarding.channel_id or "", ORDER_UPDATE, ADMIN)

    assert (template.status, template.category, template.parameter_count) == ("PENDING", "UTILITY", 3)
    assert h.numbers.made("create_template") == [(WABA, "order_update", "en_US", "UTILITY")]
    published = h.of(ChannelTemplateStatusChanged)
    assert {e.channel_id for e in published} == {onboarding.channel_id, sibling.id}
    assert {
        (e.template_name, e.language, e.status, e.category, e.parameter_count, e.actor_id) for e in published
    } == {("order_update", "en_US", "PENDING", "UTILITY", 3, ADMIN)}
    # the first template submitted is the onboarding's templates step
    assert (await h.service.whatsapp(ACME, onboarding.id)).step is Step.TEMPLATES_SUBMITTED
    assert h.of(WhatsAppStepChanged)[-1].step == "templates_submitted"


async def test_a_template_whatsapp_would_refuse_is_refused_before_it_is_sent() -> None:
    h = Harness()
    onboarding = await active_number(h)
    bad = {**ORDER_UPDATE, "components": [{"type": "BODY", "text": "Hi {{1}}"}]}  # no example

    with pytest.raises(DomainError) as refused:
        await h.service.create_template(ACME, onboarding.channel_id or "", bad, ADMIN)

    assert (refused.value.code, refused.value.details["field"]) == ("INVALID_TEMPLATE", "components")
    assert h.numbers.made("create_template") == []
    assert h.of(ChannelTemplateStatusChanged) == []
    assert (await h.service.whatsapp(ACME, onboarding.id)).step is Step.ACTIVATED


async def test_a_deleted_template_is_deleted_for_policy_in_each_language() -> None:
    h = Harness()
    onboarding = await active_number(h)
    channel_id = onboarding.channel_id or ""
    await h.service.create_template(ACME, channel_id, ORDER_UPDATE, ADMIN)
    await h.service.create_template(ACME, channel_id, {**ORDER_UPDATE, "language": "pt_BR"}, ADMIN)

    deleted = await h.service.delete_template(ACME, channel_id, "order_update", None, ADMIN)

    assert sorted(t.language for t in deleted) == ["en_US", "pt_BR"]
    assert await h.service.templates(ACME, channel_id) == []
    gone = [e for e in h.of(ChannelTemplateStatusChanged) if e.status == "DELETED"]
    assert sorted(e.language for e in gone) == ["en_US", "pt_BR"]
    with pytest.raises(NotFound):
        await h.service.delete_template(ACME, channel_id, "order_update", None, ADMIN)


async def test_templates_are_for_channels_whose_provider_manages_them() -> None:
    h = Harness()
    h.login("code", GrantedPage("pg_1", "Acme", "page-token", ("MESSAGING", "MODERATE"), None, None))
    channels = await h.connect(
        GrantedPage("pg_1", "Acme", "page-token", ("MESSAGING", "MODERATE"), None, None)
    )
    page = next(iter(channels.values()))
    with pytest.raises(DomainError) as refused:
        await h.service.create_template(ACME, page.id, ORDER_UPDATE, ADMIN)
    assert refused.value.code == "NOT_SUPPORTED"


async def test_saving_the_business_profile_completes_the_profile_step_once() -> None:
    h = Harness()
    onboarding = await active_number(h)
    channel_id = onboarding.channel_id or ""
    picture = (b"\xff\xd8\xff" + b"j" * 10, "image/jpeg")

    saved = await h.service.update_business_profile(
        ACME, channel_id, {"about": "Succulents", "vertical": "RETAIL"}, picture, ADMIN
    )

    assert saved["about"] == "Succulents"
    assert saved["profile_picture_url"].startswith("https://")
    assert h.numbers.made("update_business_profile") == [
        (NUMBER, {"about": "Succulents", "vertical": "RETAIL"}, picture)
    ]
    assert (await h.service.whatsapp(ACME, onboarding.id)).step is Step.PROFILE_COMPLETED
    await h.service.update_business_profile(ACME, channel_id, {"about": "Cacti too"}, None, ADMIN)
    steps = [e.step for e in h.of(WhatsAppStepChanged)]
    assert steps.count("profile_completed") == 1


@pytest.mark.parametrize(
    ("fields", "picture", "field"),
    [
        ({"about": "x" * 140}, None, "about"),
        ({"websites": ["ftp://acme.example"]}, None, "websites"),
        ({"vertical": "SPACESHIPS"}, None, "vertical"),
        ({}, (b"GIF89a", "image/gif"), "picture"),
        ({}, (b"", "image/png"), "picture"),
    ],
)
async def test_a_profile_whatsapp_would_refuse_is_refused_first(
    fields: dict[str, Any], picture: tuple[bytes, str] | None, field: str
) -> None:
    h = Harness()
    onboarding = await active_number(h)
    with pytest.raises(DomainError) as refused:
        await h.service.update_business_profile(ACME, onboarding.channel_id or "", fields, picture, ADMIN)
    assert (refused.value.code, refused.value.details["field"]) == ("INVALID_PROFILE", field)
    assert h.numbers.made("update_business_profile") == []


@pytest.mark.parametrize("action", ["profile-completed", "submit-templates"])
async def test_the_profile_and_templates_steps_are_not_typed_in(action: str) -> None:
    h = Harness()
    onboarding = await active_number(h)
    with pytest.raises(Conflict) as refused:
        await h.service.whatsapp_step(ACME, onboarding.id, action, {}, ADMIN)
    assert refused.value.code == "STEP_BY_API"
    assert (await h.service.whatsapp(ACME, onboarding.id)).step is Step.ACTIVATED


async def test_a_template_while_meta_decides_the_badge_leaves_the_badge_step() -> None:
    h = Harness()
    onboarding = await active_number(h)
    channel_id = onboarding.channel_id or ""
    await h.service.update_business_profile(ACME, channel_id, {"about": "Succulents"}, None, ADMIN)
    await h.service.whatsapp_step(ACME, onboarding.id, "request-badge", {}, ADMIN)
    await h.service.create_template(ACME, channel_id, ORDER_UPDATE, ADMIN)
    assert (await h.service.whatsapp(ACME, onboarding.id)).step is Step.BADGE_REQUESTED


async def test_a_category_change_is_published_for_each_channel_of_the_waba() -> None:
    h = Harness()
    onboarding = await active_number(h)
    change = TemplateCategoryChanged(
        event_id="tplcat_1",
        tenant_id=ACME,
        business_account_id=WABA,
        template_name="order_update",
        language="en_US",
        previous_category="UTILITY",
        new_category="MARKETING",
        provider_timestamp=T0,
        delivery_id="dlv_1",
    )
    await h.service.on_template_update(change)
    [published] = h.of(ChannelTemplateCategoryChanged)
    assert (published.channel_id, published.category, published.previous_category) == (
        onboarding.channel_id,
        "MARKETING",
        "UTILITY",
    )


async def test_a_quality_rating_is_published_for_each_channel_of_the_waba() -> None:
    h = Harness()
    onboarding = await active_number(h)
    await h.service.register(
        tenant_id=GLOBEX,
        provider=Provider.WHATSAPP,
        account_id="pn_3",
        display_name=None,
        business_account_id=WABA,
        access_token=None,
        actor_id=None,
    )  # another tenant's number on the same WABA id hears nothing
    rating = TemplateQualityChanged(
        event_id="tplq_1",
        tenant_id=ACME,
        business_account_id=WABA,
        template_id="tpl_9",
        template_name="order_update",
        language="en_US",
        previous_quality_score="GREEN",
        new_quality_score="RED",
        provider_timestamp=T0,
        delivery_id="dlv_1",
    )
    await h.service.on_template_update(rating)
    [published] = h.of(ChannelTemplateQualityChanged)
    assert (
        published.event_id,
        published.channel_id,
        published.template_id,
        published.quality,
        published.previous_quality,
        published.occurred_at,
    ) == (f"tplq_{onboarding.channel_id}_tplq_1", onboarding.channel_id, "tpl_9", "RED", "GREEN", T0)


async def test_a_sync_that_finds_templates_made_in_whatsapp_manager_reaches_the_templates_step() -> None:
    h = Harness()
    onboarding = await active_number(h)
    channel_id = onboarding.channel_id or ""
    await h.service.sync_templates(ACME, channel_id, ADMIN)  # nothing on the WABA yet
    assert (await h.service.whatsapp(ACME, onboarding.id)).step is Step.ACTIVATED
    assert h.of(WhatsAppStepChanged)[-1].step != Step.TEMPLATES_SUBMITTED.value
    h.numbers.by_waba[WABA] = [
        MessageTemplate(
            id="tpl_manager",
            name="welcome",
            language="en_US",
            status="APPROVED",
            category="UTILITY",
            parameter_count=0,
        )
    ]  # submitted in WhatsApp Manager, not through Parley

    await h.service.sync_templates(ACME, channel_id, ADMIN)

    after = await h.service.whatsapp(ACME, onboarding.id)
    assert after.step is Step.TEMPLATES_SUBMITTED
    assert after.history[-1].by == ADMIN
    assert h.of(WhatsAppStepChanged)[-1].step == Step.TEMPLATES_SUBMITTED.value
    await h.service.sync_templates(ACME, channel_id, ADMIN)  # again: the step is done
    assert len([e for e in h.of(WhatsAppStepChanged) if e.step == Step.TEMPLATES_SUBMITTED.value]) == 1


async def test_a_sync_publishes_every_listed_template_with_its_count() -> None:
    h = Harness()
    onboarding = await active_number(h)
    await h.service.create_template(ACME, onboarding.channel_id or "", ORDER_UPDATE, ADMIN)
    [created] = h.numbers.by_waba[WABA]
    h.numbers.by_waba[WABA] = [dataclasses.replace(created, quality_score="YELLOW")]  # Meta rated it
    h.published.clear()

    synced = await h.service.sync_templates(ACME, onboarding.channel_id or "", ADMIN)

    assert [t.name for t in synced] == ["order_update"]
    [published] = h.of(ChannelTemplateStatusChanged)
    assert (
        published.template_name,
        published.status,
        published.parameter_count,
        published.category,
        published.quality,
    ) == ("order_update", "PENDING", 3, "UTILITY", "YELLOW")
    assert h.of(WhatsAppStepChanged) == []  # listing submits nothing


# --- business portfolios of numbers connected before Parley read them -----------------------------


def with_portfolios(h: Harness) -> FakePortfolioNumbers:
    numbers = FakePortfolioNumbers()
    h.numbers = numbers
    h.service.connectors[Provider.WHATSAPP] = numbers
    return numbers


async def number_without_portfolio(h: Harness, number: str, waba: str = WABA, tenant: str = ACME) -> Any:
    return await h.service.register(
        tenant_id=tenant,
        provider=Provider.WHATSAPP,
        account_id=number,
        display_name=None,
        business_account_id=waba,
        access_token=WA_TOKEN,
        actor_id=None,
    )


async def test_numbers_connected_before_portfolios_gain_theirs_once() -> None:
    h = Harness()
    numbers = with_portfolios(h)
    numbers.waba(WABA, WA_TOKEN, NUMBER, "pn_2")
    first, second = await number_without_portfolio(h, NUMBER), await number_without_portfolio(h, "pn_2")
    numbers.portfolios[WABA] = "bp_acme"
    h.published.clear()

    assert await h.service.record_business_portfolios() == 2

    assert numbers.made("business_portfolio") == [(WABA, WA_TOKEN)]  # the account asked once
    snapshots = h.of(ChannelSnapshot)
    assert {(s.channel_id, s.business_portfolio_id) for s in snapshots} == {
        (first.id, "bp_acme"),
        (second.id, "bp_acme"),
    }
    assert (await h.service.channel(ACME, first.id)).business_portfolio_id == "bp_acme"
    h.published.clear()
    assert await h.service.record_business_portfolios() == 0  # nothing left to read
    assert h.published == [] and len(numbers.made("business_portfolio")) == 1


async def test_a_portfolio_read_the_provider_refuses_is_tried_again_next_round() -> None:
    h = Harness()
    numbers = with_portfolios(h)
    numbers.waba(WABA, WA_TOKEN, NUMBER)
    channel = await number_without_portfolio(h, NUMBER)
    numbers.portfolios[WABA] = "bp_acme"
    numbers.fail("business_portfolio", refused("whatsapp", 500, 2, ErrorKind.RETRYABLE))

    assert await h.service.record_business_portfolios() == 0
    assert (await h.service.channel(ACME, channel.id)).business_portfolio_id is None
    assert await h.service.record_business_portfolios() == 1
    assert (await h.service.channel(ACME, channel.id)).business_portfolio_id == "bp_acme"


async def test_a_round_asks_for_a_bounded_number_of_accounts_the_least_recently_asked_first() -> None:
    h = Harness()
    numbers = with_portfolios(h)
    wabas = [f"waba_{n}" for n in range(PORTFOLIO_READS_PER_ROUND + 5)]
    for n, waba in enumerate(wabas):
        numbers.waba(waba, WA_TOKEN, f"pn_{n}")
        await number_without_portfolio(h, f"pn_{n}", waba)  # none has a portfolio at Meta yet

    await h.service.record_business_portfolios()
    first_round = {call[0] for call in numbers.made("business_portfolio")}
    h.now += timedelta(minutes=1)
    await h.service.record_business_portfolios()
    second_round = {call[0] for call in numbers.made("business_portfolio")[PORTFOLIO_READS_PER_ROUND:]}

    assert len(first_round) == len(second_round) == PORTFOLIO_READS_PER_ROUND
    assert set(wabas) - first_round <= second_round  # the five left out go first next time


async def test_without_a_connector_that_names_portfolios_nothing_is_asked() -> None:
    h = Harness()  # FakeNumberConnector: no PortfolioCheck
    h.numbers.waba(WABA, WA_TOKEN, NUMBER)
    await number_without_portfolio(h, NUMBER)
    assert await h.service.record_business_portfolios() == 0
