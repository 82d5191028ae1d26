"""The WhatsApp number onboarding as a state machine (pure).

Steps follow the product's help-center article: agreement signed, WhatsApp Business terms
accepted, details submitted (E.164 number, landline or mobile, Business Manager id, display name),
account created, the Business Manager request approved, business verification completed in the
Security Center, the number verified with a code (SMS for mobiles, a voice call for landlines),
activation, business profile and logo, the verified badge, and message templates. Every step
records who acts next and how long Meta usually takes. The profile and templates steps are reached
when the provider's API accepts them (the service's business profile and template calls), never typed
in by hand.

Embedded Signup is the other way in: Meta's own window does the agreement, terms, details, account
and number verification, so an onboarding started by it goes from ``started`` straight to
``embedded_signup_completed`` (the ids the provider confirmed), then to ``activated``; the steps
after activation are the same as the step-by-step path's.

What WhatsApp itself asks of the code, the PIN and the display name (digits, validity, naming
rules) is the provider's: the service passes its connector's :class:`NumberRules`. The attempt
allowance and the resend cooldown are Parley's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from parley_providers.base import NumberRules

from parley_onboarding.domain.errors import Conflict, DomainError

RESEND_COOLDOWN = timedelta(seconds=60)
MAX_CODE_ATTEMPTS = 5
# across every code of one onboarding: a resend gives a new code MAX_CODE_ATTEMPTS more tries but
# never resets the count, so guessing is bounded however often a code is asked for
MAX_TOTAL_CODE_ATTEMPTS = 3 * MAX_CODE_ATTEMPTS
META_REVIEW_WAIT = "24-48 hours"


class Step(StrEnum):
    """Where an onboarding is; each value is the last step completed."""

    STARTED = "started"
    EMBEDDED_SIGNUP_COMPLETED = "embedded_signup_completed"
    AGREEMENT_SIGNED = "agreement_signed"
    TERMS_ACCEPTED = "terms_accepted"
    DETAILS_SUBMITTED = "details_submitted"
    ACCOUNT_CREATED = "account_created"
    BM_REQUEST_APPROVED = "business_manager_request_approved"
    BUSINESS_VERIFIED = "business_verified"
    CODE_SENT = "code_sent"
    PHONE_VERIFIED = "phone_verified"
    ACTIVATED = "activated"
    PROFILE_COMPLETED = "profile_completed"
    BADGE_REQUESTED = "badge_requested"
    BADGE_DECIDED = "badge_decided"
    TEMPLATES_SUBMITTED = "templates_submitted"


class Actor(StrEnum):
    """Who must act for the onboarding to move on."""

    CUSTOMER = "customer"
    PLATFORM = "platform"
    META = "meta"
    NONE = "none"


# step completed -> (who acts next, usual wait)
NEXT: dict[Step, tuple[Actor, str | None]] = {
    Step.STARTED: (Actor.CUSTOMER, None),
    Step.EMBEDDED_SIGNUP_COMPLETED: (Actor.PLATFORM, None),
    Step.AGREEMENT_SIGNED: (Actor.CUSTOMER, None),
    Step.TERMS_ACCEPTED: (Actor.CUSTOMER, None),
    Step.DETAILS_SUBMITTED: (Actor.PLATFORM, None),
    Step.ACCOUNT_CREATED: (Actor.CUSTOMER, None),
    Step.BM_REQUEST_APPROVED: (Actor.META, META_REVIEW_WAIT),
    Step.BUSINESS_VERIFIED: (Actor.PLATFORM, None),
    Step.CODE_SENT: (Actor.CUSTOMER, None),  # the code's validity: the provider's rules say it
    Step.PHONE_VERIFIED: (Actor.PLATFORM, None),
    Step.ACTIVATED: (Actor.CUSTOMER, None),
    Step.PROFILE_COMPLETED: (Actor.CUSTOMER, None),
    Step.BADGE_REQUESTED: (Actor.META, META_REVIEW_WAIT),
    Step.BADGE_DECIDED: (Actor.CUSTOMER, None),
    Step.TEMPLATES_SUBMITTED: (Actor.META, META_REVIEW_WAIT),
}

# The steps only the platform operator (role ``operator``) may record: what the platform or Meta
# did, which a tenant admin could otherwise claim. Creating the account names the WABA, the number
# and the token (security #13 finding 7); business verification and the badge are Meta's verdicts.
# Activation is never recorded by hand: it follows from Meta accepting the code. The customer keeps
# the agreement, terms, details, the Business Manager approval, the code, profile, badge request
# and templates.
OPERATOR_STEPS = frozenset({"account-created", "business-verified", "badge-decided"})

# the step a transition requires -> the step it completes
ORDER: list[Step] = list(Step)

_E164 = re.compile(r"\+[1-9][0-9]{6,14}", re.ASCII)


def _ascii_digits(text: str) -> bool:
    """Only 0-9 (``str.isdigit`` also accepts superscripts and other scripts' digits)."""
    return bool(text) and all("0" <= ch <= "9" for ch in text)


def _minutes(delta: timedelta) -> str:
    return f"{int(delta.total_seconds() // 60)} minutes"


def check_display_name(name: str, rules: NumberRules) -> str:
    """The name, unless the provider's display-name rules refuse it without a review."""
    problem = rules.display_name_problem(name)
    if problem is not None:
        raise DomainError("INVALID_DISPLAY_NAME", problem, field="display_name")
    return name


def check_pin(pin: object, rules: NumberRules) -> str | None:
    """A two-step verification PIN given by the customer (None: none given, one is generated)."""
    if pin is None:
        return None
    if not (isinstance(pin, str) and len(pin) == rules.pin_digits and _ascii_digits(pin)):
        raise DomainError(
            "INVALID_PIN", f"the two-step verification PIN has {rules.pin_digits} digits", field="pin"
        )
    return pin


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One completed step: when, by whom, and what comes next."""

    step: Step
    at: datetime
    by: str | None
    next_actor: Actor
    expected_wait: str | None


@dataclass
class WhatsAppOnboarding:
    """One number's way from agreement to an active channel with approved templates."""

    id: str
    tenant_id: str
    step: Step = Step.STARTED
    history: list[StepRecord] = field(default_factory=list)
    phone_number: str | None = None
    landline: bool = False
    business_manager_id: str | None = None
    display_name: str | None = None
    phone_number_id: str | None = None
    waba_id: str | None = None
    code_sent_at: datetime | None = None
    code_attempts: int = 0  # attempts on every code so far (a resend does not reset it)
    code_attempts_before: int = 0  # the count when the current code was sent
    badge_approved: bool | None = None
    channel_id: str | None = None
    revision: int = 0

    @property
    def next_actor(self) -> Actor:
        return NEXT[self.step][0]

    def _require(self, *allowed: Step) -> None:
        if self.step not in allowed:
            expected = " or ".join(s.value for s in allowed)
            raise Conflict(
                "INVALID_TRANSITION",
                f"this step needs the onboarding at {expected}; it is at {self.step.value}",
                current_step=self.step.value,
            )

    def _complete(self, step: Step, at: datetime, by: str | None, wait: str | None = None) -> StepRecord:
        self.step = step
        actor, usual = NEXT[step]
        record = StepRecord(step=step, at=at, by=by, next_actor=actor, expected_wait=wait or usual)
        self.history.append(record)
        self.revision += 1
        return record

    def sign_agreement(self, by: str, at: datetime) -> StepRecord:
        self._require(Step.STARTED)
        return self._complete(Step.AGREEMENT_SIGNED, at, by)

    def accept_terms(self, by: str, at: datetime) -> StepRecord:
        self._require(Step.AGREEMENT_SIGNED)
        return self._complete(Step.TERMS_ACCEPTED, at, by)

    def submit_details(
        self,
        *,
        phone_number: str,
        landline: bool,
        business_manager_id: str,
        display_name: str,
        by: str,
        at: datetime,
        rules: NumberRules,
    ) -> StepRecord:
        self._require(Step.TERMS_ACCEPTED)
        if not _E164.fullmatch(phone_number):
            raise DomainError(
                "INVALID_PHONE_NUMBER", "phone_number must be E.164, e.g. +14155550123", field="phone_number"
            )
        if not _ascii_digits(business_manager_id):
            raise DomainError(
                "INVALID_BUSINESS_MANAGER_ID", "business_manager_id is numeric", field="business_manager_id"
            )
        self.display_name = check_display_name(display_name, rules)
        self.phone_number = phone_number
        self.landline = landline
        self.business_manager_id = business_manager_id
        return self._complete(Step.DETAILS_SUBMITTED, at, by)

    def account_created(self, *, phone_number_id: str, waba_id: str, by: str, at: datetime) -> StepRecord:
        self._require(Step.DETAILS_SUBMITTED)
        self.phone_number_id = phone_number_id
        self.waba_id = waba_id
        return self._complete(Step.ACCOUNT_CREATED, at, by)

    def approve_business_manager_request(self, by: str, at: datetime) -> StepRecord:
        self._require(Step.ACCOUNT_CREATED)
        return self._complete(Step.BM_REQUEST_APPROVED, at, by)

    def business_verified(self, by: str, at: datetime) -> StepRecord:
        self._require(Step.BM_REQUEST_APPROVED)
        return self._complete(Step.BUSINESS_VERIFIED, at, by)

    def _out_of_attempts(self) -> DomainError:
        return DomainError(
            "TOO_MANY_ATTEMPTS",
            f"{MAX_TOTAL_CODE_ATTEMPTS} codes tried on this onboarding; contact support",
            attempts=self.code_attempts,
        )

    def code_requested(
        self, by: str, at: datetime, rules: NumberRules, highest_claimed: int = 0
    ) -> StepRecord:
        """A code is (re)sent; resending waits for a cooldown. The attempt count is kept: the new
        code gets up to MAX_CODE_ATTEMPTS tries within the onboarding's MAX_TOTAL_CODE_ATTEMPTS.
        The customer then has the code's validity to type it.

        ``highest_claimed`` is the highest attempt number claimed so far: the new code's numbers
        come after it, so a claim that was never released (the service stopped while Meta was
        asked) cannot make the new code's numbers taken already.
        """
        self._require(Step.BUSINESS_VERIFIED, Step.CODE_SENT)
        used = max(self.code_attempts, highest_claimed)
        if used >= MAX_TOTAL_CODE_ATTEMPTS:
            raise self._out_of_attempts()
        if self.code_sent_at is not None and at - self.code_sent_at < RESEND_COOLDOWN:
            wait = int((RESEND_COOLDOWN - (at - self.code_sent_at)).total_seconds()) + 1
            raise DomainError(
                "RESEND_TOO_SOON", f"wait {wait} seconds before asking for another code", retry_after_s=wait
            )
        self.code_sent_at = at
        self.code_attempts_before = used
        return self._complete(Step.CODE_SENT, at, by, wait=_minutes(rules.code_validity))

    @property
    def attempt_numbers(self) -> range:
        """The attempt numbers (1-based, over the whole onboarding) the current code may use.

        The service claims one of them (a unique insert) before each call to Meta, so concurrent
        attempts cannot exceed the allowance whatever the order of their saves.
        """
        last = min(self.code_attempts_before + MAX_CODE_ATTEMPTS, MAX_TOTAL_CODE_ATTEMPTS)
        return range(self.code_attempts_before + 1, last + 1)

    def check_code_attempt(self, code: str, at: datetime, rules: NumberRules) -> None:
        """Refuse an attempt before asking Meta: bad format, expired code, or too many tries."""
        self._require(Step.CODE_SENT)
        assert self.code_sent_at is not None
        if at - self.code_sent_at > rules.code_validity:
            raise DomainError(
                "CODE_EXPIRED", f"the code is valid for {_minutes(rules.code_validity)}; ask for a new one"
            )
        if self.code_attempts >= MAX_TOTAL_CODE_ATTEMPTS:
            raise self._out_of_attempts()
        if self.code_attempts >= self.attempt_numbers.stop - 1:
            raise DomainError("TOO_MANY_ATTEMPTS", f"{MAX_CODE_ATTEMPTS} wrong codes; ask for a new one")
        if not (len(code) == rules.code_digits and _ascii_digits(code)):
            raise DomainError("INVALID_CODE_FORMAT", f"the code has {rules.code_digits} digits", field="code")

    def code_rejected(self, attempt: int | None = None) -> int:
        """Meta said the code was wrong (``attempt``: the number claimed for it); the attempts left
        on the current code."""
        self.code_attempts = max(self.code_attempts + 1 if attempt is None else attempt, self.code_attempts)
        self.revision += 1
        return max(0, self.attempt_numbers.stop - 1 - self.code_attempts)

    def phone_verified(self, by: str, at: datetime) -> StepRecord:
        self._require(Step.CODE_SENT)
        return self._complete(Step.PHONE_VERIFIED, at, by)

    def signed_up(
        self,
        *,
        phone_number_id: str,
        waba_id: str,
        phone_number: str | None,
        display_name: str | None,
        by: str,
        at: datetime,
    ) -> StepRecord:
        """Embedded Signup finished and the provider confirmed its account and number: the
        platform registers the number and activates it next."""
        self._require(Step.STARTED)
        self.phone_number_id = phone_number_id
        self.waba_id = waba_id
        self.phone_number = phone_number
        self.display_name = display_name
        return self._complete(Step.EMBEDDED_SIGNUP_COMPLETED, at, by)

    def activated(self, channel_id: str, by: str, at: datetime) -> StepRecord:
        self._require(Step.PHONE_VERIFIED, Step.EMBEDDED_SIGNUP_COMPLETED)
        self.channel_id = channel_id
        return self._complete(Step.ACTIVATED, at, by)

    def profile_completed(self, by: str, at: datetime) -> StepRecord:
        self._require(Step.ACTIVATED)
        return self._complete(Step.PROFILE_COMPLETED, at, by)

    def badge_requested(self, by: str, at: datetime) -> StepRecord:
        self._require(Step.PROFILE_COMPLETED)
        return self._complete(Step.BADGE_REQUESTED, at, by)

    def badge_decided(self, approved: bool, by: str, at: datetime) -> StepRecord:
        self._require(Step.BADGE_REQUESTED)
        self.badge_approved = approved
        return self._complete(Step.BADGE_DECIDED, at, by)

    def templates_submitted(self, by: str, at: datetime) -> StepRecord:
        # templates may be submitted once the number is active, badge or not
        self._require(
            Step.ACTIVATED,
            Step.PROFILE_COMPLETED,
            Step.BADGE_REQUESTED,
            Step.BADGE_DECIDED,
            Step.TEMPLATES_SUBMITTED,
        )
        return self._complete(Step.TEMPLATES_SUBMITTED, at, by)

    # the steps the provider's API reaches: a business profile saved, a template submitted

    def profile_saved(self, by: str, at: datetime) -> StepRecord | None:
        """The business profile was saved through the API: the profile step, when it is the next one
        (later saves change nothing in the onboarding)."""
        if self.step is not Step.ACTIVATED:
            return None
        return self.profile_completed(by, at)

    def template_created(self, by: str, at: datetime) -> StepRecord | None:
        """A template was submitted through the API: the templates step, once the number is active,
        unless Meta is deciding the badge (the badge's answer comes first) or the step is done."""
        if self.step not in (Step.ACTIVATED, Step.PROFILE_COMPLETED, Step.BADGE_DECIDED):
            return None
        return self.templates_submitted(by, at)

    def templates_listed(self, count: int, by: str, at: datetime) -> StepRecord | None:
        """A sync found ``count`` templates on the WABA: one or more submitted in WhatsApp Manager
        reach the templates step as one submitted through Parley does (a template Parley submitted
        reached it already when it was made). None when there are none, or the step is not next."""
        if count < 1:
            return None
        return self.template_created(by, at)
