"""Extract the console's messages and write its English catalogue (locale/en/LC_MESSAGES/console.po).

Every string a console page shows goes through the catalogue: ``_()`` (and ``ngettext``) in the
templates, ``N_()`` in the console's Python code (translated when a page shows it). This script
finds them all with Babel and rewrites the English .po, its translations the messages themselves,
sorted, without line numbers, so the file changes only when a message does. `--check` fails when the
.po misses a message or keeps one nothing uses (tests/console/test_catalogue.py runs it).

The same run brings every translated catalogue (locale/<language>/LC_MESSAGES/console.po) into step:
a new message is added untranslated, one nothing uses is dropped, every translation and its
translator comments are kept. An entry drafted without a native speaker's review carries the comment
`# unreviewed: machine-drafted, not reviewed by a native speaker` (UNREVIEWED); a reviewer who
checks an entry deletes that line, and the header's X-Review-Status counts what is left.
(gettext's `#, fuzzy` would not do: fuzzy entries are not shown at all.) `--add-language CODE`
starts a catalogue for a new language with its plural forms from Babel's locale data;
tests/console/test_console_languages.py fails while any entry is untranslated.

    uv run python scripts/console_messages.py [--check] [--add-language CODE]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
CONSOLE = ROOT / "safepassage" / "console"
ENGLISH = CONSOLE / "locale" / "en" / "LC_MESSAGES" / "console.po"
METHODS = [("templates/**.html", "jinja2.ext:babel_extract"), ("**.py", "python")]
OPTIONS = {"templates/**.html": {"extensions": "jinja2.ext.i18n", "trimmed": "false"}}
KEYWORDS: dict[str, tuple[int, ...] | None] = {"_": None, "N_": None, "gettext": None, "ngettext": (1, 2)}
LOCALES = CONSOLE / "locale"
# The translator comment on every entry no native speaker has reviewed (drafted by a machine).
UNREVIEWED = "unreviewed: machine-drafted, not reviewed by a native speaker"
REVIEW_HEADER = "X-Review-Status"


def extracted() -> dict[str | tuple[str, str], list[str]]:
    """Each message id (a pair for plurals) -> the files it is used in."""
    found: dict[str | tuple[str, str], list[str]] = {}
    for filename, _, message, _, _ in extract_from_dir(
        CONSOLE,
        METHODS,
        OPTIONS,
        KEYWORDS,
        comment_tags=(),
        strip_comment_tags=True,
    ):
        key: str | tuple[str, str] = (message[0], message[1]) if isinstance(message, tuple) else message
        found.setdefault(key, [])
        if filename not in found[key]:
            found[key].append(filename)
    return found


def english(messages: dict[str | tuple[str, str], list[str]]) -> Catalog:
    catalog = Catalog(locale="en", domain="console", project="SafePassage console", fuzzy=False)
    for message_id, files in sorted(messages.items(), key=lambda item: str(item[0])):
        catalog.add(message_id, string=message_id, locations=[(name, 0) for name in sorted(files)])
    return catalog


def stale() -> list[str]:
    """What the English catalogue lacks or keeps beyond the extracted messages."""
    with ENGLISH.open("rb") as file:
        kept = {message.id if isinstance(message.id, str) else tuple(message.id) for message in read_po(file)}
    kept.discard("")
    wanted = set(extracted())
    return [f"missing: {m!r}" for m in sorted(wanted - kept, key=str)] + [
        f"unused: {m!r}" for m in sorted(kept - wanted, key=str)
    ]


def translated_languages() -> list[str]:
    """The languages with a catalogue of their own, English aside."""
    return sorted(
        p.parent.parent.name for p in LOCALES.glob("*/LC_MESSAGES/console.po") if p.parts[-3] != "en"
    )


def translation_path(language: str) -> Path:
    return LOCALES / language / "LC_MESSAGES" / "console.po"


def read_catalogue(path: Path, language: str) -> Catalog:
    with path.open("rb") as file:
        return read_po(file, locale=language.split("_")[0], domain="console")


def in_step(english_catalog: Catalog, language: str, old: Catalog | None) -> Catalog:
    """The language's catalogue with exactly the English messages, its translations kept."""
    catalog = Catalog(
        locale=language,
        domain="console",
        project="SafePassage console",
        fuzzy=False,
        header_comment=(
            f"# {language} translation of the SafePassage console's messages.\n"
            f"# Entries marked '# {UNREVIEWED}' are drafts that no native speaker has checked:\n"
            "# a reviewer corrects the translation and deletes that line."
        ),
    )
    if old is not None and old.creation_date:
        catalog.creation_date = old.creation_date
    for message in english_catalog:
        if not message.id:
            continue
        kept: Message | None = old.get(message.id) if old is not None else None
        empty: str | tuple[str, ...] = (
            ("",) * catalog.num_plurals if isinstance(message.id, (tuple, list)) else ""
        )
        string = kept.string if kept is not None and kept.pluralizable == message.pluralizable else empty
        if isinstance(string, (tuple, list)) and len(string) != catalog.num_plurals:
            string = tuple(list(string)[: catalog.num_plurals]) + ("",) * (catalog.num_plurals - len(string))
        catalog.add(
            message.id,
            string=string,
            locations=message.locations,
            flags=[flag for flag in message.flags if flag != "fuzzy"],
            user_comments=list(kept.user_comments) if kept is not None else [],
        )
    return catalog


