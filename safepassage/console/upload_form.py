"""Form bodies, read in memory: a probe image is never spooled to disk, logged or kept.

aiohttp's own ``request.post()`` writes uploaded files to a temporary file; the console reads
multipart bodies part by part into memory instead, up to a limit on the whole body, and hands the
image bytes to the service. Once the page is sent they are gone. URL-encoded bodies (forms with no
file) are read whole, within the application's body limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp import BodyPartReader, web

from safepassage.console.form_tokens import FIELD, FormTokens
from safepassage.console.refusals import FormIncomplete, TooMuch

__all__ = ["SubmittedForm", "read_form"]

_CHUNK = 64 * 1024
# Text fields are short (ids, a note, a manifest); anything larger is not a field of ours.
_MAX_FIELD_BYTES = 256 * 1024


@dataclass(frozen=True)
class SubmittedForm:
    fields: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    # Every file part in order, as (field name, file name, bytes): a multi-file field keeps each one.
    uploads: tuple[tuple[str, str, bytes], ...] = field(default=(), repr=False)

    def text(self, name: str) -> str:
        return self.fields.get(name, "").strip()

    def required(self, name: str, label: str) -> str:
        value = self.text(name)
        if not value:
            raise FormIncomplete(f"{label} is missing")
        return value


async def read_form(
    request: web.Request, max_bytes: int, tokens: FormTokens, certificate: bytes
) -> SubmittedForm:
    """The posted form's fields and files, in memory, once its CSRF token (FIELD) verifies for the
    certificate presenting it (FormRefused otherwise); TooMuch past `max_bytes`."""
    form = await _read(request, max_bytes)
    tokens.check(certificate, form.fields.get(FIELD))
    return form


async def _read(request: web.Request, max_bytes: int) -> SubmittedForm:
    if request.content_type != "multipart/form-data":
        posted = await request.post()
        return SubmittedForm({name: value for name, value in posted.items() if isinstance(value, str)})
    fields: dict[str, str] = {}
    files: dict[str, bytes] = {}
    uploads: list[tuple[str, str, bytes]] = []
    total = 0
    reader = await request.multipart()
    while True:
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader) or not part.name:
            raise FormIncomplete("the form has a part this console does not read")
        body = bytearray()
        while chunk := await part.read_chunk(_CHUNK):
            total += len(chunk)
            if total > max_bytes:
                raise TooMuch(f"the form is larger than {max_bytes // (1024 * 1024)} MiB")
            body += chunk
            if part.filename is None and len(body) > _MAX_FIELD_BYTES:
                raise FormIncomplete(f"the field {part.name} is too long")
        if part.filename is not None:
            files[part.name] = bytes(body)
            if body:  # a file input left empty still sends a part
                uploads.append((part.name, part.filename, files[part.name]))
        else:
            try:
                fields[part.name] = body.decode("utf-8")
            except UnicodeDecodeError:
                raise FormIncomplete(f"the field {part.name} is not UTF-8 text") from None
    return SubmittedForm(fields, files, tuple(uploads))
