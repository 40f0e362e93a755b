"""What each `safepassage` client command does, and how its answer is printed."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from safepassage.api.v1 import matching_pb2 as pb
from safepassage.api.v1 import travel_document_pb2 as tpb
from safepassage.api.v1 import travel_document_pb2_grpc as tpb_grpc
from safepassage.cli.client import Stubs
from safepassage.core.image_formats import IMAGE_SUFFIXES

TIMEOUT_S = 60.0


def _metric(value: pb.Metric.ValueType) -> str:
    return pb.Metric.Name(value).lower()


def _score_name(value: pb.Metric.ValueType) -> str:
    """What a score is: an L2 distance matches at or below the threshold, a similarity at or above."""
    return "distance" if value == pb.L2 else "similarity"


_ORIGINS = {
    pb.MODEL_DEFAULT: "model 1:1 default",
    pb.WATCHLIST_DEFAULT: "watchlist default",
    pb.CALIBRATED: "calibration at target FPIR",
    pb.SET_BY_ADMIN: "set by admin",
}


def _origin(value: pb.ThresholdOrigin.ValueType) -> str:
    return _ORIGINS.get(value, "origin not reported")


def uncalibrated_watchlist(g: pb.Gallery) -> bool:
    """A watchlist whose FPIR at its size was never measured (its threshold is a default or a guess)."""
    return g.purpose == pb.WATCHLIST and not g.HasField("calibration")


def _box(box: pb.FaceBox) -> str:
    return f"[{box.left},{box.top} {box.right - box.left}x{box.bottom - box.top}]"


def _selection(args: argparse.Namespace) -> pb.FaceSelection.ValueType:
    return pb.LARGEST if getattr(args, "largest", False) else pb.FACE_SELECTION_UNSPECIFIED


def _probe(path: Path) -> pb.Probe:
    return pb.Probe(image=path.read_bytes())


def health(stubs: Stubs, args: argparse.Namespace) -> None:
    answer = health_pb2_grpc.HealthStub(stubs.channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    print(health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))


def _print_gallery(g: pb.Gallery) -> None:
    policy = f" (follows FPIR {g.target_fpir:g} at this size)" if g.HasField("target_fpir") else ""
    print(
        f"{g.gallery_id}  purpose={pb.GalleryPurpose.Name(g.purpose).lower()}  size={g.size}"
        f"  model={g.model}  dim={g.dimension}  metric={_metric(g.metric)}"
        f"  threshold={g.threshold:.3f}{policy}"
        f"  index={g.index_kind or 'flat'} (recall@1 {g.index_recall:.3f})"
        + (f"  protected=v{g.protection_version}" if g.protection_version else "")
    )
    rate = (
        f"; FPIR {g.implied_fpir:.2%} at size {g.size} ({g.implied_fpir_basis})"
        if g.HasField("implied_fpir")
        else "; FPIR unknown until calibrated"
    )
    kind = "normalised score" if g.background_cohort else _score_name(g.metric)
    print(f"  threshold {g.threshold:.3f} {kind}: {_origin(g.threshold_origin)}{rate}")
    if g.background_cohort:
        print(f"  scores normalised by a background cohort of {g.background_cohort} faces (never candidates)")
    if g.HasField("calibration"):
        c = g.calibration
        print(
            f"  calibrated: {c.impostor_searches} impostor searches ({c.method}) at size {c.gallery_size},"
            f" {c.calibrated_at.ToDatetime():%Y-%m-%d %H:%M} UTC"
        )
    if g.quarantined_templates:
        print(f"  quarantined: {g.quarantined_templates} stored templates, not searched (see the server log)")
    if g.index_build_failures:
        print(f"  index builds failed: {g.index_build_failures} since start-up (server log has the cause)")


def gallery_create(stubs: Stubs, args: argparse.Namespace) -> None:
    request = pb.CreateGalleryRequest(
        gallery_id=args.gallery, purpose=pb.GalleryPurpose.Value(args.purpose.upper())
    )
    if args.threshold is not None:
        request.threshold = args.threshold
    request.protect_templates = args.protect
    created = stubs.galleries.CreateGallery(request, timeout=TIMEOUT_S)
    _print_gallery(created)
    if uncalibrated_watchlist(created):
        print(
            f"warning: watchlist {created.gallery_id} is not calibrated: after enrolling, run"
            f" `safepassage gallery calibrate {created.gallery_id} --impostors DIR --target-fpir 0.01`;"
            " `safepassage authorise` refuses cameras until then",
            file=sys.stderr,
        )


def gallery_calibrate(stubs: Stubs, args: argparse.Namespace) -> None:
    """From a folder of photos of people known not to be in the gallery, or leave-one-out."""
    request = pb.CalibrateGalleryRequest(gallery_id=args.gallery, leave_one_out=args.leave_one_out or 0)
    if args.impostors is not None:
        files = sorted(p for p in args.impostors.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        request.impostors.extend(_probe(p) for p in files)
    if args.target_fpir is not None:
        request.target_fpir = args.target_fpir
    request.background_cohort = args.background_cohort
    _print_gallery(
        stubs.galleries.CalibrateGallery(request, timeout=max(TIMEOUT_S, 0.5 * len(request.impostors)))
    )


def renew_protection(stubs: Stubs, args: argparse.Namespace) -> None:
    answer = stubs.galleries.RenewTemplateProtection(pb.RenewTemplateProtectionRequest(), timeout=3600)
    print(
        f"template protection now at key version {answer.protection_version}:"
        f" {answer.templates_rewritten} templates of {len(answer.galleries)} galleries rewritten"
    )


def gallery_list(stubs: Stubs, args: argparse.Namespace) -> None:
    galleries = stubs.galleries.ListGalleries(pb.ListGalleriesRequest(), timeout=TIMEOUT_S).galleries
    if not galleries:
        print("no galleries")
    for g in galleries:
        _print_gallery(g)


def gallery_describe(stubs: Stubs, args: argparse.Namespace) -> None:
    described = stubs.galleries.DescribeGallery(
        pb.DescribeGalleryRequest(gallery_id=args.gallery), timeout=TIMEOUT_S
    )
    _print_gallery(described)
    if uncalibrated_watchlist(described):
        print(f"  not calibrated: run `safepassage gallery calibrate {args.gallery} ... --target-fpir`")


def gallery_delete(stubs: Stubs, args: argparse.Namespace) -> None:
    answer = stubs.galleries.DeleteGallery(
        pb.DeleteGalleryRequest(gallery_id=args.gallery), timeout=TIMEOUT_S
    )
    print(f"deleted gallery {args.gallery}: {answer.templates_erased} templates erased")


def enrol(stubs: Stubs, args: argparse.Namespace) -> None:
    """One subject from one or more images: the first enrols it (or, with --add, is another capture
    of an enrolled subject), each further image is another capture."""
    probes = [_probe(image) for image in args.images]  # every file read before anything is sent
    for position, (image, probe) in enumerate(zip(args.images, probes, strict=True)):
        answer = stubs.matching.InsertTemplate(
            pb.InsertTemplateRequest(
                gallery_id=args.gallery,
                reference_id=args.reference,
                template=probe,
                face_selection=_selection(args),
                add_capture=args.add or position > 0,
            ),
            timeout=TIMEOUT_S,
        )
        where = f" (face {_box(answer.box)})" if answer.HasField("box") else ""
        held = f": {answer.captures} captures" if answer.captures > 1 else ""
        print(f"enrolled {answer.reference_id} in {args.gallery} from {image.name}{where}{held}")


def bulk_import(stubs: Stubs, args: argparse.Namespace) -> int:
    """Every image in a folder, reference id = file name without suffix; 1 when any failed.
    A sub-folder is one subject of several captures: reference id = the folder's name.

    References already in the gallery are skipped (counted, not failures), so a re-run
    after a partial import completes it.
    """
    files = sorted(p for p in args.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    subjects = sorted(p for p in args.folder.iterdir() if p.is_dir())
    failed_subjects = sum(_import_subject(stubs, args, folder) for folder in subjects)
    if subjects and not files:
        done = len(subjects) - failed_subjects
        print(f"imported {done} of {len(subjects)} subject folders into {args.gallery}")
        return 1 if failed_subjects else 0

    def requests() -> Iterator[pb.InsertTemplateRequest]:
        for path in files:
            yield pb.InsertTemplateRequest(
                gallery_id=args.gallery,
                reference_id=path.stem,
                template=_probe(path),
                face_selection=_selection(args),
            )

    answer = stubs.matching.BulkInsertTemplates(requests(), timeout=max(TIMEOUT_S, 5.0 * len(files)))
    present = grpc.StatusCode.ALREADY_EXISTS.value[0]
    skipped = sum(1 for error in answer.errors if error.code == present)
    failed = answer.failed - skipped
    for error in answer.errors:
        if error.code != present:
            print(f"failed: {files[error.index].name}: {error.message}", file=sys.stderr)
    unlisted = failed - (len(answer.errors) - skipped)
    if unlisted > 0:
        print(f"failed: {unlisted} more, not listed by the server", file=sys.stderr)
    print(
        f"imported {answer.inserted} of {len(files)} images into {args.gallery};"
        f" {skipped} already present (skipped); {failed} failed"
    )
    return 1 if failed or failed_subjects else 0


def _import_subject(stubs: Stubs, args: argparse.Namespace, folder: Path) -> int:
    """One sub-folder as one subject of several captures; 1 if it failed. An enrolled subject is
    skipped whole, so a re-run never adds the same captures twice."""
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        print(f"failed: {folder.name}/: no images", file=sys.stderr)
        return 1
    for position, image in enumerate(images):
        try:
            stubs.matching.InsertTemplate(
                pb.InsertTemplateRequest(
                    gallery_id=args.gallery,
                    reference_id=folder.name,
                    template=_probe(image),
                    face_selection=_selection(args),
                    add_capture=position > 0,
                ),
                timeout=TIMEOUT_S,
            )
        except grpc.RpcError as error:
            if position == 0 and error.code() is grpc.StatusCode.ALREADY_EXISTS:
                print(f"{folder.name}/: already present (skipped)")
                return 0
            print(f"failed: {folder.name}/{image.name}: {error.details()}", file=sys.stderr)
            return 1
    print(f"{folder.name}/: {len(images)} captures")
    return 0


def identify(stubs: Stubs, args: argparse.Namespace) -> None:
    request = pb.IdentifyRequest(
        gallery_id=args.gallery,
        probe=_probe(args.image),
        top_k=args.top_k,
        restrict_to=args.restrict_to or [],
    )
    if args.threshold is not None:
        request.threshold = args.threshold
    if args.target_fpir is not None:
        request.target_fpir = args.target_fpir
    answer = stubs.matching.Identify(request, timeout=TIMEOUT_S)
    source = pb.ThresholdSource.Name(answer.threshold_source).lower().replace("_", " ")
    if answer.HasField("target_fpir"):
        source += f" {answer.target_fpir:g}"
    if answer.threshold_source == pb.GALLERY_THRESHOLD:
        source += f": {_origin(answer.gallery_threshold_origin)}"
    score = _score_name(answer.metric)
    normalised = any(c.HasField("normalised_score") for f in answer.faces for c in f.candidates)
    print(
        f"{pb.Decision.Name(answer.decision)}  ({len(answer.faces)} face(s); {_metric(answer.metric)}"
        f" {'normalised' if normalised else score} threshold {answer.threshold:.3f} from {source})"
    )
    for number, face in enumerate(answer.faces, 1):
        where = _box(face.box) if face.HasField("box") else "embedding"
        print(f"face {number} {where}: {pb.Decision.Name(face.decision)}")
        for c in face.candidates:
            ratio = f" normalised {c.normalised_score:.4f}" if c.HasField("normalised_score") else ""
            flag = "  match" if c.match else ""
            print(f"  {c.rank:>3}. {c.reference_id:<40} {score} {c.score:.4f}{ratio}{flag}")


def verify(stubs: Stubs, args: argparse.Namespace) -> None:
    request = pb.VerifyRequest(
        gallery_id=args.gallery,
        reference_id=args.reference,
        probe=_probe(args.image),
        face_selection=_selection(args),
    )
    if args.threshold is not None:
        request.threshold = args.threshold
    answer = stubs.matching.Verify(request, timeout=TIMEOUT_S)
    ratio = f" normalised {answer.normalised_score:.4f}" if answer.HasField("normalised_score") else ""
    print(
        f"{pb.Decision.Name(answer.decision)}  score {answer.score:.4f}{ratio} ({_metric(answer.metric)},"
        f" threshold {answer.threshold:.3f})"
    )


def verify_document(stubs: Stubs, args: argparse.Namespace) -> int:
    """The live face against a passport chip's photo; exit 1 when the chip fails passive authentication."""
    document = tpb.TravelDocument(
        dg2=args.dg2.read_bytes(),
        sod=args.sod.read_bytes() if args.sod else b"",
        dg1=args.dg1.read_bytes() if args.dg1 else b"",
    )
    request = tpb.VerifyDocumentRequest(
        document=document, probe=_probe(args.image), face_selection=_selection(args)
    )
    answer = tpb_grpc.TravelDocumentServiceStub(stubs.channel).VerifyDocument(request, timeout=TIMEOUT_S)
    proof = answer.passive_authentication
    status = tpb.PassiveAuthenticationStatus.Name(proof.status)
    if proof.status == tpb.PA_FAILED:
        status += f" ({tpb.PassiveAuthenticationFailure.Name(proof.failure)}): {proof.detail};"
        status += f" the faces alone: {'MATCH' if answer.face_match else 'NO_MATCH'}"
    elif proof.status == tpb.PA_PASSED:
        status += f" ({', '.join(f'DG{n}' for n in proof.data_groups)}; {proof.country or 'no country'})"
    print(
        f"{pb.Decision.Name(answer.decision)}  {_score_name(answer.metric)} {answer.score:.4f}"
        f" ({_metric(answer.metric)}, threshold {answer.threshold:.3f})  passive authentication {status}"
    )
    print(f"portrait: {answer.face_record_format}, {answer.image_format}", end="")
    print("; document expired" if answer.document_expired else "")
    return 1 if proof.status == tpb.PA_FAILED else 0


def count(stubs: Stubs, args: argparse.Namespace) -> None:
    print(
        stubs.matching.CountTemplates(
            pb.CountTemplatesRequest(gallery_id=args.gallery), timeout=TIMEOUT_S
        ).count
    )


def delete(stubs: Stubs, args: argparse.Namespace) -> None:
    stubs.matching.DeleteTemplate(
        pb.DeleteTemplateRequest(gallery_id=args.gallery, reference_id=args.reference), timeout=TIMEOUT_S
    )
    print(f"deleted {args.reference} from {args.gallery}")
