"""The console's form reading and the facts its pages show (console/forms.py, console/app.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from parley_events import BusinessHours, ChannelRole, ChannelStatus, Provider
from parley_onboarding.console.app import attention, who_can_see
from parley_onboarding.console.forms import (
    FormErrors,
    access_from,
    hours_from,
    hours_values,
    settings_changes,
)
from parley_onboarding.domain.channels import Access, Channel
from parley_onboarding.domain.teams import Team

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
LEAD = timedelta(days=7)


def form(**fields: str) -> dict[str, list[str]]:
    return {k.replace("__", ":"): [v] for k, v in fields.items()}


def channel(**changes: object) -> Channel:
    made, _ = Channel.connect(
        tenant_id="t", provider=Provider.MESSENGER, account_id="104512345678901", actor_id="a", at=NOW
    )
    for name, value in changes.items():
        setattr(made, name, value)
    return made


def test_settings_are_read_in_minutes_and_blank_or_zero_turns_them_off() -> None:
    changes, errors = settings_changes(
        form(display_name=" Acme ", auto_resolve_new_min="90", auto_resolve_pending_min="0", text_limit=""),
        x_channel=False,
    )
    assert not errors
    assert changes == {
        "display_name": "Acme",
        "auto_ownership": False,  # an unticked box is not sent at all
        "auto_resolve_new_s": 5400,
        "auto_resolve_pending_s": None,
        "human_agent_tag": False,
        "mark_read_on_open": False,
        "business_hours": None,  # the box unticked: no schedule of its own
        "away_message": None,  # empty: none
        "text_limit": None,
    }


def test_numbers_that_are_not_whole_are_refused_by_their_field() -> None:
    _, errors = settings_changes(
        form(auto_resolve_new_min="1.5", auto_resolve_pending_min="-3", text_limit="ten"), x_channel=False
    )
    assert set(errors.by_field) == {"auto_resolve_new_min", "auto_resolve_pending_min", "text_limit"}


def test_the_x_delivery_api_is_read_only_for_x_channels() -> None:
    assert "x_api" not in settings_changes(form(x_api="activity"), x_channel=False)[0]
    assert settings_changes(form(x_api="activity"), x_channel=True)[0]["x_api"] == "activity"


def test_business_hours_are_read_from_the_day_fields_and_shown_back_the_same_way() -> None:
    changes, errors = settings_changes(
        form(
            hours_own="on",
            hours_time_zone=" Europe/Berlin ",
            hours_mon="09:00-12:00, 13:00 - 17:30",
            hours_sat="22:00\u201324:00",  # an en dash, as text editors write ranges
            hours_sun="00:00-06:00,",
            hours_holidays="2026-12-25,\n2026-12-26",
            away_message="  Back at nine.  ",
        ),
        x_channel=False,
    )
    assert not errors
    hours = BusinessHours.model_validate(
        {
            "time_zone": "Europe/Berlin",
            "intervals": [
                {"day": "mon", "start": "09:00", "end": "12:00"},
                {"day": "mon", "start": "13:00", "end": "17:30"},
                {"day": "sat", "start": "22:00", "end": "24:00"},
                {"day": "sun", "start": "00:00", "end": "06:00"},
            ],
            "holidays": ["2026-12-25", "2026-12-26"],
        }
    )
    assert (changes["business_hours"], changes["away_message"]) == (hours, "Back at nine.")
    shown = hours_values(hours)
    assert shown["hours_mon"] == "09:00-12:00, 13:00-17:30"
    assert (shown["hours_tue"], shown["hours_holidays"]) == ("", "2026-12-25, 2026-12-26")
    # what the page shows reads back as the same schedule
    assert hours_from({k: [v] for k, v in shown.items()}, FormErrors()) == hours
    assert hours_values(None) == {}


def test_unticked_hours_are_no_schedule_whatever_the_fields_hold() -> None:
    changes, errors = settings_changes(
        form(hours_time_zone="Nowhere/City", hours_mon="late"), x_channel=False
    )
    assert not errors and changes["business_hours"] is None


def test_each_refusal_of_the_hours_contract_is_written_by_its_field() -> None:
    errors = FormErrors()
    hours = hours_from(
        form(
            hours_own="on",
            hours_time_zone="Mars/Olympus_Mons",
            hours_mon="17:00-09:00",  # ends before it starts
            hours_tue="09:00-13:00, 12:00-17:00",  # overlap
            hours_wed="9 to 5",  # not a range
            hours_thu="9:00-17:00",  # not HH:MM
            hours_fri="09:00-17:00",
            hours_holidays="2026-02-30",
        ),
        errors,
    )
    assert hours is None
    messages = errors.by_field
    assert set(messages) == {
        "hours_time_zone",
        "hours_mon",
        "hours_tue",
        "hours_wed",
        "hours_thu",
        "hours_holidays",
    }
    assert messages["hours_time_zone"].startswith("This time zone is unknown")
    assert messages["hours_mon"].startswith("An opening ends after it starts")
    assert messages["hours_tue"] == "Openings on this day overlap."
    assert messages["hours_wed"].startswith("Write each opening as HH:MM-HH:MM")
    assert messages["hours_thu"] == messages["hours_wed"]
    assert messages["hours_holidays"].startswith("Write each holiday as a date")
    missing = FormErrors()
    assert hours_from(form(hours_own="on"), missing) is None
    assert missing.by_field == {"hours_time_zone": "Enter the time zone."}


def test_more_openings_or_holidays_than_the_contract_takes_are_refused() -> None:
    from parley_events.hours import MAX_HOLIDAYS, MAX_INTERVALS

    per_day = MAX_INTERVALS // 7 + 1
    day = ", ".join(f"{h:02d}:00-{h:02d}:30" for h in range(per_day))
    days = {f"hours_{d}": day for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    errors = FormErrors()
    assert hours_from(form(hours_own="on", hours_time_zone="UTC", **days), errors) is None
    assert errors.by_field == {"hours": f"A week has at most {MAX_INTERVALS} openings."}
    first = datetime(2027, 1, 1).date()
    holidays = ", ".join(str(first + timedelta(days=n)) for n in range(MAX_HOLIDAYS + 1))
    errors = FormErrors()
    assert hours_from(form(hours_own="on", hours_time_zone="UTC", hours_holidays=holidays), errors) is None
    assert errors.by_field == {"hours_holidays": f"At most {MAX_HOLIDAYS} holidays."}


def test_access_is_the_whole_replacement_and_an_empty_role_removes_a_line() -> None:
    access, errors = access_from(
        form(
            user__ann="viewer",
            user__bob="",
            team__team_1="contributor",
            team__team_2="",
            new_user_id="cy",
            new_user_role="supervisor",
            all_teams="on",
            all_teams_role="viewer",
            all_users_role="supervisor",  # its box is unticked: no All users role
        )
    )
    assert not errors
    assert access == Access(
        {"ann": ChannelRole.VIEWER, "cy": ChannelRole.SUPERVISOR},
        {"team_1": ChannelRole.CONTRIBUTOR},
        None,
        ChannelRole.VIEWER,
    )


def test_a_new_user_needs_both_an_id_and_a_role() -> None:
    assert set(access_from(form(new_user_id="cy"))[1].by_field) == {"new_user_role"}
    assert set(access_from(form(new_user_role="viewer"))[1].by_field) == {"new_user_id"}


def test_attention_names_reauth_and_a_token_near_or_past_its_end() -> None:
    assert attention(channel(), NOW, LEAD) == []
    assert "reconnect" in attention(channel(status=ChannelStatus.REAUTH_REQUIRED), NOW, LEAD)[0]
    assert "expires soon" in attention(channel(token_expires_at=NOW + timedelta(days=2)), NOW, LEAD)[0]
    assert "expired" in attention(channel(token_expires_at=NOW - timedelta(seconds=1)), NOW, LEAD)[0]
    assert attention(channel(token_expires_at=NOW + timedelta(days=30)), NOW, LEAD) == []


def test_a_token_onboarding_renews_itself_needs_no_attention_until_a_renewal_fails() -> None:
    """X's two-hour token, renewed with the refresh token the account granted: its near end is
    nothing to act on; past its end the renewals have failed, and a refused one is reauth."""
    x = channel(provider=Provider.X, token_expires_at=NOW + timedelta(hours=1))
    assert attention(x, NOW, LEAD, renewed=True) == []
    assert "expires soon" in attention(x, NOW, LEAD, renewed=False)[0]  # no refresh token: act
    x.token_expires_at = NOW - timedelta(minutes=5)
    [note] = attention(x, NOW, LEAD, renewed=True)
    assert note.startswith("The token has expired and Parley could not renew it yet")
    x.status = ChannelStatus.REAUTH_REQUIRED
    assert "reconnect" in attention(x, NOW, LEAD, renewed=True)[0]


def test_attention_names_a_webhook_subscription_the_check_could_not_restore() -> None:
    lost = channel()
    lost.subscription_gap = ("feed", "messages")
    [note] = attention(lost, NOW, LEAD)
    assert "feed, messages" in note
    assert attention(channel(), NOW, LEAD) == []


def test_who_can_see_takes_the_highest_role_of_each_user_by_the_shared_rule() -> None:
    support = Team("team_1", "t", "Support", ["ann", "bob"])
    sales = Team("team_2", "t", "Sales", ["bob"])
    access = Access(
        {"ann": ChannelRole.SUPERVISOR, "dan": ChannelRole.VIEWER}, {"team_1": ChannelRole.VIEWER}
    )
    rows = who_can_see(channel(access=access), [support, sales])
    assert rows == [
        ("ann", "supervisor", "Support"),
        ("bob", "viewer", "Support, Sales"),
        ("dan", "viewer", ""),
    ]
    everyone = Access({}, {}, None, ChannelRole.CONTRIBUTOR)
    assert who_can_see(channel(access=everyone), [sales]) == [("bob", "contributor", "Sales")]


def test_the_development_sign_in_needs_the_development_secret() -> None:
    from parley_onboarding.settings import OnboardingSettings
    from pydantic import ValidationError

    production: dict[str, object] = {
        "encryption_keys": "k1:" + "A" * 44,
        "meta_app_id": "app",
        "meta_app_secret": "s",
        "jwt_jwks_url": "https://id.example/jwks",
        "jwt_audience": "parley",
        "jwt_issuer": "https://id.example",
    }
    assert OnboardingSettings(**production).console_dev_sign_in is False  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="PARLEY_CONSOLE_DEV_SIGN_IN needs PARLEY_JWT_HS256_SECRET"):
        OnboardingSettings(**production, console_dev_sign_in=True)  # type: ignore[arg-type]


def test_the_whatsapp_page_says_who_acts_next_and_the_codes_clock() -> None:
    from parley_onboarding.console import whatsapp
    from parley_onboarding.domain.whatsapp import Actor, WhatsAppOnboarding
    from parley_providers.base import NumberRules

    rules = NumberRules(
        code_digits=6, code_validity=timedelta(minutes=10), pin_digits=6, display_name_problem=lambda _: None
    )
    onboarding = WhatsAppOnboarding(id="wa_1", tenant_id="t")
    assert whatsapp.waiting_for(onboarding) == (Actor.CUSTOMER, "You", None)
    assert [line.current for line in whatsapp.steps(onboarding)][:2] == [True, False]
    onboarding.sign_agreement("adm", NOW)
    onboarding.accept_terms("adm", NOW)
    onboarding.submit_details(
        phone_number="+14155550123",
        landline=False,
        business_manager_id="1",
        display_name="Acme",
        by="adm",
        at=NOW,
        rules=rules,
    )
    assert whatsapp.waiting_for(onboarding) == (Actor.PLATFORM, "The platform operator", None)
    assert whatsapp.ACTIONS.get(onboarding.step) is None  # the operator's step: nothing to click
    onboarding.account_created(phone_number_id="p", waba_id="w", by="op", at=NOW)
    onboarding.approve_business_manager_request("adm", NOW)
    assert whatsapp.waiting_for(onboarding) == (Actor.META, "Meta", "24-48 hours")
    onboarding.business_verified("op", NOW)
    assert whatsapp.code_clock(onboarding, rules, NOW) is None  # no code yet
    onboarding.code_requested("adm", NOW, rules)
    onboarding.code_rejected(1)

    clock = whatsapp.code_clock(onboarding, rules, NOW + timedelta(seconds=30))
    assert clock is not None
    assert (clock.digits, clock.validity_minutes, clock.attempts_left) == (6, 10, 4)
    assert (clock.valid_until, clock.expired, clock.can_resend) == (NOW + timedelta(minutes=10), False, False)
    later = whatsapp.code_clock(onboarding, rules, NOW + timedelta(minutes=11))
    assert later is not None and later.expired and later.can_resend
    done = [line for line in whatsapp.steps(onboarding) if line.done_at is not None]
    assert [line.done_by for line in done][-2:] == ["op", "adm"]


def test_attention_names_a_sending_restriction_with_its_code_and_times_in_the_page_s_language() -> None:
    from parley_onboarding.console import i18n

    restricted = channel()
    restricted.sends_refused(NOW - timedelta(hours=3), 10, 1893063)
    restricted.sends_refused(NOW - timedelta(minutes=5), 10, 1893063)
    [note] = attention(restricted, NOW, LEAD)
    assert note.startswith("Sending restricted: the provider refuses this account's sends for now")
    assert "(code 10/1893063; refused since 2026-11-30 09:00 UTC, last at 2026-11-30 11:55 UTC)" in note
    i18n.use("de")
    try:
        [german] = attention(restricted, NOW, LEAD)
    finally:
        i18n.use("en")
    assert german.startswith("Senden eingeschränkt:")
    assert "abgelehnt seit 30.11.2026, 09:00 UTC, zuletzt am 30.11.2026, 11:55 UTC" in german
    restricted.disconnect("a", NOW)
    assert attention(restricted, NOW, LEAD) == []  # a disconnected channel sends nothing anyway
