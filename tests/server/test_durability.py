"""Nothing acknowledged is lost: across restarts, across kill -9, and past a corrupted snapshot."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from safepassage.api.v1 import matching_pb2 as pb
from safepassage.api.v1 import matching_pb2_grpc as pb_grpc
from safepassage.server.identity import Role
from tests.process import ServerProcess

pytestmark = pytest.mark.server
DIM = 128


def emb(vector: np.ndarray) -> pb.Probe:
    return pb.Probe(embedding=pb.Embedding(values=vector.tolist()))


def _vectors(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(scale=0.1, size=(n, DIM)).astype(np.float32)


def _top1(matching: pb_grpc.MatchingServiceStub, gallery: str, vector: np.ndarray) -> str:
    answer = matching.Identify(pb.IdentifyRequest(gallery_id=gallery, probe=emb(vector), top_k=1), timeout=30)
    return answer.faces[0].candidates[0].reference_id


def test_restart_keeps_inserts_and_deletes_and_uses_the_snapshot(tmp_path: Path) -> None:
    vectors = _vectors(300, seed=5)
    server = ServerProcess(tmp_path)
    try:
        with server.channel() as channel:
            galleries, matching = pb_grpc.GalleryServiceStub(channel), pb_grpc.MatchingServiceStub(channel)
            galleries.CreateGallery(
                pb.CreateGalleryRequest(gallery_id="keep", purpose=pb.WATCHLIST, threshold=0.4)
            )
            answer = matching.BulkInsertTemplates(
                iter(
                    pb.InsertTemplateRequest(gallery_id="keep", reference_id=f"k{i}", template=emb(v))
                    for i, v in enumerate(vectors)
                )
            )
            assert answer.inserted == 300
            for i in range(0, 300, 10):
                matching.DeleteTemplate(pb.DeleteTemplateRequest(gallery_id="keep", reference_id=f"k{i}"))
    finally:
        assert server.stop() == 0
    assert (tmp_path / "snapshots" / "keep.snapshot").exists()

    server = ServerProcess(tmp_path)
    server.issue("officer-1", Role.OFFICER)
    try:
        assert server.logged("index loaded from verified snapshot")
        with server.channel() as channel, server.channel("officer-1") as officer:
            galleries, matching = pb_grpc.GalleryServiceStub(channel), pb_grpc.MatchingServiceStub(officer)
            described = galleries.DescribeGallery(pb.DescribeGalleryRequest(gallery_id="keep"))
            assert described.size == 270 and described.threshold == pytest.approx(0.4)
            for i in (1, 55, 299):
                assert _top1(matching, "keep", vectors[i]) == f"k{i}"
            assert _top1(matching, "keep", vectors[10]) != "k10"
    finally:
        server.stop()


def test_kill_9_loses_no_acknowledged_insert_or_delete(tmp_path: Path) -> None:
    vectors = _vectors(2000, seed=6)
    server = ServerProcess(tmp_path)
    acknowledged: list[int] = []
    deleted: list[int] = []
    # The one call that may be in flight at the kill: it may or may not have landed.
    in_flight: list[tuple[str, int]] = []
    with server.channel() as channel:
        galleries, matching = pb_grpc.GalleryServiceStub(channel), pb_grpc.MatchingServiceStub(channel)
        galleries.CreateGallery(pb.CreateGalleryRequest(gallery_id="crash", purpose=pb.WATCHLIST))
        stop = threading.Event()

        def writer() -> None:
            for i, v in enumerate(vectors):
                if stop.is_set():
                    return
                in_flight[:] = [("insert", i)]
                try:
                    matching.InsertTemplate(
                        pb.InsertTemplateRequest(gallery_id="crash", reference_id=f"c{i}", template=emb(v)),
                        timeout=10,
                    )
                except grpc.RpcError:
                    return  # the server died mid-call: not acknowledged
                acknowledged.append(i)
                if i % 7 == 3:
                    in_flight[:] = [("delete", i)]
                    try:
                        matching.DeleteTemplate(
                            pb.DeleteTemplateRequest(gallery_id="crash", reference_id=f"c{i}"), timeout=10
                        )
                    except grpc.RpcError:
                        return
                    deleted.append(i)

        thread = threading.Thread(target=writer)
        thread.start()
        while len(acknowledged) < 150:
            time.sleep(0.01)
        server.kill_hard()  # mid-stream, with no chance to snapshot or close
        stop.set()
        thread.join()
    assert not (tmp_path / "snapshots" / "crash.snapshot").exists()

    server = ServerProcess(tmp_path)
    server.issue("officer-1", Role.OFFICER)
    try:
        with server.channel() as channel, server.channel("officer-1") as officer:
            count = (
                pb_grpc.MatchingServiceStub(channel)
                .CountTemplates(pb.CountTemplatesRequest(gallery_id="crash"))
                .count
            )
            matching = pb_grpc.MatchingServiceStub(officer)
            live = set(acknowledged) - set(deleted)
            unsure = {i for _, i in in_flight}
            # Only the one call in flight at the kill may have landed without its acknowledgement.
            assert len(live) - 1 <= count <= len(live) + 1
            for i in sorted(live - unsure):
                verdict = matching.Verify(
                    pb.VerifyRequest(gallery_id="crash", reference_id=f"c{i}", probe=emb(vectors[i]))
                )
                assert verdict.decision == pb.MATCH and verdict.score == pytest.approx(0.0, abs=1e-5)
            for i in set(deleted) - unsure:
                with pytest.raises(grpc.RpcError) as info:
                    matching.Verify(
                        pb.VerifyRequest(gallery_id="crash", reference_id=f"c{i}", probe=emb(vectors[i]))
                    )
                assert info.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        server.stop()


def test_corrupted_snapshot_is_detected_and_rebuilt(tmp_path: Path) -> None:
    vectors = _vectors(200, seed=8)
    server = ServerProcess(tmp_path)
    try:
        with server.channel() as channel:
            pb_grpc.GalleryServiceStub(channel).CreateGallery(
                pb.CreateGalleryRequest(gallery_id="snap", purpose=pb.WATCHLIST)
            )
            matching = pb_grpc.MatchingServiceStub(channel)
            matching.BulkInsertTemplates(
                iter(
                    pb.InsertTemplateRequest(gallery_id="snap", reference_id=f"s{i}", template=emb(v))
                    for i, v in enumerate(vectors)
                )
            )
    finally:
        server.stop()
    path = tmp_path / "snapshots" / "snap.snapshot"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))

    server = ServerProcess(tmp_path)
    server.issue("officer-1", Role.OFFICER)
    try:
        assert server.logged("snapshot rejected") and server.logged("rebuilt from the store")
        with server.channel() as channel, server.channel("officer-1") as officer:
            count = pb_grpc.MatchingServiceStub(channel).CountTemplates(
                pb.CountTemplatesRequest(gallery_id="snap")
            )
            assert count.count == 200
            matching = pb_grpc.MatchingServiceStub(officer)
            assert all(_top1(matching, "snap", vectors[i]) == f"s{i}" for i in range(0, 200, 17))
    finally:
        server.stop()
