"""Policy: the providers' reply rules table and the reply decision (windows, tags, templates, roles).

Every expectation below is a row of /work/shared/PLATFORM-RULES.md; the datetimes are explicit so the
window boundaries are tested to the second.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from parley_events import ChannelRole, ChannelSnapshot, ChannelStatus, Provider, SenderType
from parley_policy.domain.decision import (
    ConversationFacts,
    Decision,
    ReplyRequest,
    Template,
    TemplateInfo,
    decide,
    window_closes,
)
from parley_policy.domain.rules import (
    Counting,
    limit_update_scope,
    messaging_limit,
    messaging_limit_scope,
    messaging_tiers,
    rule_for,
    rules,
)

pytestmark = pytest.mark.unit

LAST = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
"""The customer's last message."""
SECOND = timedelta(seconds=1)
H24 = timedelta(hours=24)
D7 = timedelta(days=7)

META = (Provider.MESSENGER, Provider.INSTAGRAM, Provider.WHATSAPP)
TAGGABLE = (Provider.MESSENGER, Provider.INSTAGRAM)
RETIRED = ("ACCOUNT_UPDATE", "CONFIRMED_EVENT_UPDATE", "POST_PURCHASE_UPDATE")
"""Retired by Meta on 2026-04-27 (../shared/PLATFORM-RULES.md, docs/policy.md)."""
APPROVED_TEMPLATES = {
    ("order_update", "en_US"): TemplateInfo("APPROVED", 2),
    ("any_params", "en_US"): TemplateInfo("APPROVED", None),
    ("pending_review", "en_US"): TemplateInfo("PENDING", 0),
    ("rejected", "en_US"): TemplateInfo("REJECTED", 0),
    ("login_code", "en_US"): TemplateInfo("APPROVED", 1, "AUTHENTICATION"),
    ("shipping", "en_US"): TemplateInfo("APPROVED", 1, "UTILITY"),
    ("flash_sale", "en_US"): TemplateInfo("APPROVED", 0, "MARKETING", "RED"),
    ("paused_sale", "en_US"): TemplateInfo("PAUSED", 0, "MARKETING", "RED"),
}


def channel(
    provider: Provider,
    *,
    status: ChannelStatus = ChannelStatus.ACTIVE,
    human_agent_tag: bool = False,
    text_limit: int | None = None,
) -> ChannelSnapshot:
    return ChannelSnapshot(
        channel_id="chn_1",
        tenant_id="ten_acme",
        provider=provider,
        account_id="104512345678901",
        status=status,
        revision=1,
        human_agent_tag=human_agent_tag,
        text_limit=text_limit,
    )


def run(
    provider: Provider,
    request: ReplyRequest | None = None,
    *,
    last: datetime | None = LAST,
    now: datetime = LAST + timedelta(minutes=5),
    human_agent_tag: bool = False,
    role: ChannelRole | None = ChannelRole.CONTRIBUTOR,
    chan: ChannelSnapshot | str | None = "default",
    facts: ConversationFacts | None = None,
    automation: bool | None = None,
) -> Decision:
    """``automation`` (a service principal asks) defaults to whether the request is automated."""
    snapshot = channel(provider, human_agent_tag=human_agent_tag) if chan == "default" else chan
    assert not isinstance(snapshot, str)
    request = request or ReplyRequest(text="Thanks, we are on it.")
    return decide(
        request,
        facts or ConversationFacts(provider=provider, last_customer_message_at=last),
        snapshot,
        role,
        now,
        APPROVED_TEMPLATES,
        automation=request.sender_type is SenderType.AUTOMATED if automation is None else automation,
    )


def codes(decision: Decision) -> list[str]:
    return [reason.code for reason in decision.reasons]


def assert_approved(decision: Decision) -> None:
    assert decision.approved, codes(decision)
    assert decision.reasons == ()


def assert_refused(decision: Decision, *expected: str) -> None:
    assert not decision.approved
    assert codes(decision) == list(expected)
    assert all(reason.message for reason in decision.reasons)


# --- the rules table -------------------------------------------------------------------------------


def test_every_rule_names_its_source() -> None:
    for key, rule in rules().items():
        assert rule.source.strip(), key
        assert (rule.provider, rule.kind) == key


@pytest.mark.parametrize(
    ("provider", "kind", "limit", "counting"),
    [
        (Provider.MESSENGER, "direct", 2000, Counting.CHARACTERS),
        (Provider.MESSENGER, "private_reply", 2000, Counting.CHARACTERS),
        (Provider.INSTAGRAM, "private_reply", 1000, Counting.UTF8_BYTES),
        (Provider.INSTAGRAM, "direct", 1000, Counting.UTF8_BYTES),
        (Provider.WHATSAPP, "direct", 4096, Counting.CHARACTERS),
        (Provider.X, "direct", 10_000, Counting.CHARACTERS),
        (Provider.X, "mention", 280, Counting.X_WEIGHTED),
    ],
)
def test_text_limits_match_platform_rules(
    provider: Provider, kind: str, limit: int, counting: Counting
) -> None:
    rule = rule_for(provider, kind)
    assert rule.text_limit == limit
    assert rule.counting is counting


