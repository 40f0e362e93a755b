"""The RPC surface under fuzzing: its limits, galleries, message types and who may call what."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

from safepassage.api.v1 import matching_pb2 as pb
from safepassage.matcher import GalleryPurpose
from safepassage.server.authorization import GALLERY_FREE, MATRIX, Operation
from safepassage.server.identity import Role

DIM = 128
MESSAGE_LIMIT = 4 * 1024 * 1024
IMAGE_LIMIT = 1024 * 1024
W, P = "fz-watch", "fz-protected"
REFS = {W: tuple(f"w-{i}" for i in range(8)), P: tuple(f"p-{i}" for i in range(8))}
PURPOSE = {W: GalleryPurpose.WATCHLIST, P: GalleryPurpose.PROTECTED_IDENTITY}
CAMERA = "cam-1"  # the session PKI's cctv_edge client
GALLERY_RPCS = ("CreateGallery", "ListGalleries", "DescribeGallery", "DeleteGallery")
REQUEST_TYPES: dict[str, Any] = {
    "CreateGallery": pb.CreateGalleryRequest,
    "ListGalleries": pb.ListGalleriesRequest,
    "DescribeGallery": pb.DescribeGalleryRequest,
    "DeleteGallery": pb.DeleteGalleryRequest,
    "InsertTemplate": pb.InsertTemplateRequest,
    "BulkInsertTemplates": pb.InsertTemplateRequest,
    "DeleteTemplate": pb.DeleteTemplateRequest,
    "CountTemplates": pb.CountTemplatesRequest,
    "Identify": pb.IdentifyRequest,
    "Verify": pb.VerifyRequest,
    "IdentifyStream": pb.IdentifyRequest,
    "ConfirmMatch": pb.ConfirmMatchRequest,
}
RESPONSE_TYPES: dict[str, Any] = {
    "CreateGallery": pb.Gallery,
    "ListGalleries": pb.ListGalleriesResponse,
    "DescribeGallery": pb.Gallery,
    "DeleteGallery": pb.DeleteGalleryResponse,
    "InsertTemplate": pb.InsertTemplateResponse,
    "BulkInsertTemplates": pb.BulkInsertResponse,
    "DeleteTemplate": pb.DeleteTemplateResponse,
    "CountTemplates": pb.CountTemplatesResponse,
    "Identify": pb.IdentifyResponse,
    "Verify": pb.VerifyResponse,
    "IdentifyStream": pb.IdentifyStreamResponse,
    "ConfirmMatch": pb.ConfirmMatchResponse,
}
STREAMS = {"BulkInsertTemplates": "stream_unary", "IdentifyStream": "stream_stream"}
WRITES = ("CreateGallery", "DeleteGallery", "InsertTemplate", "BulkInsertTemplates", "DeleteTemplate")

OK = "OK"
ALLOWED = frozenset(
    {
        "OK",
        "INVALID_ARGUMENT",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "PERMISSION_DENIED",
        # Two fuzzed stream messages with one request id at the same moment: "retry".
        "ABORTED",
    }
)
CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


def path_of(rpc: str) -> str:
    service = "GalleryService" if rpc in GALLERY_RPCS else "MatchingService"
    return f"/safepassage.v1.{service}/{rpc}"


def allowed_callers(rpc: str) -> list[tuple[Role, str]]:
    """(role, gallery) pairs the authorisation matrix allows for the rpc."""
    operation = Operation(rpc)
    if operation in GALLERY_FREE:
        return [(role, "") for role in sorted(GALLERY_FREE[operation], key=str)]
    return [
        (role, gallery)
        for role, purposes in sorted(MATRIX[operation].items(), key=lambda item: str(item[0]))
        for gallery in (W, P)
        if PURPOSE[gallery] in purposes
    ]


def refused_callers(rpc: str) -> list[tuple[Role, str]]:
    allowed = set(allowed_callers(rpc))
    if Operation(rpc) in GALLERY_FREE:
        return [(role, "") for role in Role if (role, "") not in allowed]
    return [(role, g) for role in Role for g in (W, P) if (role, g) not in allowed]


@dataclass
class Case:
    rpc: str
    role: Role
    raw: bool
    request: Any  # a message, a list of messages, bytes, or a list of bytes
    label: str
    metadata: tuple[tuple[str, str], ...] = ()
    images: int = 0
    kind: str = ""  # the kind of hostility, for grouping outcomes
