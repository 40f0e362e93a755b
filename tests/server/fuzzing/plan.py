"""The fuzzing plan: how many requests of each kind per RPC, generated in one seeded order."""

from __future__ import annotations

from .corpus import Images
from .raw import RawRequests
from .rpcs import Case
from .structured import StructuredRequests
from .tokens import Tokens

# How many calls of each kind; stream calls carry several messages each.
PLAN: dict[str, tuple[int, int]] = {  # rpc -> (structured, raw)
    "CreateGallery": (650, 320),
    "ListGalleries": (200, 320),
    "DescribeGallery": (500, 320),
    "DeleteGallery": (550, 320),
    "InsertTemplate": (1500, 360),
    "BulkInsertTemplates": (320, 200),
    "DeleteTemplate": (650, 320),
    "CountTemplates": (450, 320),
    "Identify": (1750, 360),
    "Verify": (1000, 340),
    "IdentifyStream": (320, 200),
    "ConfirmMatch": (550, 320),
}


class Generator:
    """Seeded: the same seed gives the same requests, in the same order."""

    def __init__(self, seed: int, images: Images, tokens: Tokens) -> None:
        self.structured = StructuredRequests(seed, images, tokens)
        self.raw = RawRequests(self.structured)
        self.rng = self.structured.rng

    def cases(self) -> list[Case]:
        cases = []
        for rpc, (structured, raw) in PLAN.items():
            cases += [self.structured.case(rpc) for _ in range(structured)]
            cases += [self.raw.case(rpc) for _ in range(raw)]
        self.rng.shuffle(cases)
        return cases
