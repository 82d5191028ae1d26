"""The console's languages: the catalogs, the strings in use, the choice of language, errors in words."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from jinja2 import Environment
from parley_onboarding.console import i18n
from parley_onboarding.console.app import REASONS, in_words
from parley_onboarding.domain.errors import DomainError

from tests.support.console_languages import SAME_IN_GERMAN

pytestmark = pytest.mark.unit

CONSOLE = Path(i18n.__file__).parent
ONBOARDING = CONSOLE.parent
PLACEHOLDER = re.compile(r"%\((\w+)\)s")
# reason codes of API calls the console never makes: the platform operator's WhatsApp steps, and
# templates, business profiles and PINs, which the console does not manage (yet)
NOT_IN_CONSOLE = {
    "STEP_BY_API",
    "UNKNOWN_STEP",
    "MISSING_FIELDS",
    "MISSING_CREDENTIALS",
    "TEMPLATE_NOT_FOUND",
    "INVALID_TEMPLATE",
    "INVALID_PROFILE",
    "INVALID_PIN",
}


@pytest.fixture(autouse=True)
def english() -> Iterator[None]:
    i18n.use("en")
    yield
    i18n.use("en")


def used_in_templates() -> set[str]:
    """Every message ``_("...")`` in the templates, read by Jinja2's own extractor."""
    env = Environment(extensions=["jinja2.ext.i18n"], autoescape=True)
    found = set()
    for template in (CONSOLE / "templates").glob("*.html"):
        for _line, _function, message in env.extract_translations(template.read_text(), ("_",)):
            first = message[0] if isinstance(message, tuple) else message
            assert isinstance(first, str), f"{template.name}: _() of something that is not a literal"
            found.add(first)
    return found


def used_in_code() -> set[str]:
    """Every literal given to ``_`` or ``N_`` in the console's Python."""
    found = set()
    for module in CONSOLE.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("_", "N_"):
                first = node.args[0] if node.args else None
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    found.add(first.value)
    return found


def test_every_language_has_the_same_messages_none_empty_with_the_same_placeholders() -> None:
    english = i18n.catalog("en")
    assert len(english) > 200
    for language in i18n.LANGUAGES:
        messages = i18n.catalog(language)
        assert set(messages) == set(english), language
        assert [k for k, v in messages.items() if not v.strip()] == [], language
        for key, text in messages.items():
            assert set(PLACEHOLDER.findall(text)) == set(PLACEHOLDER.findall(key)), (language, key)
    # German is written, not copied: only the listed words and names stay as they are in English
    german = i18n.catalog("de")
    assert {k for k in english if german[k] == english[k]} == SAME_IN_GERMAN


def test_every_message_the_templates_and_the_code_use_is_in_the_catalog() -> None:
    in_templates, in_code = used_in_templates(), used_in_code()
    assert "Save settings" in in_templates and "Settings saved." in in_code  # the scan finds them
    missing = sorted((in_templates | in_code) - set(i18n.catalog("en")))
    assert missing == []
    unused = sorted(set(i18n.catalog("en")) - in_templates - in_code)
    assert unused == []


def test_the_brief_s_german_words_are_used() -> None:
    german = i18n.catalog("de")
    assert german["Channels"] == "Kanäle"
    assert german["Settings"] == "Einstellungen"
    assert (german["Viewer"], german["Contributor"], german["Supervisor"]) == (
        "Betrachter",
        "Mitwirkender",
        "Supervisor",
    )


