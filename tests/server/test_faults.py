"""Faults (issue #15, finding 9): a failing disk, signals, crashes, clients that go away.

Each test runs the real server: in a child process where the fault is the
process's (signals, a disk that refuses writes, a kill at a chosen step: see
tests/fault_serve.py), in this process where only the API is involved.

What the disk faults simulate, exactly: RLIMIT_FSIZE 0 on the server process
(set at its start, or lowered while it runs) makes every write(2) fail with
EFBIG (the kernel refuses any write at or past the limit), while creating
empty files, renaming and unlinking still work. That is stricter than a full
disk, where bytes a file already has can still be rewritten, and like a
read-only folder for the files already there. It needs no root and no
mount. It is not ENOSPC, EACCES or EROFS themselves: SQLite reports every
one of them as an I/O failure or SQLITE_FULL (-> UNAVAILABLE), and the
server maps the raw errno values alike (safepassage.store.errors.WRITE_REFUSALS, unit
tested below). A real SIGBUS from a failing page-in is not provoked: the test
checks that the store maps no file, and that a fatal signal is reported.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from safepassage.api.v1 import matching_pb2 as pb
from safepassage.api.v1 import matching_pb2_grpc as pb_grpc
from safepassage.server.data_lock import DataFolderLock
from safepassage.server.identity import Role
from tests.conftest import REPO
from tests.process import ServerProcess

pytestmark = pytest.mark.server
DIM = 128
STREAM = "MatchingService/IdentifyStream"
RNG = np.random.default_rng(915)
VECTORS = RNG.normal(scale=0.1, size=(40, DIM)).astype(np.float32)


def embedding(vector: np.ndarray) -> pb.Probe:
    return pb.Probe(embedding=pb.Embedding(values=vector.tolist()))


def wait_until(condition: Any, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def fill(galleries: pb_grpc.GalleryServiceStub, matching: pb_grpc.MatchingServiceStub, gallery: str) -> None:
    galleries.CreateGallery(pb.CreateGalleryRequest(gallery_id=gallery, purpose=pb.WATCHLIST))
    for i, vector in enumerate(VECTORS[:20]):
        matching.InsertTemplate(
            pb.InsertTemplateRequest(gallery_id=gallery, reference_id=f"r{i}", template=embedding(vector))
        )


# -- a client ending its stream ------------------------------------------------------------------


def running(function: str, *file: str) -> bool:
    """Whether a thread of this process is inside ``function`` of the file ending in ``file`` now."""
    for top in sys._current_frames().values():
        frame: FrameType | None = top
        while frame is not None:
            code = frame.f_code
            if code.co_name == function and Path(code.co_filename).parts[-len(file) :] == file:
                return True
            frame = frame.f_back
    return False


def server_reads_a_stream() -> bool:
    """A server thread waits in gRPC's request iterator for a stream's next message."""
    return running("_next", "grpc", "_server.py")


def stream_handled() -> bool:
    """No server thread is inside the access interceptor's stream wrapper (which logs the outcome)."""
    return not running("stream_stream", "safepassage", "server", "access.py")


def test_a_client_ending_its_stream_is_not_logged_as_an_internal_error(  # type: ignore[no-untyped-def]
    server_factory, clients_for
) -> None:
    service, port, _ = server_factory()
    clients = clients_for(port)
    fill(clients.admin.galleries, clients.admin.matching, "watch")
    log = service.transparency_log

    def query(i: int) -> pb.IdentifyRequest:
        return pb.IdentifyRequest(gallery_id="watch", probe=embedding(VECTORS[i]), request_id=f"q-{i}")

    # Half-closed: the client sends its queries, closes its side and reads every answer.
    answers = list(clients.officer.matching.IdentifyStream(iter([query(0), query(1)]), timeout=30))
    assert [a.result.faces[0].candidates[0].reference_id for a in answers] == ["r0", "r1"]

    # Cancelled: an edge device drops its stream after an answer, with nothing more to send.
    more = threading.Event()

    def requests() -> Iterator[pb.IdentifyRequest]:
        yield query(2)
        more.wait(30)

    call = clients.officer.matching.IdentifyStream(requests(), timeout=30)
    assert next(call).result.faces[0].candidates[0].reference_id == "r2"
    # Cancelled while the server waits for the next message (as an idle edge stream is); cancelled
    # while it is still sending an answer, gRPC just closes the handler and there is nothing to see.
    wait_until(server_reads_a_stream, "the server to wait for the next message")
    call.cancel()
    # gRPC hands the cancel to the handler as an error from the request iterator (logged by the
    # error mapping as the client ending the stream) or as the stream's end; either way the access
    # wrapper has recorded what it records once no thread is inside it. (The request generator
    # stays blocked until then: ending it could half-close the stream instead of cancelling it.)
    wait_until(stream_handled, "the server to finish with the cancelled stream")
    more.set()

    outcomes = [e.event().outcome for e in log.entries(0, log.size()) if e.event().operation == STREAM]
    assert outcomes == ["MATCH", "MATCH", "MATCH"]  # one entry per answer, nothing for the ends


