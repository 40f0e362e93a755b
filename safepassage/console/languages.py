"""The languages the console speaks, and the one a request is answered in.

Every folder locale/<code>/LC_MESSAGES/console.po is a shipped language, loaded at start-up; its own
name and its direction (Arabic is written right to left) come from Babel's locale data, so a
deployment adds a language with its .po alone (scripts/console_messages.py --add-language).

A request is answered in, first to last: the language named in its URL (`?lang=ar`, for a link or a
kiosk's start screen), the person's choice (the switcher on every page, remembered in a cookie), the
browser's Accept-Language, and the deployment's default (`console.language`). The choice is put in
a context variable by the console's middleware for the time the request is handled, so every page
renders in it without its handler knowing; nothing else about the request is kept.

The cookie holds a shipped language's code and nothing else. It is `Secure` (the console is HTTPS
only), `SameSite=Strict` (no other site's page makes a request that carries it), `HttpOnly` (no
script needs it), for the path `/`, and lives until the browser closes: a desk or a kiosk is shared,
and the language a person chose can hint at where they come from. Setting it is a GET of
`/language?to=CODE&back=PATH` (a link, so the switcher needs no script and no form token): a
request another site started (`Sec-Fetch-Site` cross-site or same-site) changes nothing, and `back`
must be a path of this console, so the link cannot send the browser elsewhere.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit

from aiohttp import web
from babel import Locale, UnknownLocaleError

from safepassage.console.catalogue import LOCALE_DIR, Catalogue

__all__ = ["COOKIE", "QUERY", "Language", "LanguageSwitch", "Languages", "RequestLanguage", "current"]

COOKIE = "language"
QUERY = "lang"
_CODE = re.compile(r"[A-Za-z]{2,3}(?:[_-][A-Za-z0-9]{2,8})*")
# A path of this console to return to: no scheme, no host, nothing that a browser reads as one.
_BACK = re.compile(r"/(?![/\\])[A-Za-z0-9/_.~%-]*")


@dataclass(frozen=True)
class Language:
    code: str  # the folder under locale/ ("ar", "pt_BR")
    own_name: str  # the language's name in itself ("العربية"), for the switcher
    direction: str  # "ltr" or "rtl"
    catalogue: Catalogue

    @property
    def tag(self) -> str:
        """The BCP 47 tag for lang= and Content-Language ("pt-BR")."""
        return self.code.replace("_", "-")


def describe(catalogue: Catalogue) -> Language:
    """A catalogue's language with its own name and direction, from Babel's locale data."""
    try:
        locale = Locale.parse(catalogue.language)
    except (UnknownLocaleError, ValueError):
        return Language(catalogue.language, catalogue.language, "ltr", catalogue)
    own = locale.get_display_name(locale) or catalogue.language
    direction = "rtl" if locale.character_order == "right-to-left" else "ltr"
    return Language(catalogue.language, own[:1].upper() + own[1:], direction, catalogue)


@dataclass(frozen=True)
class RequestLanguage:
    """The language a request is answered in, and where the switcher's links return to."""

    language: Language
    back: str = "/"


class Languages:
    """The shipped languages, the deployment's default, and the choice for a request."""

    def __init__(self, languages: Iterable[Language], default: str) -> None:
        self.by_code: Mapping[str, Language] = {language.code: language for language in languages}
        self.default = self.by_code[default]

    @classmethod
    def load(cls, default: str) -> Languages:
        """Every catalogue under locale/ (the default's missing one is refused by Catalogue.load)."""
        codes = {default} | {path.parent.parent.name for path in LOCALE_DIR.glob("*/LC_MESSAGES/console.po")}
        return cls([describe(Catalogue.load(code)) for code in sorted(codes)], default)

    @classmethod
    def only(cls, catalogue: Catalogue) -> Languages:
        """One catalogue alone (the pseudo-translation of the catalogue tests)."""
        return cls([describe(catalogue)], catalogue.language)

    @property
    def shipped(self) -> list[Language]:
        """The languages offered by the switcher, the default first, then by code."""
        return [self.default] + [
            lang for code, lang in sorted(self.by_code.items()) if lang is not self.default
        ]

    def find(self, code: str | None) -> Language | None:
        """The shipped language a code names ("fr-CA" falls back to "fr"), or None."""
        if not code or not _CODE.fullmatch(code.strip()):
            return None
        wanted = code.strip().replace("-", "_")
        lowered = {known.lower(): language for known, language in self.by_code.items()}
        return lowered.get(wanted.lower()) or lowered.get(wanted.split("_")[0].lower())

    def from_accept_language(self, header: str) -> Language | None:
        """The first shipped language of an Accept-Language header, by its q-values."""
        ranked: list[tuple[float, int, str]] = []
        for position, part in enumerate(header.split(",")[:32]):
            tag, _, parameters = part.strip().partition(";")
            quality = 1.0
            match = re.fullmatch(r"\s*q\s*=\s*([01](?:\.\d{0,3})?)\s*", parameters) if parameters else None
            if parameters and match is None:
                continue
            if match is not None:
                quality = float(match.group(1))
            if quality > 0 and tag.strip() != "*":
                ranked.append((-quality, position, tag.strip()))
        for _, _, tag in sorted(ranked):
            found = self.find(tag)
            if found is not None:
                return found
        return None

    def choose(self, request: web.Request) -> RequestLanguage:
        language = (
            self.find(request.query.get(QUERY))
            or self.find(request.cookies.get(COOKIE))
            or self.from_accept_language(request.headers.get("Accept-Language", ""))
            or self.default
        )
        back = _without_language(request.path_qs) if request.method == "GET" else "/"
        return RequestLanguage(language, back)


_CURRENT: contextvars.ContextVar[RequestLanguage | None] = contextvars.ContextVar(
    "console_language", default=None
)


def current() -> RequestLanguage | None:
    """The language of the request being handled (None outside a request: the default)."""
    return _CURRENT.get()


def use(choice: RequestLanguage) -> contextvars.Token[RequestLanguage | None]:
    return _CURRENT.set(choice)


def release(token: contextvars.Token[RequestLanguage | None]) -> None:
    _CURRENT.reset(token)


def safe_back(back: str | None) -> str:
    """`back` when it is a path of this console (with its query), else the home page."""
    if not back:
        return "/"
    parts = urlsplit(back)
    if parts.scheme or parts.netloc or parts.fragment or not _BACK.fullmatch(parts.path):
        return "/"
    return _without_language(back)


def _without_language(path_qs: str) -> str:
    parts = urlsplit(path_qs)
    query = [(name, value) for name, value in parse_qsl(parts.query, keep_blank_values=True) if name != QUERY]
    return parts.path + (f"?{urlencode(query)}" if query else "")


def switch_link(code: str, back: str) -> str:
    return "/language?" + urlencode({"to": code, "back": back})


class LanguageSwitch:
    """GET /language?to=CODE&back=PATH: remember the person's choice, and return to the page."""

    def __init__(self, languages: Languages) -> None:
        self._languages = languages

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/language", self.switch)]

    async def switch(self, request: web.Request) -> web.StreamResponse:
        back = safe_back(request.query.get("back"))
        response = web.Response(status=303, headers={"Location": back})
        language = self._languages.find(request.query.get("to"))
        started_here = request.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none")
        if language is not None and started_here:
            response.set_cookie(
                COOKIE, language.code, path="/", secure=True, httponly=True, samesite="Strict"
            )
        return response
