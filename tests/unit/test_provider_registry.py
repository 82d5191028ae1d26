"""The provider registry: plugins found by entry point, and what services read through it."""

from __future__ import annotations

from dataclasses import replace
from importlib.metadata import EntryPoint
from types import SimpleNamespace

import pytest
from parley_events import Provider
from parley_providers import registry
from parley_providers.base import ProviderPlugin
from parley_providers.rules import Counting

pytestmark = pytest.mark.unit


def test_every_provider_package_is_a_plugin_and_every_conversation_provider_has_one() -> None:
    plugins = registry.plugins()
    assert set(plugins) == {"meta", "whatsapp", "x"}
    covered = {p for plugin in plugins.values() for p in plugin.providers}
    assert covered == set(Provider)
    assert {registry.plugin_for(p).name for p in Provider} == {"meta", "whatsapp", "x"}


def test_the_webhook_endpoints_are_meta_and_x_and_whatsapp_arrives_through_meta() -> None:
    assert set(registry.webhook_endpoints()) == {"meta", "x"}
    assert registry.plugins()["whatsapp"].webhook is None
    assert registry.webhook_endpoint("nobody") is None


def test_the_reply_table_is_every_plugins_rows_and_each_row_names_its_own_provider() -> None:
    table = registry.reply_rules()
    assert len(table) == sum(len(p.reply_rules) for p in registry.plugins().values())
    for (provider, kind), rule in table.items():
        assert (rule.provider, rule.kind) == (provider, kind)
        assert registry.plugin_for(provider).reply_rules[(provider, kind)] is rule


def test_two_plugins_giving_the_same_row_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    meta = registry.plugins()["meta"]
    twin = replace(meta, name="meta-twin", webhook=None, providers=())
    monkeypatch.setattr(registry, "plugins", lambda: {"meta": meta, "meta-twin": twin})
    with pytest.raises(ValueError, match="reply rule"):
        registry.reply_rules()


def test_an_entry_point_that_is_no_plugin_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    bogus = EntryPoint(name="bogus", value="builtins:dict", group=registry.GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [bogus])
    registry.plugins.cache_clear()
    try:
        with pytest.raises(TypeError, match="bogus"):
            registry.plugins()
    finally:
        monkeypatch.undo()
        registry.plugins.cache_clear()


