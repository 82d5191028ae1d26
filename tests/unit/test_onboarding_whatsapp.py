"""The WhatsApp onboarding state machine (domain/whatsapp.py): order, validation, the code."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from parley_onboarding.domain.errors import Conflict, DomainError
from parley_onboarding.domain.whatsapp import (
    MAX_CODE_ATTEMPTS,
    MAX_TOTAL_CODE_ATTEMPTS,
    META_REVIEW_WAIT,
    RESEND_COOLDOWN,
    Actor,
    Step,
    StepRecord,
    WhatsAppOnboarding,
    check_display_name,
    check_pin,
)
from parley_providers.whatsapp.connect import CODE_VALIDITY
from parley_providers.whatsapp.connect import NUMBER_RULES as RULES

pytestmark = pytest.mark.unit


def arabic_indic(digits: str) -> str:
    """The same digits written with ARABIC-INDIC DIGIT ZERO..NINE (str.isdigit() and \\d accept them)."""
    return "".join(chr(0x0660 + int(d)) for d in digits)


T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
CUSTOMER = "usr_customer"
PLATFORM = "platform"
META = "meta"

DETAILS: dict[str, Any] = {
    "phone_number": "+14155550123",
    "landline": False,
    "business_manager_id": "1234567890",
    "display_name": "Acme Support",
}


def fresh() -> WhatsAppOnboarding:
    return WhatsAppOnboarding(id="wa_1", tenant_id="ten_acme")


def at_step(step: Step, **fields: Any) -> WhatsAppOnboarding:
    onboarding = fresh()
    onboarding.step = step
    for name, value in fields.items():
        setattr(onboarding, name, value)
    return onboarding


def to_business_verified(**details: Any) -> WhatsAppOnboarding:
    onboarding = fresh()
    onboarding.sign_agreement(CUSTOMER, T0)
    onboarding.accept_terms(CUSTOMER, T0)
    onboarding.submit_details(**{**DETAILS, **details}, by=CUSTOMER, at=T0, rules=RULES)
    onboarding.account_created(phone_number_id="pn_1", waba_id="waba_1", by=PLATFORM, at=T0)
    onboarding.approve_business_manager_request(CUSTOMER, T0)
    onboarding.business_verified(META, T0)
    return onboarding


def with_code_sent(at: datetime = T0) -> WhatsAppOnboarding:
    onboarding = to_business_verified()
    onboarding.code_requested(CUSTOMER, at, RULES)
    return onboarding


# --- the happy path -----------------------------------------------------------------------------


def test_happy_path_in_order() -> None:
    onboarding = fresh()
    assert onboarding.step is Step.STARTED
    assert onboarding.next_actor is Actor.CUSTOMER
    assert onboarding.revision == 0
    assert onboarding.history == []

    def t(minutes: int) -> datetime:
        return T0 + timedelta(minutes=minutes)

    steps: list[tuple[Callable[[], StepRecord], Step, str, Actor, str | None]] = [
        (
            lambda: onboarding.sign_agreement(CUSTOMER, t(1)),
            Step.AGREEMENT_SIGNED,
            CUSTOMER,
            Actor.CUSTOMER,
            None,
        ),
        (
            lambda: onboarding.accept_terms(CUSTOMER, t(2)),
            Step.TERMS_ACCEPTED,
            CUSTOMER,
            Actor.CUSTOMER,
            None,
        ),
        (
            lambda: onboarding.submit_details(**DETAILS, by=CUSTOMER, at=t(3), rules=RULES),
            Step.DETAILS_SUBMITTED,
            CUSTOMER,
            Actor.PLATFORM,
            None,
        ),
        (
            lambda: onboarding.account_created(
                phone_number_id="pn_1", waba_id="waba_1", by=PLATFORM, at=t(4)
            ),
            Step.ACCOUNT_CREATED,
            PLATFORM,
            Actor.CUSTOMER,
            None,
        ),
        (
            lambda: onboarding.approve_business_manager_request(CUSTOMER, t(5)),
            Step.BM_REQUEST_APPROVED,
            CUSTOMER,
            Actor.META,
            "24-48 hours",
        ),
        (
            lambda: onboarding.business_verified(META, t(6)),
            Step.BUSINESS_VERIFIED,
            META,
            Actor.PLATFORM,
            None,
        ),
        (
            lambda: onboarding.code_requested(CUSTOMER, t(7), RULES),
            Step.CODE_SENT,
            CUSTOMER,
            Actor.CUSTOMER,
            "10 minutes",
        ),
        (
            lambda: onboarding.phone_verified(CUSTOMER, t(8)),
            Step.PHONE_VERIFIED,
            CUSTOMER,
            Actor.PLATFORM,
            None,
        ),
        (
            lambda: onboarding.activated("ch_1", PLATFORM, t(9)),
            Step.ACTIVATED,
            PLATFORM,
            Actor.CUSTOMER,
            None,
        ),
        (
            lambda: onboarding.profile_completed(CUSTOMER, t(10)),
            Step.PROFILE_COMPLETED,
            CUSTOMER,
            Actor.CUSTOMER,
            None,
        ),
        (
            lambda: onboarding.badge_requested(CUSTOMER, t(11)),
            Step.BADGE_REQUESTED,
            CUSTOMER,
            Actor.META,
            "24-48 hours",
        ),
        (
            lambda: onboarding.badge_decided(True, META, t(12)),
            Step.BADGE_DECIDED,
            META,
            Actor.CUSTOMER,
            None,
        ),
        (
            lambda: onboarding.templates_submitted(CUSTOMER, t(13)),
            Step.TEMPLATES_SUBMITTED,
            CUSTOMER,
            Actor.META,
            "24-48 hours",
        ),
    ]
    for index, (action, step, by, next_actor, wait) in enumerate(steps, start=1):
        if step is Step.PHONE_VERIFIED:
            onboarding.check_code_attempt("123456", t(7) + timedelta(minutes=1), RULES)
        record = action()
        assert record == StepRecord(step=step, at=t(index), by=by, next_actor=next_actor, expected_wait=wait)
        assert onboarding.step is step
        assert onboarding.next_actor is next_actor
        assert onboarding.revision == index
        assert onboarding.history[-1] is record
        assert len(onboarding.history) == index

    assert [r.step for r in onboarding.history] == [s[1] for s in steps]
    assert onboarding.phone_number == "+14155550123"
    assert onboarding.business_manager_id == "1234567890"
    assert onboarding.display_name == "Acme Support"
    assert onboarding.landline is False
    assert onboarding.phone_number_id == "pn_1"
    assert onboarding.waba_id == "waba_1"
    assert onboarding.channel_id == "ch_1"
    assert onboarding.badge_approved is True


def test_meta_review_wait() -> None:
    assert META_REVIEW_WAIT == "24-48 hours"


def test_history_records_who_and_when() -> None:
    onboarding = fresh()
    onboarding.sign_agreement("usr_a", T0)
    onboarding.accept_terms("usr_b", T0 + timedelta(hours=1))
    assert [(r.step, r.by, r.at) for r in onboarding.history] == [
        (Step.AGREEMENT_SIGNED, "usr_a", T0),
        (Step.TERMS_ACCEPTED, "usr_b", T0 + timedelta(hours=1)),
    ]


def test_badge_refused_is_recorded() -> None:
    onboarding = at_step(Step.BADGE_REQUESTED)
    onboarding.badge_decided(False, META, T0)
    assert onboarding.badge_approved is False
    assert onboarding.step is Step.BADGE_DECIDED


@pytest.mark.parametrize(
    "start",
    [
        Step.ACTIVATED,
        Step.PROFILE_COMPLETED,
        Step.BADGE_REQUESTED,
        Step.BADGE_DECIDED,
        Step.TEMPLATES_SUBMITTED,
    ],
)
def test_templates_may_be_submitted_once_active_badge_or_not(start: Step) -> None:
    onboarding = at_step(start)
    record = onboarding.templates_submitted(CUSTOMER, T0)
    assert record.step is Step.TEMPLATES_SUBMITTED
    assert record.next_actor is Actor.META
    assert record.expected_wait == "24-48 hours"


def test_templates_may_be_submitted_again() -> None:
    onboarding = at_step(Step.ACTIVATED)
    onboarding.templates_submitted(CUSTOMER, T0)
    onboarding.templates_submitted(CUSTOMER, T0 + timedelta(days=1))
    assert onboarding.revision == 2
    assert [r.step for r in onboarding.history] == [Step.TEMPLATES_SUBMITTED] * 2


# --- out of order -------------------------------------------------------------------------------

ACTIONS: dict[str, tuple[Callable[[WhatsAppOnboarding], object], tuple[Step, ...]]] = {
    "sign_agreement": (lambda o: o.sign_agreement(CUSTOMER, T0), (Step.STARTED,)),
    "accept_terms": (lambda o: o.accept_terms(CUSTOMER, T0), (Step.AGREEMENT_SIGNED,)),
    "submit_details": (
        lambda o: o.submit_details(**DETAILS, by=CUSTOMER, at=T0, rules=RULES),
        (Step.TERMS_ACCEPTED,),
    ),
    "account_created": (
        lambda o: o.account_created(phone_number_id="pn", waba_id="waba", by=PLATFORM, at=T0),
        (Step.DETAILS_SUBMITTED,),
    ),
    "approve_business_manager_request": (
        lambda o: o.approve_business_manager_request(CUSTOMER, T0),
        (Step.ACCOUNT_CREATED,),
    ),
    "business_verified": (lambda o: o.business_verified(META, T0), (Step.BM_REQUEST_APPROVED,)),
    "code_requested": (
        lambda o: o.code_requested(CUSTOMER, T0, RULES),
        (Step.BUSINESS_VERIFIED, Step.CODE_SENT),
    ),
    "check_code_attempt": (lambda o: o.check_code_attempt("123456", T0, RULES), (Step.CODE_SENT,)),
    "phone_verified": (lambda o: o.phone_verified(CUSTOMER, T0), (Step.CODE_SENT,)),
    "signed_up": (
        lambda o: o.signed_up(
            phone_number_id="pn", waba_id="waba", phone_number=None, display_name=None, by=CUSTOMER, at=T0
        ),
        (Step.STARTED,),
    ),
    "activated": (
        lambda o: o.activated("ch_1", PLATFORM, T0),
        (Step.PHONE_VERIFIED, Step.EMBEDDED_SIGNUP_COMPLETED),
    ),
    "profile_completed": (lambda o: o.profile_completed(CUSTOMER, T0), (Step.ACTIVATED,)),
    "badge_requested": (lambda o: o.badge_requested(CUSTOMER, T0), (Step.PROFILE_COMPLETED,)),
    "badge_decided": (lambda o: o.badge_decided(True, META, T0), (Step.BADGE_REQUESTED,)),
    "templates_submitted": (
        lambda o: o.templates_submitted(CUSTOMER, T0),
        (
            Step.ACTIVATED,
            Step.PROFILE_COMPLETED,
            Step.BADGE_REQUESTED,
            Step.BADGE_DECIDED,
            Step.TEMPLATES_SUBMITTED,
        ),
    ),
}

WRONG_STARTS = [
    pytest.param(action, step, id=f"{action}-from-{step.value}")
    for action, (_, allowed) in ACTIONS.items()
    for step in Step
    if step not in allowed
]


@pytest.mark.parametrize(("action", "start"), WRONG_STARTS)
def test_out_of_order_transition_refused(action: str, start: Step) -> None:
    run, _ = ACTIONS[action]
    onboarding = at_step(start)
    with pytest.raises(Conflict) as exc:
        run(onboarding)
    assert exc.value.code == "INVALID_TRANSITION"
    assert exc.value.status == 409
    assert exc.value.details == {"current_step": start.value}
    assert start.value in exc.value.message
    # nothing changed
    assert onboarding.step is start
    assert onboarding.revision == 0
    assert onboarding.history == []
    assert onboarding.channel_id is None
    assert onboarding.phone_number is None
    assert onboarding.code_sent_at is None


def test_every_step_is_covered_by_the_table() -> None:
    startable = {step for _, allowed in ACTIONS.values() for step in allowed}
    assert startable == set(Step)
    assert len(WRONG_STARTS) == sum(len(Step) - len(allowed) for _, allowed in ACTIONS.values())


def test_embedded_signup_goes_from_started_to_activated_with_the_confirmed_ids() -> None:
    onboarding = fresh()
    signed = onboarding.signed_up(
        phone_number_id="pn_1",
        waba_id="waba_1",
        phone_number="+15550100001",
        display_name="Acme",
        by=CUSTOMER,
        at=T0,
    )
    assert (signed.step, signed.next_actor) == (Step.EMBEDDED_SIGNUP_COMPLETED, Actor.PLATFORM)
    assert (onboarding.phone_number_id, onboarding.waba_id, onboarding.phone_number) == (
        "pn_1",
        "waba_1",
        "+15550100001",
    )
    onboarding.activated("ch_1", PLATFORM, T0)
    assert (onboarding.step, onboarding.channel_id) == (Step.ACTIVATED, "ch_1")
    # the code steps of the other path never apply to it
    with pytest.raises(Conflict):
        onboarding.code_requested(CUSTOMER, T0, RULES)


def test_a_step_cannot_be_repeated() -> None:
    onboarding = fresh()
    onboarding.sign_agreement(CUSTOMER, T0)
    with pytest.raises(Conflict) as exc:
        onboarding.sign_agreement(CUSTOMER, T0)
    assert exc.value.code == "INVALID_TRANSITION"
    assert onboarding.revision == 1


# --- submit_details -----------------------------------------------------------------------------


def submit(**overrides: Any) -> WhatsAppOnboarding:
    onboarding = at_step(Step.TERMS_ACCEPTED)
    onboarding.submit_details(**{**DETAILS, **overrides}, by=CUSTOMER, at=T0, rules=RULES)
    return onboarding


@pytest.mark.parametrize("phone", ["+14155550123", "+4915112345678", "+3312345", "+123456789012345"])
def test_e164_numbers_accepted(phone: str) -> None:
    assert submit(phone_number=phone).phone_number == phone


@pytest.mark.parametrize(
    "phone",
    [
        pytest.param("14155550123", id="no-plus"),
        pytest.param("+04155550123", id="leading-zero"),
        pytest.param("+1 415 555 0123", id="spaces"),
        pytest.param("+1-415-555-0123", id="dashes"),
        pytest.param("+(415)5550123", id="brackets"),
        pytest.param("+123456", id="too-short"),
        pytest.param("+1234567890123456", id="too-long"),
        pytest.param("", id="empty"),
        pytest.param("+", id="plus-only"),
        pytest.param("+1415555012a", id="letter"),
        pytest.param("00314155550123", id="international-prefix"),
    ],
)
def test_non_e164_numbers_refused(phone: str) -> None:
    onboarding = at_step(Step.TERMS_ACCEPTED)
    with pytest.raises(DomainError) as exc:
        onboarding.submit_details(**{**DETAILS, "phone_number": phone}, by=CUSTOMER, at=T0, rules=RULES)
    assert not isinstance(exc.value, Conflict)
    assert exc.value.code == "INVALID_PHONE_NUMBER"
    assert exc.value.details == {"field": "phone_number"}
    assert onboarding.step is Step.TERMS_ACCEPTED
    assert onboarding.revision == 0
    assert onboarding.phone_number is None


@pytest.mark.parametrize(
    "phone",
    [
        pytest.param("+14155550123\n", id="trailing-newline"),
        pytest.param("+1" + arabic_indic("4155550123"), id="arabic-indic-digits"),
    ],
)
def test_e164_refuses_trailing_newline_and_non_ascii_digits(phone: str) -> None:
    with pytest.raises(DomainError) as exc:
        submit(phone_number=phone)
    assert exc.value.code == "INVALID_PHONE_NUMBER"


@pytest.mark.parametrize("bm_id", ["abc", "12ab34", "", " 123", "12-34", "-123", "1.5"])
def test_business_manager_id_must_be_numeric(bm_id: str) -> None:
    onboarding = at_step(Step.TERMS_ACCEPTED)
    with pytest.raises(DomainError) as exc:
        onboarding.submit_details(
            **{**DETAILS, "business_manager_id": bm_id}, by=CUSTOMER, at=T0, rules=RULES
        )
    assert exc.value.code == "INVALID_BUSINESS_MANAGER_ID"
    assert exc.value.details == {"field": "business_manager_id"}
    assert onboarding.step is Step.TERMS_ACCEPTED
    assert onboarding.business_manager_id is None


@pytest.mark.parametrize(
    "bm_id", [pytest.param("12²", id="superscript"), pytest.param(arabic_indic("123"), id="arabic-indic")]
)
def test_business_manager_id_refuses_non_ascii_digits(bm_id: str) -> None:
    with pytest.raises(DomainError) as exc:
        submit(business_manager_id=bm_id)
    assert exc.value.code == "INVALID_BUSINESS_MANAGER_ID"


def test_bad_display_name_refused_on_submit() -> None:
    onboarding = at_step(Step.TERMS_ACCEPTED)
    with pytest.raises(DomainError) as exc:
        onboarding.submit_details(
            **{**DETAILS, "display_name": "WhatsApp Shop"}, by=CUSTOMER, at=T0, rules=RULES
        )
    assert exc.value.code == "INVALID_DISPLAY_NAME"
    assert onboarding.display_name is None
    assert onboarding.phone_number is None
    assert onboarding.step is Step.TERMS_ACCEPTED


@pytest.mark.parametrize("landline", [False, True])
def test_landline_is_kept_for_the_code_request(landline: bool) -> None:
    assert submit(landline=landline).landline is landline


# --- the two-step verification PIN --------------------------------------------------------------


def test_a_pin_of_the_providers_digits_is_taken_and_none_means_one_is_generated() -> None:
    assert check_pin("012345", RULES) == "012345"
    assert check_pin(None, RULES) is None


@pytest.mark.parametrize("pin", ["12345", "1234567", "12345a", arabic_indic("123456"), 123456, ""])
def test_a_pin_that_is_not_six_ascii_digits_is_refused(pin: object) -> None:
    with pytest.raises(DomainError) as exc:
        check_pin(pin, RULES)
    assert (exc.value.code, exc.value.details) == ("INVALID_PIN", {"field": "pin"})
    assert exc.value.message == "the two-step verification PIN has 6 digits"


# --- display names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "Acme Support",
        "Acme",
        "ABC",
        "NASA",
        "ACMEX",
        "IBM Store",
        "NASA Gift Shop",
        "Tom & Jerry's",
        "Acme, Inc.",
        "Dr. Smith Dental",
        "Café Zoë",
        "東京寿司",
        "7-Eleven Store",
        "A-1 Plumbing",
        "St. Louis Bakery",
    ],
)
def test_good_display_names_pass(name: str) -> None:
    assert check_display_name(name, RULES) == name


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("www.acme.com", id="www"),
        pytest.param("https://acme.io", id="https"),
        pytest.param("http://acme", id="http"),
        pytest.param("acme.com", id="domain"),
        pytest.param("Shop at acme.store/sale", id="domain-path"),
        pytest.param("WhatsApp Shop", id="whatsapp"),
        pytest.param("Acme whatsapp help", id="whatsapp-lower"),
        pytest.param("AcmeWHATSAPP", id="whatsapp-upper"),
        pytest.param("Acme 🍕", id="emoji"),
        pytest.param("❤ Acme", id="heart"),
        pytest.param("Acme ✔", id="check-mark"),
        pytest.param("ACMEXY", id="six-capitals"),
        pytest.param("ACME SUPPORT", id="all-caps"),
        pytest.param("ACME-SHOP 24", id="all-caps-with-digits"),
        pytest.param("", id="empty"),
        pytest.param("A", id="one-char"),
        pytest.param("AB", id="two-chars"),
        pytest.param(" Acme", id="leading-space"),
        pytest.param("Acme ", id="trailing-space"),
        pytest.param("   ", id="spaces"),
        pytest.param("Acme!!", id="exclamations"),
        pytest.param("Acme...", id="ellipsis"),
        pytest.param("Acme -- Shop", id="dashes"),
        pytest.param("Acme?!", id="mixed-punctuation"),
        pytest.param("Acme ** Shop", id="stars"),
    ],
)
def test_bad_display_names_refused(name: str) -> None:
    with pytest.raises(DomainError) as exc:
        check_display_name(name, RULES)
    assert exc.value.code == "INVALID_DISPLAY_NAME"
    assert exc.value.details == {"field": "display_name"}


def test_acronym_limit_is_five_letters() -> None:
    assert check_display_name("ABCDE", RULES) == "ABCDE"
    with pytest.raises(DomainError):
        check_display_name("ABCDEF", RULES)


def test_shortest_name_is_three_characters() -> None:
    assert check_display_name("Abc", RULES) == "Abc"
    with pytest.raises(DomainError):
        check_display_name("Ab", RULES)


# --- the code -----------------------------------------------------------------------------------


def test_code_request_records_time_and_resets_attempts() -> None:
    onboarding = to_business_verified()
    record = onboarding.code_requested(CUSTOMER, T0, RULES)
    assert onboarding.code_sent_at == T0
    assert onboarding.code_attempts == 0
    assert record.expected_wait == "10 minutes"


def test_code_attempt_within_validity_allowed() -> None:
    onboarding = with_code_sent()
    assert timedelta(minutes=10) == CODE_VALIDITY
    onboarding.check_code_attempt("123456", T0, RULES)
    onboarding.check_code_attempt("000000", T0 + timedelta(minutes=5), RULES)
    onboarding.check_code_attempt("123456", T0 + timedelta(minutes=10), RULES)  # exactly 10 minutes
    assert onboarding.revision == 7  # checking changes nothing


@pytest.mark.parametrize("late", [timedelta(minutes=10, seconds=1), timedelta(hours=1)])
def test_code_attempt_after_validity_refused(late: timedelta) -> None:
    onboarding = with_code_sent()
    with pytest.raises(DomainError) as exc:
        onboarding.check_code_attempt("123456", T0 + late, RULES)
    assert exc.value.code == "CODE_EXPIRED"


@pytest.mark.parametrize("code", ["12345", "1234567", "12345a", "", "123 456", " 12345", "12-456", "abcdef"])
def test_code_must_be_six_digits(code: str) -> None:
    onboarding = with_code_sent()
    with pytest.raises(DomainError) as exc:
        onboarding.check_code_attempt(code, T0, RULES)
    assert exc.value.code == "INVALID_CODE_FORMAT"
    assert exc.value.details == {"field": "code"}


@pytest.mark.parametrize(
    "code",
    [pytest.param(arabic_indic("123456"), id="arabic-indic"), pytest.param("12345²", id="superscript")],
)
def test_code_refuses_non_ascii_digits(code: str) -> None:
    onboarding = with_code_sent()
    with pytest.raises(DomainError) as exc:
        onboarding.check_code_attempt(code, T0, RULES)
    assert exc.value.code == "INVALID_CODE_FORMAT"


def test_code_rejected_returns_attempts_left() -> None:
    onboarding = with_code_sent()
    revision = onboarding.revision
    left = [onboarding.code_rejected() for _ in range(MAX_CODE_ATTEMPTS)]
    assert left == list(range(MAX_CODE_ATTEMPTS - 1, -1, -1))
    assert onboarding.code_attempts == MAX_CODE_ATTEMPTS
    assert onboarding.revision == revision + MAX_CODE_ATTEMPTS
    assert onboarding.step is Step.CODE_SENT


def test_too_many_attempts() -> None:
    assert MAX_CODE_ATTEMPTS == 5
    onboarding = with_code_sent()
    for _ in range(MAX_CODE_ATTEMPTS - 1):
        onboarding.check_code_attempt("123456", T0, RULES)
        onboarding.code_rejected()
    onboarding.check_code_attempt("123456", T0, RULES)  # the fifth attempt is still allowed
    onboarding.code_rejected()
    with pytest.raises(DomainError) as exc:
        onboarding.check_code_attempt("123456", T0, RULES)  # the sixth is not
    assert exc.value.code == "TOO_MANY_ATTEMPTS"


def test_resend_too_soon() -> None:
    onboarding = with_code_sent()
    revision = onboarding.revision
    with pytest.raises(DomainError) as exc:
        onboarding.code_requested(CUSTOMER, T0 + timedelta(seconds=10), RULES)
    assert exc.value.code == "RESEND_TOO_SOON"
    retry_after = exc.value.details["retry_after_s"]
    assert isinstance(retry_after, int)
    assert 50 <= retry_after <= 51
    assert onboarding.code_sent_at == T0
    assert onboarding.revision == revision
    # waiting as told is enough
    onboarding.code_requested(CUSTOMER, T0 + timedelta(seconds=10 + retry_after), RULES)


@pytest.mark.parametrize(
    "elapsed", [timedelta(0), timedelta(seconds=1), timedelta(seconds=59, microseconds=999_999)]
)
def test_resend_refused_within_cooldown(elapsed: timedelta) -> None:
    onboarding = with_code_sent()
    with pytest.raises(DomainError) as exc:
        onboarding.code_requested(CUSTOMER, T0 + elapsed, RULES)
    assert exc.value.code == "RESEND_TOO_SOON"
    retry_after = exc.value.details["retry_after_s"]
    assert isinstance(retry_after, int)
    assert 1 <= retry_after <= 61
    assert retry_after >= (RESEND_COOLDOWN - elapsed).total_seconds()


def test_resend_after_cooldown_keeps_the_count_and_renews_validity() -> None:
    """Security #13 finding 12: a resend does not reset the attempt count to zero."""
    onboarding = with_code_sent()
    onboarding.code_rejected()
    onboarding.code_rejected()
    resent_at = T0 + RESEND_COOLDOWN  # exactly the cooldown
    record = onboarding.code_requested(CUSTOMER, resent_at, RULES)
    assert record.step is Step.CODE_SENT
    assert record.at == resent_at
    assert onboarding.code_attempts == 2
    # the new code has its own allowance, numbered after the attempts already made
    assert onboarding.attempt_numbers == range(3, 3 + MAX_CODE_ATTEMPTS)
    assert onboarding.code_sent_at == resent_at
    assert [r.step for r in onboarding.history[-2:]] == [Step.CODE_SENT, Step.CODE_SENT]
    # the new code is valid 10 minutes from the resend
    onboarding.check_code_attempt("123456", resent_at + CODE_VALIDITY, RULES)
    with pytest.raises(DomainError) as exc:
        onboarding.check_code_attempt("123456", resent_at + CODE_VALIDITY + timedelta(seconds=1), RULES)
    assert exc.value.code == "CODE_EXPIRED"