@pytest.mark.parametrize(
    ("provider", "kind", "window", "human_agent_window", "template_outside_window"),
    [
        (Provider.MESSENGER, "direct", H24, D7, False),
        (Provider.INSTAGRAM, "direct", H24, D7, False),
        (Provider.WHATSAPP, "direct", H24, None, True),
        (Provider.MESSENGER, "comment", None, None, False),
        (Provider.INSTAGRAM, "comment", None, None, False),
        (Provider.X, "direct", None, None, False),
        (Provider.X, "mention", None, None, False),
    ],
)
def test_windows_match_platform_rules(
    provider: Provider,
    kind: str,
    window: timedelta | None,
    human_agent_window: timedelta | None,
    template_outside_window: bool,
) -> None:
    rule = rule_for(provider, kind)
    assert rule.window == window
    assert rule.human_agent_window == human_agent_window
    assert rule.template_outside_window is template_outside_window


@pytest.mark.parametrize("provider", TAGGABLE)
def test_private_replies_last_seven_days(provider: Provider) -> None:
    assert rule_for(provider, "private_reply").window == timedelta(days=7)
    assert "750/h" in rule_for(provider, "private_reply").source


@pytest.mark.parametrize(("provider", "rate"), [(Provider.MESSENGER, 300), (Provider.WHATSAPP, 80)])
def test_send_rates_match_platform_rules(provider: Provider, rate: int) -> None:
    assert rule_for(provider, "direct").rate_per_second == rate


def test_whatsapp_messaging_tiers_come_from_its_row() -> None:
    assert messaging_tiers() == (250, 2_000, 10_000, 100_000, None)
    assert rule_for(Provider.WHATSAPP, "direct").messaging_tiers == messaging_tiers()
    assert [messaging_limit(t) for t in (-1, 0, 1, 2, 3, 4, 9)] == [
        250,
        250,
        2_000,
        10_000,
        100_000,
        None,
        None,
    ]
    assert messaging_tiers(Provider.MESSENGER) == ()
    assert messaging_limit(0, Provider.MESSENGER) is None


@pytest.mark.parametrize("provider", TAGGABLE)
def test_human_agent_is_the_one_tag_and_three_are_retired(provider: Provider) -> None:
    rule = rule_for(provider, "direct")
    assert rule.human_agent_tag == "HUMAN_AGENT"
    assert dict(rule.retired_tags) == {tag: date(2026, 4, 27) for tag in RETIRED}
    assert rule_for(Provider.WHATSAPP, "direct").human_agent_tag is None


@pytest.mark.parametrize(("provider", "kind"), [(Provider.WHATSAPP, "comment"), (Provider.X, "comment")])
def test_unknown_reply_kind_is_refused(provider: Provider, kind: str) -> None:
    with pytest.raises(ValueError, match="no reply rule"):
        rule_for(provider, kind)
    decision = run(provider, ReplyRequest(kind=kind, text="hi"))
    assert_refused(decision, "UNSUPPORTED_REPLY")


# --- the 24-hour window ----------------------------------------------------------------------------


@pytest.mark.parametrize("provider", META)
@pytest.mark.parametrize("offset", [timedelta(0), H24 - SECOND, H24], ids=["now", "24h-1s", "24h"])
def test_free_reply_inside_the_window_is_a_response(provider: Provider, offset: timedelta) -> None:
    decision = run(provider, now=LAST + offset)
    assert_approved(decision)
    assert decision.messaging_type == "RESPONSE"
    assert decision.tag is None
    assert decision.window_closes_at == LAST + H24


@pytest.mark.parametrize(
    ("provider", "code"),
    [
        (Provider.MESSENGER, "WINDOW_CLOSED"),
        (Provider.INSTAGRAM, "WINDOW_CLOSED"),
        (Provider.WHATSAPP, "TEMPLATE_REQUIRED"),
    ],
)
def test_free_reply_after_the_window_is_refused(provider: Provider, code: str) -> None:
    decision = run(provider, now=LAST + H24 + SECOND, human_agent_tag=True)
    assert_refused(decision, code)
    assert decision.messaging_type is None
    assert decision.tag is None
    assert decision.window_closes_at == LAST + H24


def test_each_customer_message_restarts_the_window() -> None:
    later = LAST + timedelta(hours=20)
    now = LAST + timedelta(hours=30)
    assert_refused(run(Provider.MESSENGER, now=now), "WINDOW_CLOSED")
    decision = run(Provider.MESSENGER, last=later, now=now)
    assert_approved(decision)
    assert decision.window_closes_at == later + H24


@pytest.mark.parametrize(
    ("provider", "human_closes"),
    [
        (Provider.MESSENGER, LAST + D7),
        (Provider.INSTAGRAM, LAST + D7),
        (Provider.WHATSAPP, None),
    ],
)
def test_window_closing_times_are_reported(provider: Provider, human_closes: datetime | None) -> None:
    decision = run(provider)
    assert decision.window_closes_at == LAST + H24
    assert decision.human_agent_window_closes_at == human_closes
    facts = ConversationFacts(provider=provider, last_customer_message_at=LAST)
    assert window_closes(facts, rule_for(provider, "direct")) == (LAST + H24, human_closes)


