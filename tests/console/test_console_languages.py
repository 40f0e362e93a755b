"""The console in every shipped language: complete catalogues, the choice of language, mirrored Arabic.

The catalogues: every translated .po holds every English message, translated (every plural form
its language has: six in Arabic), with the msgid's placeholders exactly, and each entry no native
speaker has reviewed carries the `# unreviewed:` comment that its header counts. The choice: the
URL's `?lang=`, then the switcher's cookie, then Accept-Language, then `console.language`.

No English left on a page: every page the catalogue tests render (any tests/console/test_*catalogue*.py
module's PAGES_RENDERED, with its DATA) is rendered in every language; in Arabic and Nepali no Latin
word may be left but the page's data and the Latin the translation itself keeps (commands, acronyms),
and in every language no English message (a fragment of two words or more, or a one-word message on
its own) may show. Then a real browser against a real server over mutual TLS: each person switches
language with the switcher (no script) and walks every page their role is offered, in each language,
with the same check; Arabic is laid out right to left (computed direction, the header's order
mirrored, a screenshot copied to docs/screenshots/), its and Nepali's text is drawn with the script's
own system font (Chromium's platform fonts for the node), and axe-core finds no serious or critical
violation on a page in each language.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request
from axe_playwright_python.sync_playwright import Axe
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po
from playwright.sync_api import Browser, Page, sync_playwright

from safepassage.console.catalogue import LOCALE_DIR, Catalogue
from safepassage.console.languages import COOKIE, Languages, LanguageSwitch, safe_back, switch_link
from safepassage.console.pages import Renderer
from safepassage.server.identity import Role
from tests.conftest import REPO
from tests.console.conftest import WATCHLIST, ConsoleWorld
from tests.console.test_catalogue import _Text, pseudo, untranslated

pytestmark = pytest.mark.server

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS_IN_README = REPO / "docs" / "screenshots"
UNREVIEWED = "unreviewed: machine-drafted, not reviewed by a native speaker"
# Languages some native speaker has reviewed entries of (none yet): the others must mark every entry.
REVIEWED: frozenset[str] = frozenset()
PLACEHOLDER = re.compile(r"%\([A-Za-z_]+\)[sd]|\{[A-Za-z_]+\}")
# Names that stay as they are in every language: the product, and each language's own name in the
# switcher (so a person who cannot read the page still finds theirs).
PROPER_NOUNS = ("SafePassage", "English", "Français", "العربية", "नेपाली")
NON_LATIN = {"ar", "ne", "bn"}
HEX = re.compile(r"(?=.*\d)[0-9A-Fa-f]{6,}")
ENGLISH = Catalogue.load("en")


def shipped() -> list[str]:
    return sorted(
        p.parent.parent.name for p in LOCALE_DIR.glob("*/LC_MESSAGES/console.po") if p.parts[-3] != "en"
    )


def po(language: str) -> Catalog:
    with (LOCALE_DIR / language / "LC_MESSAGES" / "console.po").open("rb") as file:
        return read_po(file, locale=language)


def english_ids() -> list[str | tuple[str, str]]:
    return [m.id if isinstance(m.id, str) else (m.id[0], m.id[1]) for m in po("en") if m.id]


def test_three_languages_ship_one_right_to_left_one_in_a_non_latin_script() -> None:
    languages = Languages.load("en")
    codes = set(shipped())
    assert {"ar", "ne", "fr"} <= codes
    assert languages.by_code["ar"].direction == "rtl"
    assert languages.by_code["ne"].own_name == "नेपाली" and languages.by_code["ne"].direction == "ltr"
    assert languages.shipped[0].code == "en"


@pytest.mark.parametrize("language", shipped())
def test_every_message_is_translated_with_its_placeholders(language: str) -> None:
    catalog = po(language)
    problems = []
    for message_id in english_ids():
        message = catalog.get(message_id)
        if message is None:
            problems.append(f"missing: {message_id!r}")
            continue
        if isinstance(message_id, tuple):
            forms = [str(form) for form in message.string or ()]
            if len(forms) != catalog.num_plurals or not all(forms):
                problems.append(f"plural forms {len(forms)}/{catalog.num_plurals} or empty: {message_id!r}")
            wanted = set(PLACEHOLDER.findall(message_id[1])) | set(PLACEHOLDER.findall(message_id[0]))
            for form in forms:
                if set(PLACEHOLDER.findall(form)) != wanted:
                    problems.append(f"placeholders of {form!r} are not those of {message_id!r}")
        else:
            string = str(message.string or "")
            if not string:
                problems.append(f"untranslated: {message_id!r}")
            elif set(PLACEHOLDER.findall(string)) != set(PLACEHOLDER.findall(message_id)):
                problems.append(f"placeholders of {string!r} are not those of {message_id!r}")
            elif string == message_id and language in NON_LATIN and not message_id.startswith("safepassage "):
                problems.append(f"left in English: {message_id!r}")  # only a command line stays as it is
    assert problems == [], (
        f"{language}: {len(problems)} problems (run scripts/console_messages.py):\n"
        + "\n".join(problems[:20])
    )


@pytest.mark.parametrize("language", shipped())
def test_unreviewed_entries_are_marked_and_counted_in_the_header(language: str) -> None:
    text = (LOCALE_DIR / language / "LC_MESSAGES" / "console.po").read_text(encoding="utf-8")
    catalog = po(language)
    entries = [message for message in catalog if message.id]
    marked = sum(UNREVIEWED in message.user_comments for message in entries)
    assert f'"X-Review-Status: {marked} of {len(entries)} entries unreviewed' in text
    assert not any(message.fuzzy for message in entries)  # fuzzy entries would not be shown at all
    if language not in REVIEWED:
        assert marked == len(entries), "no native speaker has reviewed these: every entry says so"


def test_arabic_has_six_plural_forms_and_picks_each() -> None:
    arabic = Catalogue.load("ar")
    assert po("ar").num_plurals == 6
    singular, plural = "%(num)d kept hit", "%(num)d kept hits"
    forms = [arabic.ngettext(singular, plural, n) % {"num": n} for n in (0, 1, 2, 5, 11, 100)]
    assert len(set(forms)) == 6, forms
    assert "نتيجتان" in forms[2]


def _request(path: str, cookie: str = "", accept: str = "", method: str = "GET") -> Any:
    headers = {"Accept-Language": accept} if accept else {}
    if cookie:
        headers["Cookie"] = f"{COOKIE}={cookie}"
    return make_mocked_request(method, path, headers=headers)


def test_the_url_then_the_cookie_then_accept_language_then_the_default_decide() -> None:
    languages = Languages.load("fr")

    def chosen(path: str, cookie: str = "", accept: str = "") -> str:
        return languages.choose(_request(path, cookie, accept)).language.code

    assert chosen("/") == "fr"  # console.language
    assert chosen("/", accept="de-DE, ar;q=0.8, en;q=0.9") == "en"
    assert chosen("/", accept="ne-NP") == "ne"  # the region falls back to the language
    assert chosen("/", accept="ar;q=0, *") == "fr"  # q=0 is a refusal; * names nothing shipped
    assert chosen("/", cookie="ar", accept="en") == "ar"
    assert chosen("/desk?lang=ne", cookie="ar", accept="en") == "ne"
    assert chosen("/", cookie="../../etc", accept="xx") == "fr"
    assert languages.choose(_request("/review?gallery=w&lang=ar")).back == "/review?gallery=w"
    assert languages.choose(_request("/desk/search", method="POST")).back == "/"


@pytest.mark.parametrize(
    ("back", "kept"),
    [
        ("/admin/galleries", "/admin/galleries"),
        ("/review?gallery=a&lang=ar", "/review?gallery=a"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("", "/"),
    ],
)
def test_the_switcher_returns_only_to_a_page_of_this_console(back: str, kept: str) -> None:
    assert safe_back(back) == kept


def test_the_switch_sets_a_strict_secure_cookie_unless_another_site_asked() -> None:
    asyncio.run(_switches())


async def _switches() -> None:
    switch = LanguageSwitch(Languages.load("en"))
    response = await switch.switch(make_mocked_request("GET", "/language?to=ar&back=/desk"))
    assert response.status == 303 and response.headers["Location"] == "/desk"
    cookie = response.cookies[COOKIE]
    assert cookie.value == "ar" and cookie["secure"] and cookie["httponly"] and cookie["path"] == "/"
    assert cookie["samesite"] == "Strict" and not cookie.get("max-age") and not cookie.get("expires")
    for site in ("cross-site", "same-site"):
        request = make_mocked_request("GET", "/language?to=ar&back=/desk", headers={"Sec-Fetch-Site": site})
        refused = await switch.switch(request)
        assert refused.status == 303 and COOKIE not in refused.cookies
    unknown = await switch.switch(make_mocked_request("GET", "/language?to=xx&back=//evil.example"))
    assert unknown.headers["Location"] == "/" and COOKIE not in unknown.cookies


# --- No English left on a page ----------------------------------------------------------------------


def _english_fragments() -> tuple[set[str], set[str]]:
    """The English messages' literal pieces of two words or more, and the one-word messages."""
    texts: list[str] = list(ENGLISH.singular) + [form for forms in ENGLISH.plural for form in forms]
    fragments, words = set(), set()
    for text in texts:
        for piece in PLACEHOLDER.split(text):
            piece = " ".join(piece.split()).strip(" .,:;()")
            if len(piece.split()) >= 2 and len(piece) >= 8:
                fragments.add(piece)
            elif piece and " " not in piece and piece == " ".join(text.split()).strip(" .,:;()"):
                words.add(piece)
    return fragments, words