def test_resend_after_too_many_attempts_allows_trying_again() -> None:
    onboarding = with_code_sent()
    for _ in range(MAX_CODE_ATTEMPTS):
        onboarding.code_rejected()
    with pytest.raises(DomainError):
        onboarding.check_code_attempt("123456", T0, RULES)
    onboarding.code_requested(CUSTOMER, T0 + timedelta(minutes=2), RULES)
    onboarding.check_code_attempt("123456", T0 + timedelta(minutes=2), RULES)


def test_a_resend_numbers_the_new_code_after_the_highest_claimed_attempt() -> None:
    """Review P2-3: a claim never released (the service stopped while Meta was asked) must not
    make the new code's numbers taken already; it counts toward the onboarding's total."""
    onboarding = with_code_sent()
    onboarding.code_rejected(1)
    resent_at = T0 + RESEND_COOLDOWN
    onboarding.code_requested(CUSTOMER, resent_at, RULES, highest_claimed=4)
    assert onboarding.attempt_numbers == range(5, 5 + MAX_CODE_ATTEMPTS)
    onboarding.check_code_attempt("123456", resent_at, RULES)  # the new code may be tried
    # lower than the count: the count decides
    onboarding.code_requested(CUSTOMER, resent_at + RESEND_COOLDOWN, RULES, highest_claimed=0)
    assert onboarding.attempt_numbers == range(2, 2 + MAX_CODE_ATTEMPTS)
    # claims up to the onboarding's total: no code is sent
    with pytest.raises(DomainError) as exc:
        onboarding.code_requested(CUSTOMER, resent_at + 2 * RESEND_COOLDOWN, RULES, MAX_TOTAL_CODE_ATTEMPTS)
    assert exc.value.code == "TOO_MANY_ATTEMPTS"


