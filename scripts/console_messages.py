"""Extract the console's messages and write its English catalogue (locale/en/LC_MESSAGES/console.po).

Every string a console page shows goes through the catalogue: ``_()`` (and ``ngettext``) in the
templates, ``N_()`` in the console's Python code (translated when a page shows it). This script
finds them all with Babel and rewrites the English .po, its translations the messages themselves,
sorted, without line numbers, so the file changes only when a message does. Translators copy it to
locale/<language>/LC_MESSAGES/console.po. `--check` fails when the .po misses a message or keeps
one nothing uses (tests/console/test_catalogue.py runs it).

    uv run python scripts/console_messages.py [--check]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
CONSOLE = ROOT / "safepassage" / "console"
ENGLISH = CONSOLE / "locale" / "en" / "LC_MESSAGES" / "console.po"
METHODS = [("templates/**.html", "jinja2.ext:babel_extract"), ("**.py", "python")]
OPTIONS = {"templates/**.html": {"extensions": "jinja2.ext.i18n", "trimmed": "false"}}
KEYWORDS: dict[str, tuple[int, ...] | None] = {"_": None, "N_": None, "gettext": None, "ngettext": (1, 2)}


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the English catalogue is stale")
    if parser.parse_args().check:
        problems = stale()
        for problem in problems:
            print(problem)
        if problems:
            print(f"{ENGLISH.relative_to(ROOT)} is stale; run scripts/console_messages.py")
        return 1 if problems else 0
    catalog = english(extracted())
    ENGLISH.parent.mkdir(parents=True, exist_ok=True)
    with ENGLISH.open("wb") as file:
        write_po(
            file,
            catalog,
            width=100,
            no_location=False,
            omit_header=False,
            sort_output=True,
            include_lineno=False,
        )
    print(f"wrote {len(catalog)} messages to {ENGLISH.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