FRAGMENTS, WORDS = _english_fragments()


def _translations(language: str) -> str:
    catalogue = Catalogue.load(language)
    return "\n".join(
        [*catalogue.singular.values(), *(f for forms in catalogue.plural.values() for f in forms)]
    )


def english_left(parts: list[str], language: str, data: tuple[str, ...] = ()) -> list[str]:
    """What of a page in `language` is English the translation does not keep itself."""
    translated = _translations(language)
    # A page may carry messages not yet formatted (the log check's script fills them in): their
    # placeholders' names are not prose.
    text = PLACEHOLDER.sub(" ", " ".join(" ".join(part.split()) for part in parts))
    for value in sorted((*data, *PROPER_NOUNS), key=len, reverse=True):
        text = text.replace(value, " ")
    left = [f for f in FRAGMENTS if f in text and f not in translated]
    nodes = {" ".join(part.split()).strip(" .,:;()") for part in parts}
    left += [w for w in WORDS & nodes if w not in translated and w not in data and w not in PROPER_NOUNS]
    if language.split("_")[0] in NON_LATIN:
        # The Latin the translation writes itself (commands, file names, acronyms), placeholders aside.
        kept_latin = set(re.findall(r"[A-Za-z][A-Za-z0-9_#+-]*", PLACEHOLDER.sub(" ", translated)))
        words = re.findall(r"[A-Za-z][A-Za-z0-9_#+-]*", text)
        # Serials and hashes (hexadecimal, with a digit) are data, as ids are.
        left += [w for w in words if w not in kept_latin and len(w) > 1 and not HEX.fullmatch(w)]
    return sorted(set(left))


