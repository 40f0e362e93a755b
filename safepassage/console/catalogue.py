"""The message catalogue: every string a page shows, read from a gettext .po file at start-up.

English is the source language; its catalogue is locale/en/LC_MESSAGES/console.po, which a
deployment copies to locale/<language>/ and translates, then names in ``console.language``. The
.po is parsed at start-up with Babel (nothing compiled is committed); a message the catalogue lacks,
or leaves untranslated or fuzzy, shows as written in English. `scripts/console_messages.py`
extracts the messages from the templates and the code (``_()`` in templates, ``N_()`` in Python)
and rewrites the English catalogue; tests/console/test_catalogue.py fails when it is stale.
"""

from __future__ import annotations

import gettext
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from babel.messages.pofile import read_po

from safepassage.console.refusals import NotPossibleNow

__all__ = ["DOMAIN", "LOCALE_DIR", "Catalogue", "catalogue_path"]

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "console"


def catalogue_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


@dataclass(frozen=True)
class Catalogue:
    language: str
    singular: Mapping[str, str] = field(default_factory=dict)
    plural: Mapping[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    plural_index: Callable[[int], int] = field(default=lambda n: int(n != 1))

    @classmethod
    def load(cls, language: str) -> Catalogue:
        path = catalogue_path(language)
        try:
            with path.open("rb") as file:
                catalog = read_po(file, locale=language.split("_")[0], domain=DOMAIN)
        except OSError as error:
            raise NotPossibleNow(
                f"no message catalogue for console.language {language!r} ({path}: {error.strerror})"
            ) from None
        singular: dict[str, str] = {}
        plural: dict[tuple[str, str], tuple[str, ...]] = {}
        for message in catalog:
            if not message.id or message.fuzzy:
                continue
            if isinstance(message.id, tuple):
                forms = tuple(str(form) for form in message.string or ())
                if all(forms):
                    plural[(str(message.id[0]), str(message.id[1]))] = forms
            elif message.string:
                singular[str(message.id)] = str(message.string)
        return cls(language, singular, plural, gettext.c2py(catalog.plural_expr))

    def gettext(self, message: str) -> str:
        return self.singular.get(message, message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        forms = self.plural.get((singular, plural))
        if forms is None:
            return singular if n == 1 else plural
        index = self.plural_index(n)
        return forms[index] if 0 <= index < len(forms) else plural
