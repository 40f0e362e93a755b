"""Structured requests: real protobuf messages with hostile fields, one generator per RPC."""

from __future__ import annotations

import random
from typing import Any

from safepassage.api.v1 import matching_pb2 as pb
from safepassage.server.cctv_authorisation import METADATA_KEY
from safepassage.server.identity import Role

from .corpus import (
    Images,
    any_image,
    any_reference,
    bad_gallery,
    bad_reference,
    bad_vector,
    definite_bad_image,
    enum,
    fresh_reference,
    malformed_gallery,
    odd_vector,
    text,
    unknown_reference,
)
from .rpcs import REFS, Case, P, W, allowed_callers, refused_callers
from .tokens import Tokens, hostile_token


class StructuredRequests:
    """Seeded: the same seed gives the same requests, in the same order.

    The raw requests (see raw.py) draw on the same random sequence, so the order of calls matters.
    """

    def __init__(self, seed: int, images: Images, tokens: Tokens) -> None:
        self.rng = random.Random(seed)
        self.images = images
        self.tokens = tokens

    # Who calls: mostly a role the matrix allows (the request reaches validation).

    def caller(self, rpc: str, refused_share: float = 0.12) -> tuple[Role, str, bool]:
        rng = self.rng
        if rng.random() < refused_share:
            role, gallery = rng.choice(refused_callers(rpc))
            return role, gallery, True
        role, gallery = rng.choice(allowed_callers(rpc))
        return role, gallery, False

    # Probes and templates.

    def definite_bad_probe(self) -> tuple[pb.Probe, str, int]:
        rng = self.rng
        kind = rng.random()
        if kind < 0.1:
            return pb.Probe(), "empty probe", 0
        if kind < 0.2:
            return pb.Probe(embedding=pb.Embedding()), "empty embedding", 0
        if kind < 0.28:
            image, label = definite_bad_image(rng, self.images)
            return pb.Probe(image=image), label, 1
        values, label = bad_vector(rng)
        return pb.Probe(embedding=pb.Embedding(values=values)), label, 0

    def any_probe(self, image_share: float = 0.06) -> tuple[pb.Probe, str, int]:
        rng = self.rng
        kind = rng.random()
        if kind < image_share:
            image, label = any_image(rng, self.images)
            return pb.Probe(image=image), label, 1
        if kind < 0.5:
            values, label = odd_vector(rng)
            return pb.Probe(embedding=pb.Embedding(values=values)), label, 0
        return self.definite_bad_probe()

    # One generator per RPC: (request, label, images sent).

    def create_gallery(self, role: Role, refused: bool) -> tuple[Any, str, int]:
        rng = self.rng
        request = pb.CreateGalleryRequest(
            gallery_id=rng.choice([W, P, fresh_reference(rng).replace(".", "-").lower()]),
            purpose=rng.choice([pb.WATCHLIST, pb.PROTECTED_IDENTITY]),
        )
        if rng.random() < 0.3:
            request.threshold = rng.choice([0.0, 0.6, 1e30, 1e-40])
        if rng.random() < 0.2:
            request.model = "dlib-resnet-v1"
        defects = rng.sample(["gallery", "purpose", "threshold", "model", "exists"], rng.randint(1, 2))
        if refused:
            defects.append("role")
        if "exists" in defects:
            request.gallery_id = rng.choice([W, P])
        if "gallery" in defects:
            request.gallery_id = malformed_gallery(rng)
        if "purpose" in defects:
            request.purpose = enum(rng.choice([0, 3, 4, 99, -1, 2**31 - 1, -(2**31)]))
        if "threshold" in defects:
            request.threshold = rng.choice([float("nan"), float("inf"), float("-inf"), -5.0, -1e30, -1e39])
        if "model" in defects:
            request.model = (
                rng.choice(["arcface", "DLIB-RESNET-V1", "dlib-resnet-v1 ", "\x00"])
                if rng.random() < 0.5
                else text(rng) or "x"
            )
            if request.model == "dlib-resnet-v1":
                request.model = "arcface"
        return request, "create: " + "+".join(defects), 0

    def list_galleries(self, role: Role, refused: bool) -> tuple[Any, str, int]:
        return pb.ListGalleriesRequest(), "list" + (" (refused role)" if refused else ""), 0

    def describe_gallery(self, role: Role, gallery: str, refused: bool) -> tuple[Any, str, int]:
        gallery_id = gallery if refused and self.rng.random() < 0.7 else bad_gallery(self.rng)
        return pb.DescribeGalleryRequest(gallery_id=gallery_id), "describe a bad gallery", 0

    def delete_gallery(self, role: Role, gallery: str, refused: bool) -> tuple[Any, str, int]:
        # The admin only ever deletes galleries that do not exist; refused roles try the real ones too.
        gallery_id = gallery if refused and self.rng.random() < 0.5 else bad_gallery(self.rng)
        return pb.DeleteGalleryRequest(gallery_id=gallery_id), "delete a missing gallery", 0

    def insert(self, role: Role, gallery: str, refused: bool) -> tuple[pb.InsertTemplateRequest, str, int]:
        """An insert with at least one defect the server must refuse."""
        rng = self.rng
        defects = rng.sample(["gallery", "reference", "template", "selection"], rng.choice([1, 1, 2]))
        if refused:
            defects = ["role"] + (defects if rng.random() < 0.3 else [])
        gallery_id = bad_gallery(rng) if "gallery" in defects else gallery
        if "reference" in defects:
            reference = rng.choice(REFS[gallery]) if rng.random() < 0.4 else bad_reference(rng)
        else:
            reference = any_reference(rng, gallery)
        probe, label, images = self.definite_bad_probe() if "template" in defects else self.any_probe(0.04)
        if "selection" in defects:
            selection = rng.choice([pb.ALL, 4, 42, -1, 2**31 - 1])
        else:
            selection = rng.choice([0, 0, pb.SINGLE, pb.LARGEST, pb.ALL, 42])
        request = pb.InsertTemplateRequest(
            gallery_id=gallery_id,
            reference_id=reference,
            template=probe,
            face_selection=enum(selection),
        )
        return request, f"insert: {'+'.join(defects)} ({label})", images

    def bulk(self, role: Role, gallery: str, refused: bool) -> tuple[Any, str, int]:
        rng = self.rng
        items = [self.insert(role, gallery, refused) for _ in range(rng.choice([0, 1, 2, 5, 12, 30]))]
        return [r for r, _, _ in items], f"bulk of {len(items)} bad items", sum(i for _, _, i in items)

    def delete_template(self, role: Role, gallery: str, refused: bool) -> tuple[Any, str, int]:
        rng = self.rng
        if refused:
            # A role that may not delete here tries a real reference.
            request = pb.DeleteTemplateRequest(gallery_id=gallery, reference_id=rng.choice(REFS[gallery]))
            return request, "delete a real reference as a refused role", 0
        if rng.random() < 0.3:
            request = pb.DeleteTemplateRequest(
                gallery_id=bad_gallery(rng), reference_id=any_reference(rng, gallery)
            )
            return request, "delete in a bad gallery", 0
        other = P if gallery == W else W
        reference = rng.choice(REFS[other]) if rng.random() < 0.15 else unknown_reference(rng)
        return (
            pb.DeleteTemplateRequest(gallery_id=gallery, reference_id=reference),
            "delete a missing reference",
            0,
        )

    def count(self, role: Role, gallery: str, refused: bool) -> tuple[Any, str, int]:
        gallery_id = gallery if refused and self.rng.random() < 0.7 else bad_gallery(self.rng)
        return pb.CountTemplatesRequest(gallery_id=gallery_id), "count a bad gallery", 0

    def identify(self, gallery: str, definite: bool = False) -> tuple[pb.IdentifyRequest, str, int]:
        """A search with hostile fields; with `definite`, one the server must refuse."""
        rng = self.rng
        choices = ["gallery", "probe", "top_k", "threshold", "selection", "restrict_to"]
        count = rng.choice([1, 1, 1, 2, 3]) if definite or rng.random() < 0.85 else 0
        defects = rng.sample(choices, count)
        probe, label, images = self.definite_bad_probe() if "probe" in defects else self.any_probe()
        request = pb.IdentifyRequest(
            gallery_id=bad_gallery(rng) if "gallery" in defects else gallery,
            probe=probe,
            top_k=rng.choice([101, 1000, 2**31, 2**32 - 1])
            if "top_k" in defects
            else rng.choice([0, 1, 5, 100]),
            request_id=text(rng) if rng.random() < 0.5 else "",
            face_selection=enum(
                rng.choice([4, 42, -1, 2**31 - 1, -(2**31)])
                if "selection" in defects
                else rng.choice([0, 1, 2, 3])
            ),
        )
        if "threshold" in defects:
            request.threshold = rng.choice([float("nan"), float("inf"), float("-inf"), -1.0, -1e-30, -1e30])
        elif rng.random() < 0.3:
            request.threshold = rng.choice([0.0, 0.6, 1e30, 1e-40])
        if "restrict_to" in defects:
            if rng.random() < 0.03:
                request.restrict_to.extend(f"r{i}" for i in range(10_001 + rng.randrange(2000)))
                label += ", restrict_to over its limit"
            else:
                request.restrict_to.extend([bad_reference(rng) for _ in range(rng.randint(1, 5))])
                label += ", malformed restrict_to"
        elif rng.random() < 0.2:
            many = rng.random() < 0.01
            request.restrict_to.extend(
                [f"zz{i}" for i in range(10_000)]
                if many
                else [
                    rng.choice([*REFS[W], *REFS[P], fresh_reference(rng)]) for _ in range(rng.randint(1, 8))
                ]
            )
        return request, f"identify: {'+'.join(defects) or 'weird but valid'} ({label})", images

    def verify(self, gallery: str) -> tuple[Any, str, int]:
        rng = self.rng
        choices = ["gallery", "reference", "probe", "threshold", "selection"]
        defects = rng.sample(choices, rng.choice([1, 1, 2]) if rng.random() < 0.85 else 0)
        probe, label, images = self.definite_bad_probe() if "probe" in defects else self.any_probe()
        request = pb.VerifyRequest(
            gallery_id=bad_gallery(rng) if "gallery" in defects else gallery,
            reference_id=unknown_reference(rng)
            if "reference" in defects
            else rng.choice(REFS.get(gallery, REFS[W])),
            probe=probe,
            face_selection=enum(
                rng.choice([pb.ALL, 4, 42, -1]) if "selection" in defects else rng.choice([0, 1, 2])
            ),
        )
        if "threshold" in defects:
            request.threshold = rng.choice([float("nan"), float("inf"), float("-inf"), -1.0, -1e30])
        elif rng.random() < 0.3:
            request.threshold = rng.choice([0.0, 0.6, 1e30])
        return request, f"verify: {'+'.join(defects) or 'weird but valid'} ({label})", images

    def confirm(self, gallery: str, refused: bool) -> tuple[Any, str, int]:
        rng = self.rng
        gallery_id = gallery if refused or rng.random() < 0.7 else bad_gallery(rng)
        probe_id = rng.choice(
            [0, 1, 2, 42, 2**31, 2**32, 2**53 + 1, 2**63 - 1, rng.randrange(1000), rng.randrange(2**63)]
        )
        if rng.random() < 0.15:
            probe_id = rng.choice([2**63, 2**64 - 1, rng.randrange(2**63, 2**64)])
        return (
            pb.ConfirmMatchRequest(gallery_id=gallery_id, probe_id=probe_id),
            f"confirm probe {probe_id}",
            0,
        )

    # Structured cases.

    def case(self, rpc: str) -> Case:
        rng = self.rng
        role, gallery, refused = self.caller(rpc)
        if rpc == "IdentifyStream" and rng.random() < 0.5:
            role, gallery, refused = Role.CCTV_EDGE, W, False  # half the streams fuzz the authorisation
        metadata: tuple[tuple[str, str], ...] = ()
        if rpc == "CreateGallery":
            request, label, images = self.create_gallery(role, refused)
        elif rpc == "ListGalleries":
            role, _, refused = self.caller(rpc, refused_share=0.6)
            request, label, images = self.list_galleries(role, refused)
        elif rpc == "DescribeGallery":
            request, label, images = self.describe_gallery(role, gallery, refused)
        elif rpc == "DeleteGallery":
            request, label, images = self.delete_gallery(role, gallery, refused)
        elif rpc == "InsertTemplate":
            request, label, images = self.insert(role, gallery, refused)
        elif rpc == "BulkInsertTemplates":
            request, label, images = self.bulk(role, gallery, refused)
        elif rpc == "DeleteTemplate":
            request, label, images = self.delete_template(role, gallery, refused)
        elif rpc == "CountTemplates":
            request, label, images = self.count(role, gallery, refused)
        elif rpc == "Identify":
            request, label, images = self.identify(gallery)
        elif rpc == "Verify":
            request, label, images = self.verify(gallery)
        elif rpc == "IdentifyStream":
            # A camera with a valid authorisation only ever sends refusable requests, so no probe is kept.
            # Tokens get their own generator: their lengths vary from run to run (ECDSA
            # signatures), and the main sequence must not.
            token, token_label = (
                hostile_token(random.Random(rng.getrandbits(64)), self.tokens)
                if role is Role.CCTV_EDGE
                else (None, "")
            )
            definite = token == self.tokens.valid
            items = [self.identify(gallery, definite) for _ in range(rng.choice([0, 1, 1, 2, 4, 8]))]
            request = [r for r, _, _ in items]
            images = sum(i for _, _, i in items)
            label = f"stream of {len(items)}" + (f", {token_label}" if token_label else "")
            if token is not None:
                metadata = ((METADATA_KEY, token),)
        elif rpc == "ConfirmMatch":
            request, label, images = self.confirm(gallery, refused)
        else:  # pragma: no cover
            raise AssertionError(rpc)
        if rpc == "ConfirmMatch":
            kind = "probe_id >= 2**63" if request.probe_id >= 2**63 else "probe_id < 2**63"
        elif rpc == "IdentifyStream":
            kind = token_label or f"as {role.value}"
        else:
            kind = label.split(" (")[0]
        if refused:
            label += f" [as {role.value}, refused]"
            kind += " [refused role]"
        return Case(rpc, role, False, request, label, metadata, images, kind)
