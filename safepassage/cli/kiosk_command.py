"""`safepassage edge kiosk`: an officer's kiosk: guided capture, liveness, then verify or identify.

safepassage edge kiosk --config kiosk.toml verify REFERENCE
safepassage edge kiosk --config kiosk.toml identify

The kiosk's config is a camera file (source: usually a device such as "0";
server, certificates, model pack); prompts are printed as the person is
guided. Exit status: 0 on MATCH, 1 on NO_MATCH, 4 when the liveness check or
the capture failed, 2 on a setup error or an unreachable server.
"""

from __future__ import annotations

import argparse
import sys

from safepassage.core.errors import SafePassageError

LIVENESS_FAILED = 4


def add_kiosk_parser(
    actions: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    kiosk = actions.add_parser(
        "kiosk", parents=[common], help="guided capture with liveness, then 1:1 or 1:N"
    )
    kiosk.add_argument("--source", help="override source.location (a device number, file or URL)")
    kiosk.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the server's answer")
    flows = kiosk.add_subparsers(dest="kiosk_flow", required=True)
    flows.add_parser("verify", help="1:1 against a reference id").add_argument("reference")
    flows.add_parser("identify", help="1:N in the configured gallery")


def run_kiosk(args: argparse.Namespace) -> int:
    from safepassage.api.v1 import matching_pb2 as pb
    from safepassage.api.v1 import matching_pb2_grpc as pb_grpc
    from safepassage.camera_edge.capture import CaptureLoop, Pace
    from safepassage.camera_edge.config import load_edge_config
    from safepassage.camera_edge.connection import open_channel
    from safepassage.camera_edge.errors import CaptureTimedOut, LivenessFailed
    from safepassage.camera_edge.kiosk import KioskSession, KioskStep, identify, verify
    from safepassage.camera_edge.sources import open_source
    from safepassage.face.pipeline import load_pipeline

    try:
        config = load_edge_config(args.config, {"source.location": args.source} if args.source else None)
        server = config.server
        credentials = server.credentials()
        pipeline = load_pipeline(config.detection.pipeline_settings())
        session = KioskSession(pipeline, lambda text: print(f">> {text}", flush=True))
        source = open_source(config.source.spec())
        # A live camera drops stale frames; a recorded session (a file) plays at its own pace.
        with CaptureLoop(source, pace=Pace.REALTIME, max_fps=config.source.max_fps) as capture:
            for frame in capture.frames():
                if session.feed(frame) is KioskStep.DONE:
                    break
        captured = session.capture
        with open_channel(server.address, credentials, server_name=server.server_name) as channel:
            stub = pb_grpc.MatchingServiceStub(channel)
            if args.kiosk_flow == "verify":
                answer = verify(stub, server.gallery_id, args.reference, captured, args.timeout)
                print(
                    f"{pb.Decision.Name(answer.decision)}"
                    f" (score {answer.score:.3f}, threshold {answer.threshold:.3f})"
                )
                return 0 if answer.decision == pb.MATCH else 1
            found = identify(stub, server.gallery_id, captured, args.timeout)
            for face in found.faces:
                for candidate in face.candidates:
                    mark = "MATCH" if candidate.match else "     "
                    print(
                        f"{candidate.rank:>3} {mark} {candidate.reference_id} (score {candidate.score:.3f})"
                    )
            print(pb.Decision.Name(found.decision))
            return 0 if found.decision == pb.MATCH else 1
    except (LivenessFailed, CaptureTimedOut) as error:
        print(f"not accepted: {error}", file=sys.stderr)
        return LIVENESS_FAILED
    except SafePassageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