def test_an_install_without_plugins_refuses_to_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without plugins ingest would serve no webhook and policy would send nothing, quietly."""
    monkeypatch.setattr(registry, "entry_points", lambda group: [])
    registry.plugins.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="no provider plugins"):
            registry.plugins()
    finally:
        monkeypatch.undo()
        registry.plugins.cache_clear()


def test_an_empty_x_secret_configures_no_x_sender() -> None:
    import httpx
    from pydantic import SecretStr

    settings = SimpleNamespace(
        graph_base_url="http://graph.test",
        graph_api_version="v25.0",
        meta_app_id="app",
        meta_app_secret=SecretStr("secret"),
        x_api_base_url="http://x.test",
        x_client_id="cid",
        x_client_secret=SecretStr(""),
    )
    assert Provider.X not in registry.senders(httpx.AsyncClient(), settings)


@pytest.mark.parametrize(
    ("provider", "code", "subcode", "reason"),
    [
        (Provider.MESSENGER, 190, 463, "token_expired"),
        (Provider.INSTAGRAM, 190, 460, "password_changed"),
        (Provider.WHATSAPP, 190, None, "token_invalid"),
        (Provider.WHATSAPP, 10, None, "permission_revoked"),
        (Provider.X, 89, None, "provider_rejected_token"),
        (Provider.X, 190, 463, "provider_rejected_token"),  # X's numbers are not Graph's
    ],
)
def test_each_provider_reads_its_own_error_numbers(
    provider: Provider, code: int, subcode: int | None, reason: str
) -> None:
    assert registry.reauth_reason(provider, code, subcode) == reason


def test_x_counts_its_own_weighted_length() -> None:
    count = registry.length_counter(Counting.X_WEIGHTED)
    assert count("https://example.com/a/long/path") == 23
    assert count("日本") == 4
    with pytest.raises(LookupError):
        registry.length_counter(Counting.CHARACTERS)  # generic: no provider owns it


def test_a_plugin_is_plain_data() -> None:
    plugin = registry.plugins()["x"]
    assert isinstance(plugin, ProviderPlugin)
    assert plugin.reauth_reason(401, None) == "provider_rejected_token"


def test_senders_are_built_for_the_providers_the_settings_configure() -> None:
    import httpx
    from parley_providers.meta.outbound import MetaSender
    from parley_providers.whatsapp.outbound import WhatsAppSender
    from parley_providers.x.outbound import XSender
    from pydantic import SecretStr

    meta_only = SimpleNamespace(
        graph_base_url="http://graph.test",
        graph_api_version="v25.0",
        meta_app_id="app",
        meta_app_secret=SecretStr("secret"),
        x_api_base_url="http://x.test",
        x_client_id=None,
        x_client_secret=None,
    )
    http = httpx.AsyncClient()
    senders = registry.senders(http, meta_only)
    assert set(senders) == {Provider.MESSENGER, Provider.INSTAGRAM, Provider.WHATSAPP}
    assert isinstance(senders[Provider.MESSENGER], MetaSender)
    assert isinstance(senders[Provider.WHATSAPP], WhatsAppSender)
    with_x = SimpleNamespace(**{**vars(meta_only), "x_client_id": "cid", "x_client_secret": SecretStr("s")})
    assert isinstance(registry.senders(http, with_x)[Provider.X], XSender)


def test_a_whatsapp_template_reply_names_its_template_and_parameters() -> None:
    from datetime import UTC, datetime

    from parley_events import ReplyApproved, SenderType, TemplateRef
    from parley_providers.whatsapp.outbound import message_body

    base = {
        "event_id": "r:approved",
        "reply_id": "r",
        "tenant_id": "t",
        "channel_id": "ch",
        "conversation_id": "c",
        "provider": Provider.WHATSAPP,
        "account_id": "pn",
        "recipient_id": "15551234567",
        "kind": "direct",
        "sender_type": SenderType.HUMAN,
        "occurred_at": datetime(2026, 11, 30, 9, 0, tzinfo=UTC),
    }
    text = message_body(ReplyApproved(**base, text="Hello"))
    assert text == {
        "messaging_product": "whatsapp",
        "to": "15551234567",
        "type": "text",
        "text": {"body": "Hello"},
    }
    template = message_body(
        ReplyApproved(
            **base, template=TemplateRef(name="order_update", language="en_US", parameters=("Ada",))
        )
    )
    assert template["type"] == "template"
    assert template["template"] == {
        "name": "order_update",
        "language": {"code": "en_US"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ada"}]}],
    }


def test_reply_rules_stay_hashable_values() -> None:
    table = registry.reply_rules()
    assert len(set(table.values())) == len(table)  # hashing a rule with retired tags must work


@pytest.mark.parametrize(
    ("provider", "account_id", "name", "url"),
    [
        (Provider.MESSENGER, "104512345678901", None, "https://www.facebook.com/104512345678901"),
        (Provider.INSTAGRAM, "17841400000000001", "acme.shop", "https://www.instagram.com/acme.shop"),
        (Provider.X, "1500000000000000001", "acme_jobs", "https://x.com/acme_jobs"),
        (Provider.X, "1500000000000000001", "@acme_jobs", "https://x.com/acme_jobs"),
        (Provider.WHATSAPP, "106540352242922", "+14155550123", "https://wa.me/14155550123"),
        (Provider.WHATSAPP, "106540352242922", "+49 (30) 1234-5678", "https://wa.me/493012345678"),
        # no public name known, or an id that is no address: no URL rather than a wrong one
        (Provider.INSTAGRAM, "17841400000000001", None, None),
        (Provider.X, "1500000000000000001", None, None),
        (Provider.WHATSAPP, "106540352242922", None, None),
        # names the provider would never issue cannot steer the link elsewhere
        (Provider.INSTAGRAM, "1", "acme/../../evil.test", None),
        (Provider.X, "1", "javascript:alert(1)", None),
        (Provider.X, "1", "a_handle_far_too_long", None),
        (Provider.WHATSAPP, "1", "+1 415 CALL NOW", None),
        (Provider.MESSENGER, "page/../evil", None, None),
    ],
)
def test_each_provider_package_says_where_an_account_is_on_its_site(
    provider: Provider, account_id: str, name: str | None, url: str | None
) -> None:
    assert registry.account_url(provider, account_id, name) == url


def test_the_account_url_of_a_provider_without_a_plugin_or_without_addresses_is_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    meta = registry.plugins()["meta"]
    monkeypatch.setattr(registry, "plugins", lambda: {"meta": replace(meta, account_url=None)})
    assert registry.account_url(Provider.MESSENGER, "104512345678901", None) is None
    assert registry.account_url(Provider.X, "1", "acme") is None  # no x plugin installed
