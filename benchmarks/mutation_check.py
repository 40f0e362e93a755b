"""Mutation check: break the code on purpose, one way at a time, and show that a test notices.

Each mutation below is a change an attacker, a hurried refactor or a wrong policy edit could
make: a wrong cell of the authorisation table, the reply ledger bypassed, backpressure off, the
liveness challenge skipped, the log's root check dropped, per-message authentication removed.
For each, the script copies the committed tree (``git archive HEAD``) into a scratch folder,
applies the one textual change (refusing to run if the text is not found, so a mutation never
silently stops applying), runs the tests that should catch it with the project's own Python, and
reports CAUGHT (some test failed) or MISSED (every test passed). Results are printed and saved.

    uv run python benchmarks/mutation_check.py [--only NAME ...] [--out benchmarks/results/mutations.json]

Exit status 0 when every mutation is caught, 1 otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "benchmarks" / "results" / "mutations.json"


@dataclass(frozen=True)
class Mutation:
    name: str
    why: str  # what the mutation breaks, in the words of the promise
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTATIONS = (
    Mutation(
        "auditor_may_identify",
        "auditors see metadata and the log, never a search",
        "safepassage/server/authorization.py",
        "    Operation.IDENTIFY: {Role.OFFICER: W},",
        "    Operation.IDENTIFY: {Role.OFFICER: W, Role.AUDITOR: W},",
        ("tests/server/test_authorization.py::test_every_rpc_role_and_purpose[Identify-auditor-watchlist]",),
    ),
    Mutation(
        "kiosk_may_share_record",
        "sharing a record is the caseworker's, never a self-service kiosk's",
        "safepassage/server/authorization.py",
        "    Operation.SHARE_RECORD: frozenset({Role.NGO_CASEWORKER}),",
        "    Operation.SHARE_RECORD: frozenset({Role.NGO_CASEWORKER, Role.KIOSK}),",
        (
            "tests/server/test_protected_authorization.py::"
            "test_every_protected_rpc_and_role[ShareRecord-kiosk-protected_identity]",
        ),
    ),
    Mutation(
        "reply_ledger_bypassed",
        "a resent query is answered from the ledger, never searched twice",
        "safepassage/server/matching.py",
        "            kept = self._replies.get(*key)\n",
        "            kept = None\n",
        (
            "tests/camera_edge/test_offline.py::"
            "test_every_query_is_delivered_exactly_once_across_a_server_outage_and_a_client_kill",
        ),
    ),
    Mutation(
        "ledger_before_log",
        "an answer is kept for replays only once its search is logged",
        "safepassage/server/call_notes.py",
        "    notes = _notes()\n    if notes is None:\n        work(True)",
        "    notes = _notes()\n    if True:\n        work(True)",
        ("tests/server/test_stream_replay.py::test_an_answer_whose_search_was_not_logged_is_not_kept",),
    ),
    Mutation(
        "backpressure_off",
        "never more than max_in_flight unanswered queries on the wire",
        "safepassage/camera_edge/uploader.py",
        "                    room = self.settings.max_in_flight - len(in_flight)",
        "                    room = 1_000",
        (
            "tests/camera_edge/test_uploader.py::"
            "test_no_more_than_max_in_flight_unanswered_and_an_unanswered_query_is_resent",
        ),
    ),
    Mutation(
        "liveness_challenge_skipped",
        "a photo that passes the quality gate still has to turn the asked way",
        "safepassage/camera_edge/kiosk.py",
        "        self._challenge.observe(frame.timestamp, frame.image, detections)  # raises LivenessFailed\n"
        "        if self._challenge.state is not ChallengeState.PASSED:\n            return\n"
        "        evidence = self._challenge.result()\n",
        "        evidence = None\n",
        (
            "tests/camera_edge/test_kiosk.py::"
            "test_a_still_photo_passes_the_quality_gate_and_fails_the_head_turn_challenge",
        ),
    ),
    Mutation(
        "log_root_check_off",
        "audit verify recomputes every signed root from the entries",
        "safepassage/audit/auditor.py",
        "        if head.tree_size > tree.size or tree.root(head.tree_size) != head.root_hash:",
        "        if head.tree_size > tree.size:",
        ("tests/audit_log/test_auditor.py::test_a_tampered_head_pair_or_proof_is_caught",),
    ),
    Mutation(
        "stream_messages_not_reauthenticated",
        "a certificate revoked mid-stream ends the stream at its next message",
        "safepassage/server/access.py",
        "                self._authenticate(context)\n                self._limiter.check(",
        "                self._limiter.check(",
        ("tests/server/test_stream_revocation.py",),
    ),
    Mutation(
        "lone_request_waits_for_a_batch",
        "a lone request is searched at once, never held for batching",
        "safepassage/matcher/batcher.py",
        "            lone = self._is_idle()\n",
        "            lone = False\n",
        ("tests/matcher/test_batcher.py::test_a_lone_request_is_searched_at_once_in_the_callers_thread",),
    ),
)


@dataclass(frozen=True)
class Outcome:
    name: str
    why: str
    caught: bool
    seconds: float
    tests: tuple[str, ...]
    summary: str  # pytest's last line


def export_tree(folder: Path) -> None:
    """The committed tree (what CI tests), unpacked into `folder`."""
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=REPO, check=True, capture_output=True).stdout
    archive_path = folder.parent / "tree.tar"
    archive_path.write_bytes(archive)
    with tarfile.open(archive_path) as tar:
        tar.extractall(folder, filter="data")
    # Built, untracked things the tests need: the model pack.
    models = REPO / "var" / "models"
    if models.is_dir():
        (folder / "var").mkdir(exist_ok=True)
        (folder / "var" / "models").symlink_to(models)


def apply(folder: Path, mutation: Mutation) -> None:
    path = folder / mutation.path
    text = path.read_text()
    if text.count(mutation.old) != 1:
        raise SystemExit(f"{mutation.name}: the text to mutate is not found once in {mutation.path}")
    path.write_text(text.replace(mutation.old, mutation.new))


# The unmutated tree: every test named below must pass there, or a "caught" would mean nothing.
BASELINE = Mutation("baseline", "the tests pass on the code as committed", "", "", "", ())


def run_one(mutation: Mutation, scratch: Path, tests: tuple[str, ...] = ()) -> Outcome:
    tree = scratch / mutation.name
    tree.mkdir()
    export_tree(tree)
    if mutation is not BASELINE:
        apply(tree, mutation)
    tests = tests or mutation.tests
    environment = dict(os.environ, PYTHONPATH=str(tree))
    environment.setdefault("SAFEPASSAGE_FACES_DIR", str(REPO.parent / "shared" / "data" / "faces"))
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
        cwd=tree,
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
    )
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    summary = lines[-1] if lines else result.stderr.strip()[-200:]
    # 1: tests failed (caught). 0: all passed (missed). Anything else: the run itself broke.
    if result.returncode not in (0, 1):
        raise SystemExit(f"{mutation.name}: pytest exited {result.returncode}: {summary}")
    return Outcome(
        mutation.name,
        mutation.why,
        result.returncode == 1,
        time.perf_counter() - started,
        tests,
        summary,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="*", default=None, help="mutation names to run (default: all)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results JSON")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if args.only is None or m.name in args.only]
    unknown = set(args.only or ()) - {m.name for m in MUTATIONS}
    if unknown:
        parser.error(f"unknown mutations: {', '.join(sorted(unknown))}")
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="mutation-check-") as scratch:
        every_test = tuple(dict.fromkeys(test for m in chosen for test in m.tests))
        baseline = run_one(BASELINE, Path(scratch), every_test)
        verdict = "FAILS" if baseline.caught else "PASSES"
        print(f"{verdict:<7} {'baseline':<38} {baseline.seconds:6.1f} s  {baseline.summary}", flush=True)
        if baseline.caught:
            print("the tests fail on the unmutated tree: no mutation result would mean anything")
            return 1
        for mutation in chosen:
            outcome = run_one(mutation, Path(scratch))
            outcomes.append(outcome)
            verdict = "CAUGHT" if outcome.caught else "MISSED"
            print(f"{verdict:<7} {mutation.name:<38} {outcome.seconds:6.1f} s  {outcome.summary}", flush=True)
    caught = sum(o.caught for o in outcomes)
    print(f"\n{caught} of {len(outcomes)} mutations caught")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    report = {
        "benchmark": "mutations",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": commit.strip(),
        "caught": caught,
        "mutations": len(outcomes),
        "outcomes": [asdict(o) for o in outcomes],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if caught == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