@pytest.mark.parametrize("provider", [*META, Provider.X])
def test_no_windows_without_a_customer_message(provider: Provider) -> None:
    decision = run(provider, last=None)
    assert decision.window_closes_at is None
    assert decision.human_agent_window_closes_at is None


# --- the business cannot start a conversation ------------------------------------------------------


@pytest.mark.parametrize("provider", META)
@pytest.mark.parametrize(
    ("sender", "tag"),
    [(SenderType.HUMAN, None), (SenderType.AUTOMATED, None), (SenderType.HUMAN, "HUMAN_AGENT")],
)
def test_no_customer_message_means_no_reply(provider: Provider, sender: SenderType, tag: str | None) -> None:
    decision = run(
        provider,
        ReplyRequest(text="Hello!", tag=tag, sender_type=sender),
        last=None,
        human_agent_tag=True,
    )
    assert not decision.approved
    assert "NO_CUSTOMER_MESSAGE" in codes(decision)


def test_whatsapp_template_may_start_a_conversation() -> None:
    request = ReplyRequest(template=Template("order_update", "en_US", ("Ada", "#42")))
    decision = run(Provider.WHATSAPP, request, last=None)
    assert_approved(decision)


def test_whatsapp_template_starting_a_conversation_is_sent_as_template() -> None:
    request = ReplyRequest(template=Template("order_update", "en_US", ("Ada", "#42")))
    decision = run(Provider.WHATSAPP, request, last=None)
    assert decision.messaging_type == "TEMPLATE"


# --- the HUMAN_AGENT tag ---------------------------------------------------------------------------


HUMAN = ReplyRequest(text="Sorry for the wait.", tag="HUMAN_AGENT")


@pytest.mark.parametrize("provider", TAGGABLE)
@pytest.mark.parametrize(
    "offset",
    [timedelta(hours=1), timedelta(hours=23, minutes=59), H24],
    ids=["1h", "23h59", "24h"],
)
@pytest.mark.parametrize("enabled", [True, False], ids=["enabled", "not-enabled"])
def test_inside_24_hours_the_tag_is_dropped_and_the_reply_is_a_response(
    provider: Provider, offset: timedelta, enabled: bool
) -> None:
    decision = run(provider, HUMAN, now=LAST + offset, human_agent_tag=enabled)
    assert_approved(decision)
    assert (decision.messaging_type, decision.tag) == ("RESPONSE", None)


@pytest.mark.parametrize("provider", TAGGABLE)
@pytest.mark.parametrize(
    "offset", [H24 + SECOND, timedelta(days=3), D7 - SECOND, D7], ids=["24h+1s", "3d", "7d-1s", "7d"]
)
def test_human_agent_tag_for_a_human_between_24_hours_and_seven_days(
    provider: Provider, offset: timedelta
) -> None:
    decision = run(provider, HUMAN, now=LAST + offset, human_agent_tag=True)
    assert_approved(decision)
    assert decision.messaging_type == "MESSAGE_TAG"
    assert decision.tag == "HUMAN_AGENT"
    assert decision.human_agent_window_closes_at == LAST + D7


@pytest.mark.parametrize("provider", TAGGABLE)
def test_human_agent_tag_after_seven_days_is_refused(provider: Provider) -> None:
    decision = run(provider, HUMAN, now=LAST + D7 + SECOND, human_agent_tag=True)
    assert_refused(decision, "WINDOW_CLOSED")


@pytest.mark.parametrize("provider", TAGGABLE)
@pytest.mark.parametrize(
    "offset", [timedelta(hours=1), H24, H24 + SECOND, timedelta(days=3)], ids=["1h", "24h", "24h+1s", "3d"]
)
def test_human_agent_tag_is_for_humans_only(provider: Provider, offset: timedelta) -> None:
    decision = run(
        provider,
        ReplyRequest(text="Automated follow-up", tag="HUMAN_AGENT", sender_type=SenderType.AUTOMATED),
        now=LAST + offset,
        human_agent_tag=True,
        role=None,
    )
    assert_refused(decision, "HUMAN_AGENT_FOR_HUMANS_ONLY")


@pytest.mark.parametrize("provider", TAGGABLE)
@pytest.mark.parametrize("offset", [H24 + SECOND, timedelta(days=3), D7], ids=["24h+1s", "3d", "7d"])
def test_human_agent_tag_needs_the_channel_setting(provider: Provider, offset: timedelta) -> None:
    decision = run(provider, HUMAN, now=LAST + offset, human_agent_tag=False)
    assert_refused(decision, "HUMAN_AGENT_NOT_ENABLED")


@pytest.mark.parametrize("provider", TAGGABLE)
def test_human_agent_tag_with_no_channel(provider: Provider) -> None:
    decision = run(provider, HUMAN, now=LAST + timedelta(days=3), chan=None)
    assert_refused(decision, "CHANNEL_INACTIVE", "HUMAN_AGENT_NOT_ENABLED")


