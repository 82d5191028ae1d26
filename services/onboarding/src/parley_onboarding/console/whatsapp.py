"""The WhatsApp verification page's facts (pure): each step's words, who acts next, the code's clock.

The steps, their order, who acts after each and the usual waits are the domain's
(``domain/whatsapp.py``); the code's digits and validity are WhatsApp's (the connector's
``NumberRules``). This module only words them for the page and says which form comes next.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from parley_providers.base import NumberRules

from parley_onboarding.console.i18n import N_, _
from parley_onboarding.domain.whatsapp import (
    MAX_TOTAL_CODE_ATTEMPTS,
    META_REVIEW_WAIT,
    NEXT,
    OPERATOR_STEPS,
    RESEND_COOLDOWN,
    Actor,
    Step,
    WhatsAppOnboarding,
)

STEP_WORDS: dict[Step, str] = {
    Step.AGREEMENT_SIGNED: N_("Sign the agreement"),
    Step.TERMS_ACCEPTED: N_("Accept the WhatsApp Business terms"),
    Step.DETAILS_SUBMITTED: N_("Submit the number's details"),
    Step.ACCOUNT_CREATED: N_("The platform creates the WhatsApp Business Account"),
    Step.BM_REQUEST_APPROVED: N_("Approve the request in Business Manager"),
    Step.BUSINESS_VERIFIED: N_("Meta verifies the business (Security Center)"),
    Step.CODE_SENT: N_("Have the verification code sent"),
    Step.PHONE_VERIFIED: N_("Enter the code"),
    Step.ACTIVATED: N_("The number is active"),
    Step.PROFILE_COMPLETED: N_("Complete the business profile and logo"),
    Step.BADGE_REQUESTED: N_("Request the verified badge"),
    Step.BADGE_DECIDED: N_("Meta decides on the badge"),
    Step.TEMPLATES_SUBMITTED: N_("Submit message templates"),
}
ACTOR_WORDS = {
    Actor.CUSTOMER: N_("You"),
    Actor.PLATFORM: N_("The platform operator"),
    Actor.META: N_("Meta"),
    Actor.NONE: N_("Nobody"),
}
CUSTOMER_ACTIONS = frozenset(
    {
        "sign-agreement",
        "accept-terms",
        "submit-details",
        "approve-business-manager",
        "request-code",
        "verify-code",
        "profile-completed",
        "request-badge",
        "submit-templates",
    }
)
"""The steps a tenant administrator records (the others are the operator's: ``OPERATOR_STEPS``)."""
assert not CUSTOMER_ACTIONS & OPERATOR_STEPS
# what the administrator may do at each step: (action, button) in the page's order
ACTIONS: dict[Step, tuple[tuple[str, str], ...]] = {
    Step.STARTED: (("sign-agreement", N_("Sign the agreement")),),
    Step.AGREEMENT_SIGNED: (("accept-terms", N_("Accept the terms")),),
    Step.TERMS_ACCEPTED: (("submit-details", N_("Submit the details")),),
    Step.ACCOUNT_CREATED: (("approve-business-manager", N_("I approved the request")),),
    Step.BUSINESS_VERIFIED: (("request-code", N_("Send the code")),),
    Step.CODE_SENT: (("verify-code", N_("Verify the code")), ("request-code", N_("Send a new code"))),
    Step.ACTIVATED: (
        ("profile-completed", N_("The profile is complete")),
        ("submit-templates", N_("Templates submitted")),
    ),
    Step.PROFILE_COMPLETED: (
        ("request-badge", N_("Request the badge")),
        ("submit-templates", N_("Templates submitted")),
    ),
    Step.BADGE_REQUESTED: (("submit-templates", N_("Templates submitted")),),
    Step.BADGE_DECIDED: (("submit-templates", N_("Templates submitted")),),
    Step.TEMPLATES_SUBMITTED: (("submit-templates", N_("More templates submitted")),),
}


@dataclass(frozen=True)
class StepLine:
    """One step of the list: done (when, by whom) or to come."""

    words: str
    done_at: datetime | None
    done_by: str | None
    current: bool


@dataclass(frozen=True)
class CodeClock:
    """The current code: until when it is valid, attempts left, when another may be sent."""

    digits: int
    validity_minutes: int
    valid_until: datetime
    expired: bool
    attempts_left: int
    resend_at: datetime
    can_resend: bool


def steps(onboarding: WhatsAppOnboarding) -> list[StepLine]:
    done = {r.step: r for r in onboarding.history}
    lines = []
    order = list(STEP_WORDS)
    current = order.index(onboarding.step) + 1 if onboarding.step in order else 0
    for i, step in enumerate(order):
        record = done.get(step)
        lines.append(
            StepLine(
                _(STEP_WORDS[step]),
                record.at if record else None,
                record.by if record else None,
                i == current,
            )
        )
    return lines


def waiting_for(onboarding: WhatsAppOnboarding) -> tuple[Actor, str, str | None]:
    """Who acts next (and in words), and how long that usually takes (None: no usual wait)."""
    actor, usual = NEXT[onboarding.step]
    wait = onboarding.history[-1].expected_wait if onboarding.history else usual
    return actor, _(ACTOR_WORDS[actor]), wait_in_words(wait)


def wait_in_words(wait: str | None) -> str | None:
    """The domain's usual wait ("24-48 hours", "10 minutes") in the page's language."""
    if wait is None:
        return None
    if wait == META_REVIEW_WAIT:
        return _("24-48 hours")
    minutes = re.fullmatch(r"(\d+) minutes", wait)
    return _("%(n)s minutes", n=minutes.group(1)) if minutes else wait


def actions(step: Step) -> dict[str, str]:
    """The administrator's forms at this step: action -> button, in the page's language."""
    return {action: _(label) for action, label in ACTIONS.get(step, ())}


def code_clock(onboarding: WhatsAppOnboarding, rules: NumberRules, now: datetime) -> CodeClock | None:
    if onboarding.step is not Step.CODE_SENT or onboarding.code_sent_at is None:
        return None
    valid_until = onboarding.code_sent_at + rules.code_validity
    left = max(0, onboarding.attempt_numbers.stop - 1 - onboarding.code_attempts)
    resend_at = onboarding.code_sent_at + RESEND_COOLDOWN
    return CodeClock(
        digits=rules.code_digits,
        validity_minutes=int(rules.code_validity.total_seconds() // 60),
        valid_until=valid_until,
        expired=now > valid_until,
        attempts_left=left,
        resend_at=resend_at,
        can_resend=now >= resend_at and onboarding.code_attempts < MAX_TOTAL_CODE_ATTEMPTS,
    )