def review_status(catalog: Catalog) -> str:
    entries = [message for message in catalog if message.id]
    unreviewed = sum(UNREVIEWED in message.user_comments for message in entries)
    untranslated = sum(
        not all(message.string) if isinstance(message.string, (tuple, list)) else not message.string
        for message in entries
    )
    return (
        f"{unreviewed} of {len(entries)} entries unreviewed (machine-drafted, not reviewed by a native"
        f" speaker); {untranslated} untranslated"
    )


def write(path: Path, catalog: Catalog, review: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as file:
        write_po(
            file,
            catalog,
            width=100,
            no_location=False,
            omit_header=False,
            sort_output=True,
            include_lineno=False,
        )
    if review:
        # Babel keeps no header of its own naming; the field is written here, counted afresh each time.
        text = path.read_text(encoding="utf-8")
        field = f'"{REVIEW_HEADER}: {review_status(catalog)}\\n"\n'
        path.write_text(
            text.replace('"MIME-Version: 1.0\\n"\n', field + '"MIME-Version: 1.0\\n"\n', 1), "utf-8"
        )


def translations_stale(english_catalog: Catalog) -> list[str]:
    """Translated catalogues that do not hold exactly the English messages."""
    wanted = {m.id if isinstance(m.id, str) else tuple(m.id) for m in english_catalog if m.id}
    problems = []
    for language in translated_languages():
        kept = {
            m.id if isinstance(m.id, str) else tuple(m.id)
            for m in read_catalogue(translation_path(language), language)
        }
        kept.discard("")
        if kept != wanted:
            problems.append(f"{language}: {len(wanted - kept)} missing, {len(kept - wanted)} unused")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if a catalogue is stale")
    parser.add_argument("--add-language", metavar="CODE", help="start a catalogue for a new language")
    arguments = parser.parse_args()
    if arguments.add_language:
        path = translation_path(arguments.add_language)
        if path.exists():
            print(f"{path.relative_to(ROOT)} exists already")
            return 1
        path.parent.mkdir(parents=True)
        write(path, in_step(english(extracted()), arguments.add_language, None), review=True)
        print(f"wrote {path.relative_to(ROOT)}: translate it (console.language or the switcher)")
        return 0
    if arguments.check:
        problems = stale() or translations_stale(english(extracted()))
        for problem in problems:
            print(problem)
        if problems:
            print(f"{ENGLISH.relative_to(ROOT)} is stale; run scripts/console_messages.py")
        return 1 if problems else 0
    catalog = english(extracted())
    write(ENGLISH, catalog, review=False)
    print(f"wrote {len(catalog)} messages to {ENGLISH.relative_to(ROOT)}")
    for language in translated_languages():
        path = translation_path(language)
        translated = in_step(catalog, language, read_catalogue(path, language))
        write(path, translated, review=True)
        print(f"{path.relative_to(ROOT)}: {review_status(translated)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