@pytest.mark.parametrize("provider", TAGGABLE)
def test_the_tag_is_never_added_on_its_own(provider: Provider) -> None:
    """A plain reply inside 24 h stays a RESPONSE even where the channel allows HUMAN_AGENT."""
    for sender, role in ((SenderType.HUMAN, ChannelRole.CONTRIBUTOR), (SenderType.AUTOMATED, None)):
        decision = run(provider, ReplyRequest(text="hi", sender_type=sender), human_agent_tag=True, role=role)
        assert_approved(decision)
        assert (decision.messaging_type, decision.tag) == ("RESPONSE", None)


@pytest.mark.parametrize("provider", TAGGABLE)
def test_after_24_hours_a_reply_without_the_tag_is_refused_even_where_the_channel_allows_it(
    provider: Provider,
) -> None:
    decision = run(provider, ReplyRequest(text="hi"), now=LAST + H24 + SECOND, human_agent_tag=True)
    assert_refused(decision, "WINDOW_CLOSED")
    assert "HUMAN_AGENT" in decision.reasons[0].message


@pytest.mark.parametrize("provider", TAGGABLE)
@pytest.mark.parametrize("tag", RETIRED)
@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (timedelta(hours=1), ("TAG_RETIRED",)),
        (timedelta(days=2), ("TAG_RETIRED", "WINDOW_CLOSED")),
        (timedelta(days=30), ("TAG_RETIRED", "WINDOW_CLOSED")),
    ],
    ids=["1h", "2d", "30d"],
)
def test_retired_tags_are_refused_naming_the_day_they_ended(
    provider: Provider, tag: str, offset: timedelta, expected: tuple[str, ...]
) -> None:
    decision = run(
        provider, ReplyRequest(text="Your order shipped.", tag=tag), now=LAST + offset, human_agent_tag=True
    )
    assert_refused(decision, *expected)
    assert decision.tag is None
    assert decision.messaging_type is None
    assert "2026-04-27" in decision.reasons[0].message
    assert tag in decision.reasons[0].message


@pytest.mark.parametrize("tag", RETIRED)
def test_a_retired_tag_with_no_customer_message_is_refused_for_both(tag: str) -> None:
    decision = run(Provider.MESSENGER, ReplyRequest(text="Update", tag=tag), last=None)
    assert_refused(decision, "TAG_RETIRED", "NO_CUSTOMER_MESSAGE")


@pytest.mark.parametrize("tag", ["CUSTOMER_FEEDBACK", "human_agent", "PROMOTION", ""])
@pytest.mark.parametrize(
    ("offset", "expected"),
    [(timedelta(hours=1), ("TAG_NOT_ALLOWED",)), (timedelta(days=2), ("TAG_NOT_ALLOWED", "WINDOW_CLOSED"))],
)
def test_messenger_unknown_tags_are_refused(tag: str, offset: timedelta, expected: tuple[str, ...]) -> None:
    decision = run(
        Provider.MESSENGER,
        ReplyRequest(text="Hi", tag=tag),
        now=LAST + offset,
        human_agent_tag=True,
    )
    assert_refused(decision, *expected)


@pytest.mark.parametrize("tag", ["ACCOUNT_UPDATE", "CONFIRMED_EVENT_UPDATE", "POST_PURCHASE_UPDATE"])
def test_whatsapp_tags_do_not_reopen_the_window(tag: str) -> None:
    decision = run(
        Provider.WHATSAPP, ReplyRequest(text="Your order shipped.", tag=tag), now=LAST + timedelta(days=2)
    )
    assert not decision.approved


def test_whatsapp_human_agent_tag_does_not_reopen_the_window() -> None:
    decision = run(
        Provider.WHATSAPP,
        ReplyRequest(text="Sorry for the wait.", tag="HUMAN_AGENT"),
        now=LAST + timedelta(days=2),
        human_agent_tag=True,
    )
    assert not decision.approved
    assert {"TAG_NOT_ALLOWED", "TEMPLATE_REQUIRED"} <= set(codes(decision))


# --- WhatsApp templates ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        Template("order_update", "en_US", ("Ada", "#42")),
        Template("any_params", "en_US", ()),
        Template("any_params", "en_US", ("a", "b", "c")),
    ],
)
@pytest.mark.parametrize("offset", [timedelta(hours=1), H24 + SECOND, timedelta(days=40)])
def test_approved_template_is_sent_in_and_out_of_the_window(template: Template, offset: timedelta) -> None:
    decision = run(Provider.WHATSAPP, ReplyRequest(template=template), now=LAST + offset)
    assert_approved(decision)
    assert decision.messaging_type == "TEMPLATE"
    assert decision.tag is None
    assert decision.length is None


@pytest.mark.parametrize(
    "template",
    [
        Template("pending_review", "en_US"),
        Template("rejected", "en_US"),
        Template("never_registered", "en_US"),
        Template("order_update", "pt_BR", ("Ada", "#42")),
    ],
    ids=["pending", "rejected", "unknown", "other-language"],
)
def test_unapproved_template_is_refused(template: Template) -> None:
    decision = run(Provider.WHATSAPP, ReplyRequest(template=template), now=LAST + timedelta(days=2))
    assert_refused(decision, "TEMPLATE_NOT_APPROVED")