def _text_parts(html: str) -> list[str]:
    parser = _Text()
    parser.feed(html)
    return parser.parts


CATALOGUE_TESTS = sorted((REPO / "tests" / "console").glob("test_*catalogue*.py"))
# Whether the English catalogue is current does not depend on the language shown.
NOT_PER_LANGUAGE = {"test_the_english_catalogue_holds_exactly_the_messages_the_console_uses"}


def _catalogue_test_calls() -> tuple[list[tuple[str, Callable[..., object], dict[str, Any]]], list[str]]:
    """Every test function of the catalogue tests with each of its parametrizations, called directly
    (they only render templates; a pytest run per language took minutes), and those that need a fixture."""
    calls, needing_fixtures = [], []
    for path in CATALOGUE_TESTS:
        module = importlib.import_module(f"tests.console.{path.stem}")
        for name, function in sorted(vars(module).items()):
            if not name.startswith("test_") or not callable(function) or name in NOT_PER_LANGUAGE:
                continue
            grid: list[dict[str, Any]] = [{}]
            for mark in getattr(function, "pytestmark", []):
                if mark.name != "parametrize":
                    continue
                names = mark.args[0].split(",") if isinstance(mark.args[0], str) else list(mark.args[0])
                names = [n.strip() for n in names]
                rows = []
                for value in mark.args[1]:
                    value = value.values if hasattr(value, "marks") else value  # a pytest.param
                    rows.append(dict(zip(names, value if len(names) > 1 else (value,), strict=True)))
                grid = [{**cell, **row} for cell in grid for row in rows]
            wanted = set(inspect.signature(function).parameters)
            if not wanted <= set(grid[0]):
                needing_fixtures.append(f"{path.stem}::{name}")
                continue
            calls += [(f"{path.stem}::{name}{sorted(cell.items())!r}", function, cell) for cell in grid]
    return calls, needing_fixtures