@pytest.mark.parametrize(
    ("accept", "cookie", "expected"),
    [
        ("de-DE,de;q=0.9,en;q=0.8", None, "de"),
        ("en-US,en;q=0.9,de;q=0.8", None, "en"),
        ("fr-FR,fr;q=0.9,de;q=0.7,en;q=0.5", None, "de"),  # French missing: the next best
        ("en;q=0.2, de;q=0.8", None, "de"),  # q-values, not order, decide
        ("de;q=0, en", None, "en"),  # q=0 means "not this one"
        ("fr", None, "en"),
        ("", None, "en"),
        (None, None, "en"),
        ("de;q=oops, en;q=0.5", None, "en"),  # a broken q-value counts as 0
        ("en-US", "de", "de"),  # the switch wins over the browser
        ("de", "xx", "de"),  # a cookie naming no language of the console is ignored
    ],
)
def test_the_language_is_the_switch_s_else_the_browser_s_best_else_english(
    accept: str | None, cookie: str | None, expected: str
) -> None:
    assert i18n.negotiate(accept, cookie) == expected


def test_a_message_is_translated_in_the_request_s_language_with_its_values() -> None:
    assert i18n._("Delete %(team)s", team="Support") == "Delete Support"
    i18n.use("de")
    assert i18n._("Delete %(team)s", team="Support") == "Support löschen"
    assert i18n.when(datetime(2026, 11, 30, 9, 5, tzinfo=UTC)) == "30.11.2026, 09:05 UTC"
    i18n.use("en")
    assert i18n.when(datetime(2026, 11, 30, 9, 5, tzinfo=UTC)) == "2026-11-30 09:05 UTC"


def test_a_domain_refusal_is_the_console_s_sentence_for_its_reason_code() -> None:
    too_long = DomainError(
        "INVALID_DISPLAY_NAME", "display_name is at most 255 characters", field="display_name"
    )
    assert in_words(too_long) == "The display name is at most 255 characters."
    short = DomainError(
        "INVALID_SETTING", "auto_resolve_new_s is at least 60 seconds", field="auto_resolve_new_s"
    )
    assert in_words(short) == "Auto-resolve for New is at least 1 minute, or 0 to turn it off."
    wrong = DomainError("WRONG_CODE", "that code is not right", attempts_left=3)
    assert in_words(wrong) == "That code is not right. Attempts left on this code: 3."
    missing = DomainError(
        "PERMISSIONS_MISSING", "grant these", missing=["pages_messaging", "pages_show_list"]
    )
    assert in_words(missing) == "Grant these permissions: pages_messaging, pages_show_list."
    # WhatsApp's display-name refusal is its own sentence
    assert "Meta's display name rules" in in_words(too_long, "whatsapp")
    i18n.use("de")
    assert in_words(short) == (
        "Das automatische Erledigen neuer Unterhaltungen beträgt mindestens 1 Minute, oder 0 zum Ausschalten."
    )
    assert in_words(wrong) == "Dieser Code ist nicht richtig. Verbleibende Versuche für diesen Code: 3."


def test_an_unknown_reason_code_or_a_missing_detail_names_the_code() -> None:
    assert in_words(DomainError("SOMETHING_NEW", "the domain's English")) == (
        "The request was refused (reason code SOMETHING_NEW)."
    )
    # WRONG_CODE without its detail: the code, never a broken sentence
    assert in_words(DomainError("WRONG_CODE", "that code is not right")) == (
        "The request was refused (reason code WRONG_CODE)."
    )
    i18n.use("de")
    assert (
        in_words(DomainError("SOMETHING_NEW", "x")) == "Die Anfrage wurde abgelehnt (Grund: SOMETHING_NEW)."
    )


def test_every_reason_code_the_console_can_meet_has_a_sentence() -> None:
    raised = set()
    for module in [ONBOARDING / "service.py", *(ONBOARDING / "domain").glob("*.py")]:
        raised |= set(
            re.findall(r'(?:DomainError|Conflict|NotFound)\(\s*"([A-Z][A-Z_]+)"', module.read_text())
        )
    assert {"WRONG_CODE", "CHANNEL_NOT_FOUND", "INVALID_TEAM_NAME"} <= raised  # the scan finds them
    worded = {key.split(":")[-1] if key.startswith("whatsapp:") else key.split(":")[0] for key in REASONS}
    assert sorted(raised - worded - NOT_IN_CONSOLE) == []