def test_a_low_quality_template_is_still_sent_and_its_rating_told() -> None:
    # Meta: RED "can be sent, but is in danger of being paused"; policy tells, Meta pauses
    decision = run(Provider.WHATSAPP, ReplyRequest(template=Template("flash_sale", "en_US")), now=LAST)
    assert_approved(decision)
    assert decision.template_quality == "RED"


def test_a_template_meta_paused_for_its_quality_is_refused() -> None:
    decision = run(Provider.WHATSAPP, ReplyRequest(template=Template("paused_sale", "en_US")), now=LAST)
    assert_refused(decision, "TEMPLATE_NOT_APPROVED")


def test_a_template_without_a_known_rating_tells_none() -> None:
    decision = run(
        Provider.WHATSAPP, ReplyRequest(template=Template("order_update", "en_US", ("Ada", "#42"))), now=LAST
    )
    assert_approved(decision)
    assert decision.template_quality is None


def test_template_with_no_known_templates_is_refused() -> None:
    decision = decide(
        ReplyRequest(template=Template("order_update", "en_US", ("Ada", "#42"))),
        ConversationFacts(Provider.WHATSAPP, LAST),
        channel(Provider.WHATSAPP),
        ChannelRole.CONTRIBUTOR,
        LAST + timedelta(days=2),
    )
    assert_refused(decision, "TEMPLATE_NOT_APPROVED")


@pytest.mark.parametrize("parameters", [(), ("Ada",), ("Ada", "#42", "extra")])
def test_template_parameter_count_must_match(parameters: tuple[str, ...]) -> None:
    request = ReplyRequest(template=Template("order_update", "en_US", parameters))
    decision = run(Provider.WHATSAPP, request, now=LAST + timedelta(days=2))
    assert_refused(decision, "TEMPLATE_PARAMETERS")


BSUID = "US.13491208655302741918"
PHONE = "15550123456"


def whatsapp_to(recipient: str) -> ConversationFacts:
    return ConversationFacts(Provider.WHATSAPP, LAST, recipient_id=recipient)


def test_an_authentication_template_to_a_customer_known_only_by_bsuid_is_refused() -> None:
    request = ReplyRequest(template=Template("login_code", "en_US", ("123456",)))
    decision = run(Provider.WHATSAPP, request, now=LAST + timedelta(days=2), facts=whatsapp_to(BSUID))
    assert_refused(decision, "TEMPLATE_NEEDS_PHONE")
    assert "business-scoped user id" in decision.reasons[0].message


def test_an_authentication_template_to_a_phone_number_is_sent() -> None:
    request = ReplyRequest(template=Template("login_code", "en_US", ("123456",)))
    decision = run(Provider.WHATSAPP, request, now=LAST + timedelta(days=2), facts=whatsapp_to(PHONE))
    assert_approved(decision)


def test_other_categories_go_to_a_bsuid() -> None:
    request = ReplyRequest(template=Template("shipping", "en_US", ("#42",)))
    decision = run(Provider.WHATSAPP, request, now=LAST + timedelta(days=2), facts=whatsapp_to(BSUID))
    assert_approved(decision)


def test_a_wrong_count_to_a_bsuid_gives_both_reasons() -> None:
    request = ReplyRequest(template=Template("login_code", "en_US", ()))
    decision = run(Provider.WHATSAPP, request, now=LAST + timedelta(days=2), facts=whatsapp_to(BSUID))
    assert_refused(decision, "TEMPLATE_PARAMETERS", "TEMPLATE_NEEDS_PHONE")


@pytest.mark.parametrize(
    ("provider", "kind"),
    [
        (Provider.MESSENGER, "direct"),
        (Provider.INSTAGRAM, "direct"),
        (Provider.X, "direct"),
        (Provider.X, "mention"),
    ],
)
def test_templates_are_for_whatsapp_only(provider: Provider, kind: str) -> None:
    request = ReplyRequest(kind=kind, template=Template("order_update", "en_US", ("Ada", "#42")))
    decision = run(provider, request)
    assert not decision.approved
    assert "TEMPLATE_UNSUPPORTED" in codes(decision)


def test_messenger_template_outside_the_window_is_refused_twice() -> None:
    request = ReplyRequest(template=Template("order_update", "en_US", ("Ada", "#42")))
    decision = run(Provider.MESSENGER, request, now=LAST + timedelta(days=2))
    assert_refused(decision, "TEMPLATE_UNSUPPORTED", "WINDOW_CLOSED")


# --- roles and channel state -----------------------------------------------------------------------


@pytest.mark.parametrize("role", [ChannelRole.VIEWER, None])
@pytest.mark.parametrize("provider", [*META, Provider.X])
def test_viewers_and_strangers_cannot_reply(role: ChannelRole | None, provider: Provider) -> None:
    decision = run(provider, role=role)
    assert_refused(decision, "ROLE_FORBIDDEN")


