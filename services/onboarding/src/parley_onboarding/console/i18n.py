"""The console's languages: gettext-style ``_()`` over catalogs of our own, keyed by the English text.

Every string a page shows goes through ``_`` (templates: ``{{ _("Settings saved.") }}``, with
``%(name)s`` placeholders filled by keyword: ``{{ _("Delete %(team)s", team=team.name) }}``;
Python: ``_("...")`` where the request is handled, ``N_("...")`` to mark a module-level constant
that is translated where it is shown). The catalogs are JSON files in ``locales/``
(``{"English source": "translation"}``), read once: no compile step, no extra dependency, and a
unit test checks that every language has the same keys and that every key in use exists.

The language of a request is chosen once by the console's wrapper (``use``): the switch's cookie
if it names a language the console has, else the best match of ``Accept-Language`` (q-values
honoured), else English. It lives in a context variable, so ``_`` in a template or in Python
code called for that request speaks the request's language.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment

LOCALES = Path(__file__).parent / "locales"
DEFAULT = "en"
LANGUAGES: dict[str, str] = {"en": "English", "de": "Deutsch"}
"""The console's languages, each named in itself (the switch shows these names untranslated)."""

_language: ContextVar[str] = ContextVar("parley_console_language", default=DEFAULT)


@cache
def catalog(language: str) -> Mapping[str, str]:
    """One language's messages, by English source text."""
    data = json.loads((LOCALES / f"{language}.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def translate(message: str, language: str | None = None) -> str:
    """The message in the language (the request's by default); the English text if it is missing."""
    return catalog(language or _language.get()).get(message, message)


def _(message: str, **values: Any) -> str:
    """The message in the request's language, its ``%(name)s`` placeholders filled from ``values``."""
    text = translate(message)
    return text % values if values else text


def N_(message: str) -> str:
    """Marks a constant for the catalog; it is translated where it is shown."""
    return message


def current() -> str:
    return _language.get()


def use(language: str) -> None:
    """The language of the rest of this request."""
    _language.set(language if language in LANGUAGES else DEFAULT)


def negotiate(accept_language: str | None, chosen: str | None = None) -> str:
    """The switch's choice if the console has it, else the browser's best match, else English."""
    if chosen in LANGUAGES:
        return str(chosen)
    ranked: list[tuple[float, int, str]] = []
    for i, item in enumerate((accept_language or "").split(",")):
        tag, _sep, params = item.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _eq, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        primary = tag.strip().split("-")[0].lower()
        if primary and q > 0:
            ranked.append((-q, i, primary))
    for _q, _i, primary in sorted(ranked):
        if primary in LANGUAGES:
            return primary
        if primary == "*":
            return DEFAULT
    return DEFAULT


DATE_TIME = N_("%Y-%m-%d %H:%M UTC")
TIME = N_("%H:%M UTC")
TIME_SECONDS = N_("%H:%M:%S UTC")


def when(moment: datetime) -> str:
    """A date and time, written the language's way."""
    return moment.strftime(translate(DATE_TIME))


def clock(moment: datetime, seconds: bool = False) -> str:
    return moment.strftime(translate(TIME_SECONDS if seconds else TIME))


def install(env: Environment) -> None:
    """``_`` (and ``gettext``/``ngettext``) in templates, the request's language; date filters."""
    env.add_extension("jinja2.ext.i18n")
    env.install_gettext_callables(  # type: ignore[attr-defined]
        lambda message: translate(message),
        lambda singular, plural, n: translate(singular if n == 1 else plural),
        newstyle=True,
    )
    env.filters["when"] = when
    env.filters["clock"] = clock
