"""Raw requests: byte strings sent as the serialized request to a method path."""

from __future__ import annotations

from typing import Any

from safepassage.api.v1 import matching_pb2 as pb
from safepassage.server.identity import Role

from .corpus import enum, fresh_reference, normal_vector, unknown_gallery
from .rpcs import REFS, REQUEST_TYPES, STREAMS, Case, P, W
from .structured import StructuredRequests


class RawRequests:
    """Raw cases: bytes on the wire, drawn from the structured generator's random sequence."""

    def __init__(self, structured: StructuredRequests) -> None:
        self.structured = structured
        self.rng = structured.rng

    def raw_base(self, rpc: str) -> bytes:
        """An encoding to truncate or mutate; writes aim at galleries a few edits cannot reach."""
        rng = self.rng
        if rpc == "CreateGallery":
            # Four independent defects: three byte edits cannot fix them all.
            create = pb.CreateGalleryRequest(
                gallery_id="ZZZZ" + rng.randbytes(4).hex(),
                purpose=enum(99),
                model="arcface",
                threshold=float("nan"),
            )
            return create.SerializeToString()
        if rpc == "DeleteGallery":
            return pb.DeleteGalleryRequest(gallery_id=unknown_gallery(rng)).SerializeToString()
        if rpc in ("InsertTemplate", "BulkInsertTemplates"):
            insert = pb.InsertTemplateRequest(
                gallery_id=unknown_gallery(rng),
                reference_id=fresh_reference(rng),
                template=pb.Probe(embedding=pb.Embedding(values=normal_vector(rng))),
            )
            return insert.SerializeToString()
        if rpc == "DeleteTemplate":
            delete = pb.DeleteTemplateRequest(
                gallery_id=unknown_gallery(rng), reference_id=rng.choice(REFS[W])
            )
            return delete.SerializeToString()
        if rpc == "ListGalleries":
            return b""
        search: Any
        if rpc in ("Identify", "IdentifyStream"):
            search, _, _ = self.structured.identify(rng.choice([W, P]))
        elif rpc == "Verify":
            search, _, _ = self.structured.verify(rng.choice([W, P]))
        elif rpc == "ConfirmMatch":
            search, _, _ = self.structured.confirm(W, False)
        else:
            search = REQUEST_TYPES[rpc](gallery_id=rng.choice([W, P]))
        if rpc in ("Identify", "IdentifyStream", "Verify") and search.probe.WhichOneof("kind") == "image":
            search.probe.embedding.values.extend(normal_vector(rng))  # no image decoding in raw cases
        encoded: bytes = search.SerializeToString()
        return encoded

    def raw_message(self, rpc: str) -> tuple[bytes, str]:
        rng = self.rng
        kind = rng.randrange(10)
        if kind == 0:
            return rng.randbytes(rng.randint(0, 64)), "random bytes"
        if kind == 1:
            return rng.randbytes(rng.randint(64, 4096)), "random bytes (long)"
        base = self.raw_base(rpc)
        if kind == 2:
            return base[: rng.randrange(len(base) + 1)], "truncated encoding"
        if kind in (3, 4):
            data = bytearray(base)
            for _ in range(rng.randint(1, 3)):
                edit = rng.randrange(3)
                at = rng.randrange(len(data) + 1)
                if edit == 0 and at < len(data):
                    data[at] = rng.randrange(256)
                elif edit == 1:
                    data.insert(at, rng.randrange(256))
                elif at < len(data):
                    del data[at]
            return bytes(data), "mutated encoding"
        if kind == 5:
            bad_utf8 = rng.choice(
                [b"\xff\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"a\x80b", b"\xf4\x90\x80\x80", b"\xe2\x82"]
            )
            field = (
                rng.choice([1, 2, 6])
                if rpc
                in (
                    "Identify",
                    "IdentifyStream",
                    "InsertTemplate",
                    "BulkInsertTemplates",
                    "Verify",
                    "DeleteTemplate",
                )
                else 1
            )
            return bytes([field << 3 | 2, len(bad_utf8)]) + bad_utf8, "invalid UTF-8 in a string"
        if kind == 6:
            tricks = [
                (b"\x0a\x7f" + b"abc", "length past the end"),
                (b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "huge length varint"),
                (b"\x08" + b"\xff" * 11, "overlong varint"),
                (b"\x0b" * rng.choice([10, 200, 5000]), "unterminated groups"),
                ((b"\x9b\x06" * 3000) + (b"\x9c\x06" * 3000), "deeply nested unknown groups"),
                (b"\x0c", "end group without a start"),
                (b"\x00", "field number 0"),
                (b"\xfa\xff\xff\xff\x0f\x00", "field number past the maximum"),
                (b"\x0f", "wire type 7"),
                (b"\x0d\x00\x00", "truncated fixed32"),
                (b"\x1a\x03\x0a\x01\x05", "embedding values with a length of 1"),
                (b"\x1a\x05\x0a\x03\x00\x00\x00", "packed floats not a multiple of 4"),
                (b"\x12\x05\x0a\x03\x00\x00\x00", "packed floats not a multiple of 4 (field 2)"),
            ]
            return rng.choice(tricks)
        if kind == 7:
            unknown = b"".join(
                bytes([0xF8 | 0, rng.randint(1, 127)]) + bytes([rng.randrange(128)])
                for _ in range(rng.randint(1, 20))
            )
            return base + unknown, "valid encoding and unknown fields"
        if kind == 8:
            wrong_wire = bytes(
                [rng.choice([1, 2, 3, 4, 5, 6, 7]) << 3 | rng.choice([0, 1, 5])]
            ) + rng.randbytes(8)
            return wrong_wire + base, "a known field with the wrong wire type"
        return base, "the base encoding"

    def case(self, rpc: str) -> Case:
        rng = self.rng
        role, _, _ = self.structured.caller(rpc, refused_share=0.15)
        if rpc == "IdentifyStream" and role is Role.CCTV_EDGE:
            role = Role.OFFICER  # no authorisation: every camera stream would be refused outright
        if rpc in STREAMS:
            messages = [self.raw_message(rpc) for _ in range(rng.choice([0, 1, 1, 2, 3, 5]))]
            label = "stream of " + ", ".join(sorted({m for _, m in messages})) if messages else "empty stream"
            return Case(rpc, role, True, [m for m, _ in messages], "raw " + label, kind="raw bytes")
        message, label = self.raw_message(rpc)
        return Case(rpc, role, True, message, f"raw {label} ({len(message)} bytes)", kind="raw bytes")