@pytest.mark.parametrize("role", [ChannelRole.CONTRIBUTOR, ChannelRole.SUPERVISOR])
@pytest.mark.parametrize("provider", [*META, Provider.X])
def test_contributors_and_supervisors_can_reply(role: ChannelRole, provider: Provider) -> None:
    assert_approved(run(provider, role=role))


@pytest.mark.parametrize("role", [None, ChannelRole.VIEWER])
def test_a_service_principal_needs_no_channel_role(role: ChannelRole | None) -> None:
    decision = run(
        Provider.MESSENGER,
        ReplyRequest(text="Auto reply", sender_type=SenderType.AUTOMATED),
        role=role,
        automation=True,
    )
    assert_approved(decision)


@pytest.mark.parametrize("role", [None, ChannelRole.VIEWER])
def test_a_service_principal_without_a_role_cannot_pass_for_a_person(role: ChannelRole | None) -> None:
    """The scope covers automated replies only: a human reply (and its human-agent tag) needs a role."""
    decision = run(Provider.MESSENGER, ReplyRequest(text="Hi, Ada here"), role=role, automation=True)
    assert_refused(decision, "ROLE_FORBIDDEN")


@pytest.mark.parametrize("role", [None, ChannelRole.VIEWER, ChannelRole.CONTRIBUTOR, ChannelRole.SUPERVISOR])
@pytest.mark.parametrize("provider", [*META, Provider.X])
def test_a_person_declaring_automated_is_refused_whatever_their_role(
    role: ChannelRole | None, provider: Provider
) -> None:
    """Security #13: a Viewer (or anyone) once got replies approved by declaring sender_type automated."""
    decision = run(
        provider,
        ReplyRequest(text="Auto reply", sender_type=SenderType.AUTOMATED),
        role=role,
        automation=False,
    )
    assert_refused(decision, "AUTOMATION_SCOPE_REQUIRED")


def test_a_requester_who_may_not_reply_gets_no_content_checks() -> None:
    """Who may reply is settled first: a Viewer's text is not even measured."""
    decision = run(Provider.X, ReplyRequest(text="x" * 20_000), role=ChannelRole.VIEWER)
    assert_refused(decision, "ROLE_FORBIDDEN")
    assert decision.length is None


@pytest.mark.parametrize(
    "status", [ChannelStatus.PENDING, ChannelStatus.REAUTH_REQUIRED, ChannelStatus.DISCONNECTED]
)
@pytest.mark.parametrize("provider", [*META, Provider.X])
def test_inactive_channel_is_refused(status: ChannelStatus, provider: Provider) -> None:
    decision = run(provider, chan=channel(provider, status=status))
    assert_refused(decision, "CHANNEL_INACTIVE")


@pytest.mark.parametrize("provider", [*META, Provider.X])
def test_missing_channel_is_refused(provider: Provider) -> None:
    assert_refused(run(provider, chan=None), "CHANNEL_INACTIVE")


def test_all_problems_are_reported_together() -> None:
    decision = run(
        Provider.MESSENGER,
        ReplyRequest(text="x" * 2001),
        now=LAST + timedelta(days=2),
        chan=channel(Provider.MESSENGER, status=ChannelStatus.REAUTH_REQUIRED),
    )
    assert_refused(decision, "CHANNEL_INACTIVE", "TOO_LONG", "WINDOW_CLOSED")
    viewer = run(
        Provider.MESSENGER,
        ReplyRequest(text="x" * 2001),
        now=LAST + timedelta(days=2),
        role=ChannelRole.VIEWER,
        chan=channel(Provider.MESSENGER, status=ChannelStatus.REAUTH_REQUIRED),
    )
    assert_refused(viewer, "CHANNEL_INACTIVE", "ROLE_FORBIDDEN")


# --- comments --------------------------------------------------------------------------------------

COMMENT_AT = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)


def comment_facts(
    *,
    replied: frozenset[str] = frozenset(),
    last: datetime | None = None,
    provider: Provider = Provider.MESSENGER,
) -> ConversationFacts:
    return ConversationFacts(
        provider=provider,
        last_customer_message_at=last,
        private_replied_comments=replied,
        comment_times={"c_1": COMMENT_AT, "c_2": COMMENT_AT + timedelta(days=1)},
    )


@pytest.mark.parametrize("provider", [Provider.MESSENGER, Provider.INSTAGRAM])
@pytest.mark.parametrize("age", [timedelta(minutes=1), timedelta(days=8), timedelta(days=400)])
@pytest.mark.parametrize("last", [None, COMMENT_AT], ids=["no-dm", "dm"])
def test_public_comment_reply_has_no_window(
    provider: Provider, age: timedelta, last: datetime | None
) -> None:
    request = ReplyRequest(kind="comment", text="Thanks!", comment_id="c_1")
    facts = ConversationFacts(provider, last, comment_times={"c_1": COMMENT_AT})
    decision = run(provider, request, facts=facts, now=COMMENT_AT + age)
    assert_approved(decision)
    assert decision.window_closes_at is None
    assert decision.human_agent_window_closes_at is None