@pytest.mark.parametrize("language", shipped())
def test_every_page_the_catalogue_tests_render_is_translated_in_every_language(
    language: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pseudo-translation tests again, with this language's translations as the wrapped texts.

    Every tests/console/test_*catalogue*.py (new pages' too) renders its pages with `pseudo()`; with
    SAFEPASSAGE_PSEUDO_LANGUAGE set, a message the language lacks shows unwrapped, in English, and
    fails them exactly as text written outside the catalogue does.
    """
    monkeypatch.setenv("SAFEPASSAGE_PSEUDO_LANGUAGE", language)
    calls, needing_fixtures = _catalogue_test_calls()
    assert len(CATALOGUE_TESTS) >= 4 and len(calls) >= 40, (CATALOGUE_TESTS, len(calls))
    assert needing_fixtures == [], "call these with their fixtures here, or give them parameters alone"
    failures = []
    for name, function, arguments in calls:
        try:
            function(**arguments)
        except AssertionError as error:
            failures.append(f"{name}: {str(error)[:600]}")
    assert failures == [], f"{len(failures)} of {len(calls)} in {language}:\n" + "\n".join(failures)


def test_a_message_a_language_lacks_shows_in_english_and_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check can fail: drop one Arabic translation and the page it is on shows English, caught."""
    monkeypatch.setenv("SAFEPASSAGE_PSEUDO_LANGUAGE", "ar")
    wrapped = pseudo()
    context: dict[str, Any] = {
        "person": None,
        "pages": [],
        "current": "",
        "headline": "Not found",
        "meaning": "There is no such gallery, reference id or page.",
        "detail": "x",
    }
    html = Renderer(wrapped).render("refusal.html", **context)
    assert 'dir="rtl"' in html and untranslated(html) == ["x"]
    singular = {k: v for k, v in wrapped.singular.items() if k != "Not found"}
    html = Renderer(Catalogue("ar", singular, wrapped.plural, wrapped.plural_index)).render(
        "refusal.html", **context
    )
    assert "Notfound" in untranslated(html)


def test_the_check_finds_english_left_on_a_page() -> None:
    """The check can fail: an English message left on a translated page is found, in each script."""
    for language in shipped():
        parts = [_translations(language)[:40], "Back to the galleries", "Galleries"]
        assert {"Back to the galleries", "Galleries"} <= set(english_left(parts, language)), language


# --- In a real browser --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(console_world: ConsoleWorld) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)", pytrace=False)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield launched
        finally:
            launched.close()


def _person(browser: Browser, world: ConsoleWorld, role: Role, locale: str | None = None) -> Page:
    issued = world.pki.clients[role]
    folder = world.folder / "browser-languages"
    folder.mkdir(exist_ok=True)
    cert, key = folder / f"{issued.client_id}.pem", folder / f"{issued.client_id}-key.pem"
    cert.write_bytes(issued.cert_pem)
    key.write_bytes(issued.key_pem)
    key.chmod(0o600)
    context = browser.new_context(
        client_certificates=[{"origin": world.origin, "certPath": str(cert), "keyPath": str(key)}],
        ignore_https_errors=True,
        viewport={"width": 1366, "height": 768},
        locale=locale,
    )
    context.set_default_timeout(20_000)
    return context.new_page()


def _switch(page: Page, language: Languages, code: str) -> None:
    """Click the language's own name in the switcher (a page without one: follow the link it would be)."""
    name = language.by_code[code].own_name
    link = page.locator("nav.languages").get_by_role("link", name=name, exact=True)
    if link.count() == 0:
        page.goto(page.url.split("/", 3)[0] + "//" + page.url.split("/", 3)[2] + switch_link(code, "/"))
        return
    with page.expect_navigation():
        link.click()


def test_each_person_switches_language_and_every_page_is_translated(
    console_world: ConsoleWorld, browser: Browser
) -> None:
    languages = Languages.load("en")
    checked = 0
    for role in (Role.OFFICER, Role.ADMIN, Role.AUDITOR, Role.NGO_CASEWORKER, Role.KIOSK):
        page = _person(browser, console_world, role)
        page.goto(console_world.origin + "/")
        assert page.locator("html").get_attribute("lang") == "en"
        paths = ["/", "/no-such-page"] + [
            href
            for href in page.locator("header nav:not(.languages) a").evaluate_all(
                "els => els.map(e => e.getAttribute('href'))"
            )
            if href
        ]
        for code in shipped():
            page.goto(console_world.origin + "/")
            _switch(page, languages, code)
            cookies = {c["name"]: c for c in page.context.cookies()}
            assert cookies[COOKIE]["value"] == code and cookies[COOKIE]["sameSite"] == "Strict"
            assert cookies[COOKIE]["secure"] and cookies[COOKIE]["expires"] == -1  # gone with the browser
            # The kiosk keeps its language in its path (it forgets it with the page, and sets no cookie).
            kiosk = [f"/kiosk/{code}"] if role is Role.KIOSK else []
            for path in dict.fromkeys(paths + kiosk):
                response = page.goto(console_world.origin + path)
                assert response is not None and response.headers["content-language"] == code
                shown_as = (
                    page.locator("html").get_attribute("lang"),
                    page.locator("html").get_attribute("dir"),
                )
                assert shown_as == (code, languages.by_code[code].direction), f"{role} {path}"
                # Text an element declares to be in another language (the switcher's names, a kiosk's
                # "choose your language" in each) is that language's; the service's own words, quoted,
                # are English by design (docs/console.md).
                shown = page.evaluate(
                    """code => {
                        const copy = document.documentElement.cloneNode(true);
                        copy.querySelectorAll('[lang]').forEach(e => { if (e.lang !== code) e.remove(); });
                        return copy.outerHTML;
                    }""",
                    code,
                )
                shown = re.sub(r"<q\b[^>]*>.*?</q>", "", shown, flags=re.S)
                left = english_left(_text_parts(shown), code, _data(console_world, role))
                assert left == [], f"{role} {path} in {code}: {left}"
                checked += 1
        page.context.close()
    assert checked >= 3 * 12


def _data(world: ConsoleWorld, role: Role) -> tuple[str, ...]:
    """What a page shows that is not a message: ids, the certificate's subject, times, organisations."""
    issued = world.pki.clients[role]
    return (
        *(issued.client_id, "SafePassage", "UTC", "la-strada", f"OU={role.value}", f"CN={issued.client_id}"),
        # The service's identifiers, shown as they are: the watchlist, metrics and index kinds.
        *(WATCHLIST, "L2", "COSINE", "flat", "hnsw", "ivf", "probes", "O="),
        # The certificates an administrator lists: each person's and device's, the console's, the server's.
        *(client.client_id for client in world.pki.clients.values()),
        *("console", "localhost"),
    )


def test_accept_language_chooses_until_the_person_does(console_world: ConsoleWorld, browser: Browser) -> None:
    page = _person(browser, console_world, Role.OFFICER, locale="fr-FR")
    page.goto(console_world.origin + "/desk")
    assert page.locator("html").get_attribute("lang") == "fr"
    assert page.get_by_role("heading", level=1).inner_text() == Catalogue.load("fr").gettext("Officer desk")
    _switch(page, Languages.load("en"), "en")
    assert page.url.endswith("/desk") and page.locator("html").get_attribute("lang") == "en"
    page.context.close()


def _platform_fonts(page: Page, selector: str) -> set[str]:
    """The system fonts Chromium drew an element's text with (the DevTools protocol's own answer)."""
    session = page.context.new_cdp_session(page)
    session.send("DOM.enable")
    session.send("CSS.enable")
    root = session.send("DOM.getDocument")["root"]["nodeId"]
    node = session.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
    fonts = session.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
    session.detach()
    return {font["familyName"] for font in fonts if font["glyphCount"] > 0}


def test_arabic_is_mirrored_and_each_script_has_its_font(
    console_world: ConsoleWorld, browser: Browser, tmp_path: Path
) -> None:
    languages = Languages.load("en")
    page = _person(browser, console_world, Role.OFFICER)
    page.goto(console_world.origin + "/desk")

    def layout() -> dict[str, Any]:
        measured: dict[str, Any] = page.evaluate(
            """() => {
                const box = s => document.querySelector(s).getBoundingClientRect();
                const text = s => {
                    const range = document.createRange();
                    range.selectNodeContents(document.querySelector(s));
                    const r = range.getBoundingClientRect();
                    return [r.left, r.right];
                };
                return {
                    direction: getComputedStyle(document.body).direction,
                    product: box('.product').left, nav: box('header nav').left,
                    languages: box('nav.languages').left, width: innerWidth, h1: text('h1'),
                };
            }"""
        )
        return measured

    english = layout()
    _switch(page, languages, "ar")
    arabic = layout()
    assert english["direction"] == "ltr" and arabic["direction"] == "rtl"
    # The header reads from the right: the product's name first (rightmost), the switcher last (leftmost).
    assert english["product"] < english["nav"] < english["languages"]
    assert arabic["product"] > arabic["nav"] > arabic["languages"]
    # The heading's text starts at the right edge of the page's column, not the left.
    assert english["h1"][0] < english["width"] / 2 < arabic["h1"][1]
    assert arabic["h1"][1] - english["h1"][0] > english["width"] / 2
    assert "Noto Sans Arabic" in _platform_fonts(page, "h1")
    shot = tmp_path / "console-desk-arabic.png"
    page.screenshot(path=str(shot), full_page=True)
    shutil.copyfile(shot, SCREENSHOTS_IN_README / "console-desk-arabic.png")
    _switch(page, languages, "ne")
    assert "Noto Sans Devanagari" in _platform_fonts(page, "h1")
    page.context.close()


@pytest.mark.parametrize("language", ["en", *shipped()])
def test_axe_finds_nothing_serious_in_each_language(
    console_world: ConsoleWorld, browser: Browser, language: str
) -> None:
    page = _person(browser, console_world, Role.ADMIN)
    for path in ("/", "/admin/galleries"):
        page.goto(f"{console_world.origin}{path}?lang={language}")
        assert page.locator("html").get_attribute("lang") == language
        violations = Axe().run(page).response["violations"]
        serious = [(v["id"], v["help"]) for v in violations if v["impact"] in ("serious", "critical")]
        assert serious == [], f"{path} in {language}: {serious}"
    page.context.close()
