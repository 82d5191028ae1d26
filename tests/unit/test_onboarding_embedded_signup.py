"""The onboarding service's WhatsApp Embedded Signup (service.embedded_signup) with fake adapters:
the order of its checks, what each refusal leaves behind, and a retry after an outage."""

from __future__ import annotations

from typing import Any

import pytest
from parley_events import ChannelConnected, ChannelSnapshot, Event, Provider, WhatsAppStepChanged
from parley_onboarding.domain.channels import channel_id_for
from parley_onboarding.domain.errors import Conflict, DomainError
from parley_onboarding.domain.whatsapp import Step
from parley_onboarding.service import OnboardingService, signup_onboarding_id
from parley_onboarding.settings import OnboardingSettings
from parley_providers.base import Connector

from tests.support.fakes.onboarding import FakeNumberConnector, FakeOnboardingStore
from tests.unit.factories import T0

pytestmark = pytest.mark.unit

ACME, GLOBEX, ADMIN = "ten_acme", "ten_globex", "usr_admin"
WABA, NUMBER, TOKEN = "102290129340398", "106540352242922", "EAAbusiness"
OTHER_WABA, OTHER_NUMBER = "102290129349999", "106540352249999"


class Harness:
    def __init__(self, **settings: Any) -> None:
        self.store = FakeOnboardingStore()
        self.numbers = FakeNumberConnector()
        self.published: list[Event] = []
        connectors: dict[Provider, Connector] = {Provider.WHATSAPP: self.numbers}
        self.settings = OnboardingSettings(
            encryption_keys="k1:" + "A" * 43 + "=",
            meta_app_id="parley-test-app",
            meta_app_secret="app-secret",
            jwt_hs256_secret="jwt-secret-for-unit-tests-only-32b",
            **settings,
        )
        self.service = OnboardingService(self.store, connectors, self.publish, self.settings, lambda: T0)

    async def publish(self, event: Event, key: str) -> None:
        self.published.append(event)

    async def signup(
        self, code: str = "AQ1", waba: str = WABA, number: str = NUMBER, tenant: str = ACME, **kw: Any
    ) -> Any:
        return await self.service.embedded_signup(
            tenant, ADMIN, code=code, waba_id=waba, phone_number_id=number, **kw
        )


async def test_a_confirmed_signup_registers_subscribes_and_activates_the_channel() -> None:
    h = Harness()
    h.numbers.signup("AQ1", TOKEN, WABA, NUMBER)
    onboarding, channel = await h.signup()
    assert (channel.id, channel.status.value, channel.business_account_id) == (
        channel_id_for(ACME, Provider.WHATSAPP, NUMBER),
        "active",
        WABA,
    )
    assert onboarding.step is Step.ACTIVATED
    assert [r.step for r in onboarding.history] == [Step.EMBEDDED_SIGNUP_COMPLETED, Step.ACTIVATED]
    assert onboarding.phone_number == "+15550100001"
    assert h.numbers.subscribed_wabas == {WABA}
    pin = h.store.whatsapp_pins[onboarding.id]
    assert h.numbers.registered[NUMBER] == pin and len(pin) == 6 and pin.isdigit()
    credential = await h.store.credential(channel.id)
    assert credential is not None and credential.access_token == TOKEN
    assert [type(e) for e in h.published if not isinstance(e, WhatsAppStepChanged)] == [
        ChannelSnapshot,
        ChannelConnected,
    ]
    # the provider is asked in order: trade, confirm, subscribe, register
    order = [
        c[0]
        for c in h.numbers.calls
        if c[0] in ("exchange_signup_code", "check_signup", "subscribe_app", "register")
    ]
    assert order == ["exchange_signup_code", "check_signup", "subscribe_app", "register"]


async def test_a_pin_the_business_gives_is_the_one_registered_and_a_bad_one_is_refused_first() -> None:
    h = Harness()
    h.numbers.signup("AQ1", TOKEN, WABA, NUMBER)
    with pytest.raises(DomainError) as bad:
        await h.signup(pin="12345")
    assert bad.value.code == "INVALID_PIN"
    assert h.numbers.calls == []
    await h.signup(pin="246810")
    assert h.numbers.registered[NUMBER] == "246810"