@pytest.mark.parametrize("provider", TAGGABLE)
@pytest.mark.parametrize(
    "age", [timedelta(0), timedelta(days=6), D7 - SECOND, D7], ids=["0", "6d", "7d-1s", "7d"]
)
def test_private_reply_within_seven_days(provider: Provider, age: timedelta) -> None:
    decision = run(
        provider,
        ReplyRequest(kind="private_reply", text="We sent you a DM.", comment_id="c_1"),
        facts=comment_facts(provider=provider),
        now=COMMENT_AT + age,
    )
    assert_approved(decision)
    assert decision.messaging_type == "RESPONSE"


@pytest.mark.parametrize("provider", TAGGABLE)
@pytest.mark.parametrize("age", [D7 + SECOND, timedelta(days=30)], ids=["7d+1s", "30d"])
def test_private_reply_after_seven_days_expires(provider: Provider, age: timedelta) -> None:
    decision = run(
        provider,
        ReplyRequest(kind="private_reply", text="We sent you a DM.", comment_id="c_1"),
        facts=comment_facts(provider=provider),
        now=COMMENT_AT + age,
    )
    assert_refused(decision, "PRIVATE_REPLY_EXPIRED")


def test_an_instagram_private_reply_is_a_dm_of_1000_bytes() -> None:
    facts = comment_facts(provider=Provider.INSTAGRAM)
    at = COMMENT_AT + timedelta(hours=1)
    request = ReplyRequest(kind="private_reply", text="é" * 500, comment_id="c_1")  # 1000 bytes
    assert_approved(run(Provider.INSTAGRAM, request, facts=facts, now=at))
    longer = ReplyRequest(kind="private_reply", text="é" * 500 + "!", comment_id="c_1")
    assert_refused(run(Provider.INSTAGRAM, longer, facts=facts, now=at), "TOO_LONG")


def test_private_reply_window_counts_from_the_comment() -> None:
    """c_2 was written a day after c_1: on day 7.5 only c_2 may still get a private reply."""
    now = COMMENT_AT + timedelta(days=7, hours=12)
    facts = comment_facts()
    for comment_id, expected in (("c_1", ["PRIVATE_REPLY_EXPIRED"]), ("c_2", [])):
        decision = run(
            Provider.MESSENGER,
            ReplyRequest(kind="private_reply", text="DM", comment_id=comment_id),
            facts=facts,
            now=now,
        )
        assert codes(decision) == expected


@pytest.mark.parametrize("provider", TAGGABLE)
def test_one_private_reply_per_comment(provider: Provider) -> None:
    facts = comment_facts(replied=frozenset({"c_1"}), provider=provider)
    used = run(
        provider,
        ReplyRequest(kind="private_reply", text="Again", comment_id="c_1"),
        facts=facts,
        now=COMMENT_AT + timedelta(hours=1),
    )
    assert_refused(used, "PRIVATE_REPLY_USED")
    other = run(
        provider,
        ReplyRequest(kind="private_reply", text="First", comment_id="c_2"),
        facts=facts,
        now=COMMENT_AT + timedelta(days=1, hours=1),
    )
    assert_approved(other)


@pytest.mark.parametrize("comment_id", [None, "c_unknown", ""])
def test_private_reply_to_unknown_comment(comment_id: str | None) -> None:
    decision = run(
        Provider.MESSENGER,
        ReplyRequest(kind="private_reply", text="DM", comment_id=comment_id),
        facts=comment_facts(),
        now=COMMENT_AT + timedelta(hours=1),
    )
    assert_refused(decision, "COMMENT_NOT_FOUND")


@pytest.mark.parametrize(
    ("provider", "kind"),
    [(Provider.MESSENGER, "comment"), (Provider.INSTAGRAM, "comment"), (Provider.X, "mention")],
)
@pytest.mark.parametrize("comment_id", [None, "", "  ", ".", ".."])
def test_a_public_reply_names_the_comment_or_post_it_answers(
    provider: Provider, kind: str, comment_id: str | None
) -> None:
    """Without a usable id there is nothing to answer: refused now, not approved and never delivered."""
    decision = run(provider, ReplyRequest(kind=kind, text="Thanks!", comment_id=comment_id))
    assert_refused(decision, "COMMENT_REQUIRED")


@pytest.mark.parametrize(
    ("provider", "kind", "comment_id"),
    [
        (Provider.MESSENGER, "comment", "c_elsewhere"),  # a comment under some other post
        (Provider.INSTAGRAM, "comment", "c_elsewhere"),
        (Provider.X, "mention", "1790000000000000999"),  # any tweet at all
        (Provider.X, "mention", "c_1"),  # ids are not shared across conversations' kinds by accident
    ],
)
def test_a_public_reply_answers_only_an_item_of_its_own_conversation(
    provider: Provider, kind: str, comment_id: str
) -> None:
    """Security #13: a Contributor could post as the brand under any post or tweet by naming it."""
    facts = ConversationFacts(
        provider, LAST, comment_times={"c_1": COMMENT_AT}, mention_ids=frozenset({"1790000000000000001"})
    )
    if comment_id == "c_1":
        facts = ConversationFacts(provider, LAST, mention_ids=frozenset({"1790000000000000001"}))
    decision = run(provider, ReplyRequest(kind=kind, text="Thanks!", comment_id=comment_id), facts=facts)
    assert_refused(decision, "COMMENT_NOT_FOUND")