# -- SIGTERM in every state ----------------------------------------------------------------------


def serve_command(data_dir: Path, *launcher: str) -> list[str]:
    config = data_dir.parent / f"{data_dir.name}-test.toml"
    config.write_text("[limits]\nenabled = false\n[fishing]\nenabled = false\n")
    command = [sys.executable, *(launcher or ("-m", "safepassage.cli.main")), "serve"]
    return [*command, "--config", str(config), "--data-dir", str(data_dir), "--port", "0"]


def test_sigterm_during_start_up_stops_cleanly(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    process = subprocess.Popen(
        serve_command(data), cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    assert process.stderr is not None
    lines: list[str] = []
    for line in process.stderr:
        lines.append(line)
        if "opened transparency log" in line:  # mid-way through create_server
            process.send_signal(signal.SIGTERM)
            break
    lines.extend(process.stderr)
    process.stderr.close()
    assert process.wait(timeout=120) == 0, "".join(lines[-30:])
    text = "".join(lines)
    assert "received SIGTERM" in text and "SafePassage stopped" in text
    assert "Traceback" not in text
    DataFolderLock.acquire(data).release()  # nothing holds the folder


def test_sigterm_with_a_stream_open_stops_cleanly(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data")
    try:
        server.issue("officer-1", Role.OFFICER)
        with server.channel() as admin:
            fill(pb_grpc.GalleryServiceStub(admin), pb_grpc.MatchingServiceStub(admin), "watch")
        more = threading.Event()

        def requests() -> Iterator[pb.IdentifyRequest]:
            yield pb.IdentifyRequest(gallery_id="watch", probe=embedding(VECTORS[3]), request_id="q-1")
            more.wait(60)

        with server.channel("officer-1") as officer:
            call = pb_grpc.MatchingServiceStub(officer).IdentifyStream(requests(), timeout=60)
            assert next(iter(call)).result.faces[0].candidates[0].reference_id == "r3"
            # The stream stays open (the edge has nothing more to send) while the server is told to stop.
            code = server.stop()
            more.set()
        assert code == 0, "".join(server.log[-30:])
        assert server.logged("SafePassage stopped; 1 index snapshots written")
        assert not server.logged("Traceback")
    finally:
        server.stop()


# -- a disk that refuses writes ------------------------------------------------------------------


def healthy(server: ServerProcess) -> bool:
    with server.channel() as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


def refusal(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as refused:
        call()
    return refused.value.code()


def test_a_disk_that_fills_while_serving_refuses_writes_with_unavailable_and_the_server_lives(
    tmp_path: Path,
) -> None:
    server = ServerProcess(tmp_path / "data")
    try:
        with server.channel() as admin:
            galleries, matching = pb_grpc.GalleryServiceStub(admin), pb_grpc.MatchingServiceStub(admin)
            fill(galleries, matching, "watch")
            _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.prlimit(server.process.pid, resource.RLIMIT_FSIZE, (0, hard))
            codes = []
            for i in range(20, 40):  # the files' free space (WAL frames already there) runs out first
                try:
                    matching.InsertTemplate(
                        pb.InsertTemplateRequest(
                            gallery_id="watch", reference_id=f"r{i}", template=embedding(VECTORS[i])
                        )
                    )
                except grpc.RpcError as error:
                    codes.append(error.code())
            assert codes and set(codes) == {grpc.StatusCode.UNAVAILABLE}
            assert server.process.poll() is None and healthy(server)
            # Every cause is logged, none as a bug.
            assert server.logged("database or disk is full") or server.logged("disk I/O error")
            assert not server.logged("unexpected error")

            # Space again: the same server takes writes again.
            resource.prlimit(server.process.pid, resource.RLIMIT_FSIZE, (hard, hard))
            matching.InsertTemplate(
                pb.InsertTemplateRequest(
                    gallery_id="watch", reference_id="later", template=embedding(VECTORS[0])
                )
            )
            # Full again at shutdown: the snapshot and the tree head cannot be written; the stop completes.
            resource.prlimit(server.process.pid, resource.RLIMIT_FSIZE, (0, hard))
        assert server.stop() == 0, "".join(server.log[-30:])
        assert server.logged("could not write the index snapshots")
        assert not list((tmp_path / "data" / "snapshots").glob("*.tmp"))
    finally:
        server.stop()

    # Nothing acknowledged was lost: the next start rebuilds the index from the store.
    again = ServerProcess(tmp_path / "data")
    try:
        with again.channel() as admin:
            described = pb_grpc.GalleryServiceStub(admin).DescribeGallery(
                pb.DescribeGalleryRequest(gallery_id="watch")
            )
        assert described.size >= 21
    finally:
        assert again.stop() == 0


def sizes(*folders: Path) -> dict[Path, int]:
    return {path: path.stat().st_size for folder in folders for path in folder.rglob("*") if path.is_file()}


def test_a_restart_on_a_disk_that_refuses_writes_loads_its_keys_and_refuses_writes(tmp_path: Path) -> None:
    data, keys = tmp_path / "data", tmp_path / "data-keys"
    first = ServerProcess(data)
    try:
        first.issue("officer-1", Role.OFFICER)
        with first.channel() as admin:
            fill(pb_grpc.GalleryServiceStub(admin), pb_grpc.MatchingServiceStub(admin), "watch")
    finally:
        assert first.stop() == 0
    before = sizes(data, keys)

    # Before: the start made a transparency-log key before reading the one there (EFBIG: exit 1),
    # and SQLite could not make its memory-mapped WAL index (-shm) files.
    full = ServerProcess(data, launcher=("-m", "tests.fault_serve", "full-disk"))
    try:
        assert healthy(full)
        with full.channel() as admin, full.channel("officer-1") as officer:
            insert = pb.InsertTemplateRequest(
                gallery_id="watch", reference_id="new", template=embedding(VECTORS[30])
            )
            matching = pb_grpc.MatchingServiceStub(admin)
            assert refusal(lambda: matching.InsertTemplate(insert)) == grpc.StatusCode.UNAVAILABLE
            # Every call leaves a transparency-log entry or does not happen (safepassage/server/audit.py):
            # with no byte writable, a search is refused too, as UNAVAILABLE, never answered unlogged.
            search = pb.IdentifyRequest(gallery_id="watch", probe=embedding(VECTORS[5]))
            identify = pb_grpc.MatchingServiceStub(officer).Identify
            assert refusal(lambda: identify(search, timeout=30)) == grpc.StatusCode.UNAVAILABLE
        assert full.process.poll() is None and healthy(full)
        assert not full.logged("unexpected error")
    finally:
        assert full.stop() == 0, "".join(full.log[-30:])
    assert full.logged("SafePassage stopped")
    after = sizes(data, keys)
    # Nothing was written: no key made, no file grew (SQLite's first try at a shared WAL index leaves
    # an empty -shm file where it then used a private one).
    assert {path: size for path, size in after.items() if size != before.get(path, 0)} == {}
    assert set(after) - set(before) <= {
        data / "protected_records.sqlite3-shm",
        data / "audit" / "transparency.sqlite3-shm",
    }

    again = ServerProcess(data)
    try:
        with again.channel("officer-1") as officer:
            found = pb_grpc.MatchingServiceStub(officer).Identify(
                pb.IdentifyRequest(gallery_id="watch", probe=embedding(VECTORS[5])), timeout=30
            )
        assert found.faces[0].candidates[0].reference_id == "r5"
    finally:
        assert again.stop() == 0


# -- crashes leave nothing behind ----------------------------------------------------------------


def test_files_a_crash_left_behind_are_removed_at_the_next_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    snapshots = data / "snapshots"
    first = ServerProcess(data)
    try:
        with first.channel() as admin:
            galleries, matching = pb_grpc.GalleryServiceStub(admin), pb_grpc.MatchingServiceStub(admin)
            fill(galleries, matching, "gone")
            fill(galleries, matching, "kept")
    finally:
        assert first.stop() == 0
    assert {path.name for path in snapshots.iterdir()} == {"gone.snapshot", "kept.snapshot"}

    # A DeleteGallery killed after its commit, before its snapshot file was removed.
    dying = ServerProcess(data, launcher=("-m", "tests.fault_serve", "die-at-gallery-drop"))
    with dying.channel() as admin:
        delete = pb.DeleteGalleryRequest(gallery_id="gone")
        assert refusal(lambda: pb_grpc.GalleryServiceStub(admin).DeleteGallery(delete, timeout=30)) in {
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.INTERNAL,  # the connection dropped mid-answer
        }
    assert dying.process.wait(timeout=60) == 137
    assert {path.name for path in snapshots.iterdir()} == {"gone.snapshot", "kept.snapshot"}

    # A snapshot write killed with its .tmp file complete, before the rename.
    dying = ServerProcess(data, launcher=("-m", "tests.fault_serve", "die-at-snapshot-rename"))
    with dying.channel() as admin:
        pb_grpc.MatchingServiceStub(admin).InsertTemplate(
            pb.InsertTemplateRequest(gallery_id="kept", reference_id="late", template=embedding(VECTORS[30]))
        )
    assert dying.stop() == 137  # the stop's snapshot write is where it dies
    assert dying.logged("removed 1 stale snapshot files")  # its start removed the deleted gallery's
    assert {path.name for path in snapshots.iterdir()} == {"kept.snapshot", "kept.snapshot.tmp"}

    again = ServerProcess(data)
    try:
        assert {path.name for path in snapshots.iterdir()} == {"kept.snapshot"}
        assert again.logged("removed 1 stale snapshot files")
        with again.channel() as admin:
            galleries = pb_grpc.GalleryServiceStub(admin)
            assert [g.gallery_id for g in galleries.ListGalleries(pb.ListGalleriesRequest()).galleries] == [
                "kept"
            ]
            assert galleries.DescribeGallery(pb.DescribeGalleryRequest(gallery_id="kept")).size == 21
    finally:
        assert again.stop() == 0


# -- SIGBUS --------------------------------------------------------------------------------------


def test_the_stores_own_files_are_not_memory_mapped_and_a_fatal_signal_is_logged(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data")
    try:
        with server.channel() as admin:
            fill(pb_grpc.GalleryServiceStub(admin), pb_grpc.MatchingServiceStub(admin), "watch")
        data = str((tmp_path / "data").resolve())
        mapped = {
            line.split(maxsplit=5)[5]
            for line in Path(f"/proc/{server.process.pid}/maps").read_text().splitlines()
            if len(line.split(maxsplit=5)) == 6 and line.split(maxsplit=5)[5].startswith(data)
        }
        # SQLite's default WAL index is a memory-mapped -shm file: a page the disk cannot provide
        # is a SIGBUS. The store's files keep it in the heap instead. (The record vault and the
        # transparency log keep the shared one: other processes read them while the server runs.)
        private = ("safepassage.sqlite3", "camera_probes.sqlite3", "stream_replies.sqlite3")
        assert not [path for path in mapped if Path(path).name.startswith(private)]
        assert not [name for name in private if (tmp_path / "data" / f"{name}-shm").exists()]

        # Whatever still dies of a fatal signal says so, with a traceback, in the server's log.
        server.process.send_signal(signal.SIGBUS)
        assert server.process.wait(timeout=60) == -signal.SIGBUS
        wait_until(lambda: server.logged("Fatal Python error: Bus error"), "the fatal-signal report")
        assert server.logged("Current thread") or server.logged("Thread 0x")
    finally:
        server.stop()


def test_a_raw_write_refusal_reaching_the_api_is_unavailable_not_internal() -> None:
    from safepassage.server.errors import describe

    for code in (errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EPERM):
        status, message = describe(OSError(code, os.strerror(code)), "/safepassage.v1.X/Y")
        assert status == grpc.StatusCode.UNAVAILABLE and "retry" in message
    assert describe(OSError(errno.ENOENT, "gone"), "/m")[0] == grpc.StatusCode.INTERNAL