async def test_a_spent_code_is_signup_code_invalid_and_keeps_nothing() -> None:
    h = Harness()
    h.numbers.signup("AQ1", TOKEN, WABA, NUMBER)
    h.numbers.spent_codes.add("AQ1")
    with pytest.raises(DomainError) as refused:
        await h.signup()
    assert (refused.value.code, refused.value.status, refused.value.details["field"]) == (
        "SIGNUP_CODE_INVALID",
        422,
        "code",
    )
    assert h.store.channels == {} and h.store.whatsapp_tokens == {} and h.published == []


@pytest.mark.parametrize(
    ("waba", "number", "code", "field"),
    [
        (WABA, OTHER_NUMBER, "WABA_NUMBER_MISMATCH", "phone_number_id"),
        (OTHER_WABA, OTHER_NUMBER, "WABA_NOT_ACCESSIBLE", "waba_id"),
    ],
)
async def test_ids_the_token_does_not_confirm_are_refused_before_anything_is_claimed(
    waba: str, number: str, code: str, field: str
) -> None:
    h = Harness()
    h.numbers.waba(OTHER_WABA, "someone-elses-token", OTHER_NUMBER)
    h.numbers.signup("AQ1", TOKEN, WABA, NUMBER)
    with pytest.raises(DomainError) as refused:
        await h.signup(waba=waba, number=number)
    assert (refused.value.code, refused.value.details["field"]) == (code, field)
    assert h.store.waba_claims == {} and h.store.channels == {} and h.store.whatsapp_tokens == {}
    assert not h.numbers.subscribed_wabas and not h.numbers.registered


async def test_ids_that_are_not_metas_numeric_ids_are_refused_before_meta_is_asked() -> None:
    h = Harness()
    h.numbers.signup("AQ1", TOKEN, WABA, NUMBER)
    with pytest.raises(DomainError) as refused:
        await h.signup(waba="../me")
    assert (refused.value.code, refused.value.details["field"]) == ("INVALID_ID", "waba_id")
    assert h.numbers.calls == []


async def test_missing_permissions_are_named() -> None:
    h = Harness()
    h.numbers.signup("AQ1", TOKEN, WABA, NUMBER, scopes=["whatsapp_business_management"])
    with pytest.raises(DomainError) as refused:
        await h.signup()
    assert (refused.value.code, refused.value.details["missing"]) == (
        "SCOPES_MISSING",
        ["whatsapp_business_messaging"],
    )


async def test_a_waba_of_another_tenant_is_not_taken_over() -> None:
    h = Harness()
    h.numbers.signup("AQ1", TOKEN, WABA, NUMBER)
    await h.signup()
    registered = dict(h.numbers.registered)
    h.numbers.signup("AQ2", "EAAglobex", WABA, NUMBER)
    with pytest.raises(Conflict) as refused:
        await h.signup("AQ2", tenant=GLOBEX)
    assert refused.value.code == "WABA_CLAIMED_ELSEWHERE"
    assert h.numbers.registered == registered
    assert await h.store.tenant_channels(GLOBEX) == []


@pytest.mark.parametrize("failing", ["check_signup", "subscribe_app", "register", "register_answer"])
async def test_an_outage_is_a_retryable_503_with_no_active_channel_and_the_same_request_resumes(
    failing: str,
) -> None:
    h = Harness()
    h.numbers.signup("AQ1", TOKEN, WABA, NUMBER)
    if failing == "register_answer":
        h.numbers.lost_answers.add(NUMBER)  # Meta registered it with the first try's PIN
    else:
        h.numbers.down.add(failing)
    with pytest.raises(DomainError) as down:
        await h.signup()
    assert (down.value.code, down.value.status, down.value.details["retryable"]) == (
        "PROVIDER_UNAVAILABLE",
        503,
        True,
    )
    assert not any(isinstance(e, ChannelSnapshot) for e in h.published)
    assert await h.store.tenant_channels(ACME) == []
    _, channel = await h.signup()
    assert channel.status.value == "active"
    assert [c[0] for c in h.numbers.calls].count("exchange_signup_code") == 1
    # one PIN for both tries: Meta may have registered the first before its answer was lost
    assert h.numbers.registered[NUMBER] == h.store.whatsapp_pins[signup_onboarding_id(ACME, "AQ1")]


async def test_the_browser_gets_the_app_id_and_configuration_id_never_the_secret() -> None:
    h = Harness(whatsapp_embedded_signup_config_id="cfg-123")
    assert h.service.embedded_signup_config() == {"app_id": "parley-test-app", "config_id": "cfg-123"}