def test_attempt_numbers_of_the_first_code() -> None:
    onboarding = with_code_sent()
    assert onboarding.attempt_numbers == range(1, MAX_CODE_ATTEMPTS + 1)


def test_a_claimed_attempt_number_counts_once_whatever_the_order() -> None:
    """Concurrent attempts record the numbers they claimed; a late, lower number changes nothing."""
    onboarding = with_code_sent()
    assert onboarding.code_rejected(3) == MAX_CODE_ATTEMPTS - 3
    assert onboarding.code_rejected(1) == MAX_CODE_ATTEMPTS - 3
    assert onboarding.code_attempts == 3


def test_attempts_over_every_code_are_capped() -> None:
    """Resending cannot buy unlimited guesses: MAX_TOTAL_CODE_ATTEMPTS over the whole onboarding."""
    assert MAX_TOTAL_CODE_ATTEMPTS == 15
    onboarding = with_code_sent()
    at = T0
    for _ in range(MAX_TOTAL_CODE_ATTEMPTS // MAX_CODE_ATTEMPTS):
        for _ in range(MAX_CODE_ATTEMPTS):
            onboarding.check_code_attempt("123456", at, RULES)
            onboarding.code_rejected()
        with pytest.raises(DomainError) as exc:
            onboarding.check_code_attempt("123456", at, RULES)
        assert exc.value.code == "TOO_MANY_ATTEMPTS"
        at += RESEND_COOLDOWN
        if onboarding.code_attempts < MAX_TOTAL_CODE_ATTEMPTS:
            onboarding.code_requested(CUSTOMER, at, RULES)
    assert onboarding.code_attempts == MAX_TOTAL_CODE_ATTEMPTS
    with pytest.raises(DomainError) as exc:
        onboarding.code_requested(CUSTOMER, at, RULES)
    assert exc.value.code == "TOO_MANY_ATTEMPTS"
    assert "contact support" in exc.value.message