@pytest.mark.parametrize(
    ("provider", "kind", "comment_id"),
    [
        (Provider.MESSENGER, "comment", "c_1"),
        (Provider.INSTAGRAM, "comment", "c_1"),
        (Provider.INSTAGRAM, "comment", "1790000000000000001"),  # a mention in a comment
        (Provider.X, "mention", "1790000000000000001"),
    ],
)
def test_a_public_reply_to_an_item_of_its_own_conversation_is_approved(
    provider: Provider, kind: str, comment_id: str
) -> None:
    facts = ConversationFacts(
        provider, LAST, comment_times={"c_1": COMMENT_AT}, mention_ids=frozenset({"1790000000000000001"})
    )
    assert_approved(
        run(provider, ReplyRequest(kind=kind, text="Thanks!", comment_id=comment_id), facts=facts)
    )


def test_private_reply_is_not_bound_to_the_dm_window() -> None:
    """A private reply depends on the comment's age, not on the customer's last direct message."""
    decision = run(
        Provider.MESSENGER,
        ReplyRequest(kind="private_reply", text="DM", comment_id="c_2"),
        facts=comment_facts(last=COMMENT_AT - timedelta(days=30)),
        now=COMMENT_AT + timedelta(days=3),
    )
    assert_approved(decision)


# --- X: no messaging window ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["direct", "mention"])
@pytest.mark.parametrize(
    "last", [None, LAST, LAST - timedelta(days=365)], ids=["never", "recent", "a-year-ago"]
)
def test_x_has_no_window(kind: str, last: datetime | None) -> None:
    request = ReplyRequest(
        kind=kind, text="On it!", comment_id="1790000000000000001" if kind == "mention" else None
    )
    facts = ConversationFacts(Provider.X, last, mention_ids=frozenset({"1790000000000000001"}))
    decision = run(Provider.X, request, facts=facts, now=LAST + timedelta(days=30))
    assert_approved(decision)
    assert decision.window_closes_at is None
    assert decision.human_agent_window_closes_at is None
    assert decision.tag is None


# --- thread control (Conversation Routing) -----------------------------------------------------


@pytest.mark.parametrize("provider", TAGGABLE)
def test_a_reply_to_a_thread_another_app_answers_is_refused(provider: Provider) -> None:
    facts = ConversationFacts(provider=provider, last_customer_message_at=LAST, parley_active=False)

    assert_refused(run(provider, facts=facts), "NOT_THREAD_OWNER")


@pytest.mark.parametrize("provider", TAGGABLE)
def test_a_reply_to_a_thread_parley_answers_is_approved(provider: Provider) -> None:
    facts = ConversationFacts(provider=provider, last_customer_message_at=LAST, parley_active=True)

    assert_approved(run(provider, facts=facts))


def test_thread_control_does_not_concern_a_private_reply_to_a_comment() -> None:
    facts = ConversationFacts(
        provider=Provider.MESSENGER,
        last_customer_message_at=None,
        comment_times={"c_1": LAST},
        parley_active=False,
    )

    assert_approved(
        run(Provider.MESSENGER, ReplyRequest(text="hi", kind="private_reply", comment_id="c_1"), facts=facts)
    )


def whatsapp_number(**fields: object) -> ChannelSnapshot:
    base = ChannelSnapshot(
        channel_id="ch-wa",
        tenant_id="t",
        provider=Provider.WHATSAPP,
        account_id="phone-1",
        status=ChannelStatus.ACTIVE,
        revision=1,
    )
    return base.model_copy(update=fields)


def test_a_number_whose_account_names_its_portfolio_counts_against_the_portfolio() -> None:
    # Meta sets messaging limits per business portfolio: every number of every account shares one
    number = whatsapp_number(business_account_id="waba-1", business_portfolio_id="bp-9")
    other_account = whatsapp_number(
        channel_id="ch-wa-2", business_account_id="waba-2", business_portfolio_id="bp-9"
    )
    assert messaging_limit_scope("ch-wa", number) == "portfolio:bp-9"
    assert messaging_limit_scope("ch-wa-2", other_account) == messaging_limit_scope("ch-wa", number)


def test_a_number_without_a_known_portfolio_counts_against_its_account_else_alone() -> None:
    assert messaging_limit_scope("ch-wa", whatsapp_number(business_account_id="waba-1")) == "waba:waba-1"
    assert messaging_limit_scope("ch-wa", whatsapp_number()) == "channel:ch-wa"
    assert messaging_limit_scope("ch-gone", None) == "channel:ch-gone"


def test_a_limit_announced_for_an_account_is_recorded_for_its_portfolio_when_known() -> None:
    holder = whatsapp_number(business_account_id="waba-1", business_portfolio_id="bp-9")
    assert limit_update_scope("waba-1", holder) == "portfolio:bp-9"
    assert limit_update_scope("waba-1", whatsapp_number(business_account_id="waba-1")) == "waba:waba-1"
    assert limit_update_scope("waba-1", None) == "waba:waba-1"
