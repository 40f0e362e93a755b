"""The auditor's view: the transparency log browsed, and checked by the browser's own code.

Debian's Chromium driven by Playwright against a real server (mutual TLS, free ports, one server for
the module, a watchlist of real faces enrolled so the log holds real entries). The auditor browses
the log by operation, actor and outcome; the check page verifies the log under the console's strict
CSP; then the page, its script and the log's files are copied to a folder, the SafePassage server is
STOPPED, and a plain http.server serving that folder shows the same verdicts: the verification runs
in the browser. From that copy the browser flags a rewritten entry, a truncated log and a forked log
(signed with the log's own key), checks a real `audit export` folder the auditor picks, and its
Merkle code agrees with safepassage/audit/merkle.py on random trees.
"""

from __future__ import annotations

import base64
import datetime
import functools
import http.server
import itertools
import json
import random
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect
from playwright.sync_api import Error as PlaywrightError

from safepassage.audit import LogEvent, TransparencyLog, load_signing_key, merkle
from safepassage.console.pages import PAGE_HEADERS
from safepassage.core import signing
from safepassage.server.identity import Role
from tests.conftest import REPO
from tests.console.conftest import ConsoleWorld
from tests.console.test_console_browser import DESK, Session, browser_session

pytestmark = pytest.mark.server

VERIFY = "/auditor/verify/"
# Each case: the JS root equals Python's; the JS verifiers accept Python's proofs, and refuse a proof
# with one bit flipped and a leaf that is not the one proved.
CROSS_CHECK = """async (cases) => {
  const A = window.SafePassageAudit;
  const bytes = (h) => Uint8Array.from(h.match(/../g) || [], (x) => parseInt(x, 16));
  const fails = async (work) => {
    try { await work(); return false; } catch (e) { return true; }
  };
  const bent = (proof) => proof.map((p, i) =>
    i === proof.length - 1 ? Uint8Array.from(p, (b, j) => (j === 0 ? b ^ 1 : b)) : p);
  const out = [];
  for (const c of cases) {
    const n = c.data.length;
    const leaves = await Promise.all(c.data.map((d) => A.leafHash(bytes(d))));
    const root = bytes(c.root);
    const old = bytes(c.first_root);
    const inc = c.inclusion.map(bytes);
    const con = c.consistency.map(bytes);
    const include = (leaf, proof) => A.verifyInclusion(leaf, c.index, n, proof, root);
    const extend = (proof) => A.verifyConsistency(c.first, n, proof, old, root);
    out.push([
      A.toHex(await A.rootHash(leaves)) === c.root,
      !(await fails(() => include(leaves[c.index], inc))),
      !(await fails(() => extend(con))),
      inc.length === 0 || (await fails(() => include(leaves[c.index], bent(inc)))),
      con.length === 0 || (await fails(() => extend(bent(con)))),
      n < 2 || (await fails(() => include(leaves[(c.index + 1) % n], inc))),
    ]);
  }
  return out;
}"""


@pytest.fixture(scope="module")
def session(console_world: ConsoleWorld, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    with browser_session(console_world, tmp_path_factory.mktemp("auditor-screenshots")) as session:
        yield session


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _verdict(page: Page) -> str:
    # A locator, not wait_for_function: the page's CSP forbids the eval that one would need.
    page.locator("#log-check:not([data-state='running'])").wait_for()
    state: str = page.eval_on_selector("#log-check", "node => node.dataset.state")
    return state


def _problems(page: Page) -> str:
    return page.locator("#problems").inner_text()


def test_the_auditor_browses_the_log_by_operation_actor_and_outcome(session: Session) -> None:
    world = session.world
    world.service.transparency_log.sign_tree_head()
    page = session.role(Role.AUDITOR)
    session.load(page, "/auditor/log")
    rows = page.locator("#entries tbody tr")
    assert rows.count() > 10
    assert "MatchingService/InsertTemplate" in page.locator("#entries").inner_text()
    # Hashes, counts and ids as stored: never a reference id (the enrolled people's case ids).
    assert "case-obama" not in page.content()
    assert page.locator("#main a[href='/admin/fishing-alerts']").count() == 1
    assert page.locator("#heads tbody tr").count() >= 1
    session.keep("auditor-log", page)

    page.get_by_label("Operation").fill("MatchingService/InsertTemplate")
    session.act(page, "Show entries")
    operations = page.locator("#entries tbody tr td:nth-child(4)").all_inner_texts()
    assert operations and set(operations) == {"MatchingService/InsertTemplate"}
    page.get_by_label("Operation").fill("")
    page.get_by_label("Actor").fill("admin:admin-1")
    session.act(page, "Show entries")
    actors = page.locator("#entries tbody tr td:nth-child(3)").all_inner_texts()
    assert actors and set(actors) == {"admin:admin-1"}
    page.get_by_label("Actor").fill("")
    page.get_by_label("Outcome").fill("NO_SUCH_OUTCOME")
    session.act(page, "Show entries")
    assert page.locator("#no-entries").count() == 1
    # By time (UTC days): everything so far is before tomorrow, nothing from tomorrow on.
    tomorrow = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)).date().isoformat()
    page.get_by_label("Outcome").fill("")
    page.get_by_label("Before (UTC day)").fill(tomorrow)
    session.act(page, "Show entries")
    assert page.locator("#entries tbody tr").count() > 10
    page.get_by_label("Before (UTC day)").fill("")
    page.get_by_label("From (UTC day)").fill(tomorrow)
    session.act(page, "Show entries")
    assert page.locator("#no-entries").count() == 1


def test_other_roles_are_refused_the_log_and_its_files(session: Session) -> None:
    page = session.role(Role.OFFICER)
    for path in ("/auditor/log", VERIFY, VERIFY + "heads.json", VERIFY + "entries-1-0.json"):
        assert session.load(page, path).status == 403, path
    admin = session.role(Role.ADMIN)
    assert session.load(admin, VERIFY + "heads.json").status == 200


@dataclass
class StaticCopy:
    """The check page, its script and the log's files, served by a plain http.server (no SafePassage)."""

    root: Path
    url: str
    context: BrowserContext
    sizes: list[int]  # the signed tree heads' sizes, oldest first
    export: Path  # a real `audit export` of the log

    def page(self, copy: str, fragment: str = "") -> Page:
        page = self.context.new_page()
        page.goto(f"{self.url}/{copy}/auditor/verify/{fragment}")
        return page


def _fetch_copy(session: Session, folder: Path, sizes: list[int]) -> None:
    """Every file the check page reads, fetched from the console as the auditor, into `folder`."""
    page = session.role(Role.AUDITOR)
    get = functools.partial(page.request.get)
    origin = session.world.origin
    verify = folder / "full" / "auditor" / "verify"
    verify.mkdir(parents=True)
    (folder / "static").mkdir()
    for name in ("auditor_verify.js", "console.css"):
        (folder / "static" / name).write_bytes(get(f"{origin}/static/{name}").body())
    (verify / "index.html").write_bytes(get(origin + VERIFY).body())
    (verify / "heads.json").write_bytes(get(origin + VERIFY + "heads.json").body())
    for size in sizes:
        (verify / f"entries-{size}-0.json").write_bytes(get(f"{origin}{VERIFY}entries-{size}-0.json").body())
    for first, second in itertools.pairwise(sizes):
        name = f"consistency-{first}-{second}.json"
        (verify / name).write_bytes(get(origin + VERIFY + name).body())
    assert json.loads((verify / "heads.json").read_text())["tree_heads"], "no signed tree head"


def _serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, threading.Thread]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


def test_the_check_page_verifies_the_log_under_the_consoles_csp(session: Session) -> None:
    world = session.world
    log = world.service.transparency_log
    # Three signed heads, the log growing between them (every page the auditor loads is logged).
    page = session.role(Role.AUDITOR)
    for _ in range(2):
        session.load(page, "/auditor/log")
        log.sign_tree_head()
    response = session.load(page, VERIFY)
    assert response.headers["content-security-policy"] == PAGE_HEADERS[VERIFY]["Content-Security-Policy"]
    assert page.locator("script:not([src])").count() == 0
    assert _verdict(page) == "verified", _problems(page)
    assert page.locator("#entry-rows tr.verified").count() > 10
    assert page.locator("#entry-rows tr.refused").count() == 0
    assert len(page.locator("#key-id").inner_text()) == 64
    page.get_by_label("Entry number").fill("3")
    page.get_by_role("button", name="Check its inclusion proof").click()
    expect(page.locator("#entry-result")).to_contain_text("Entry 3 is included")
    session.keep("auditor-verify", page)
    target = REPO / "docs" / "screenshots"
    target.mkdir(parents=True, exist_ok=True)
    for width in ("desk", "tablet"):
        shutil.copyfile(
            session.shots / f"auditor-verify-{width}.png", target / f"console-auditor-verify-{width}.png"
        )


def test_axe_finds_no_serious_or_critical_violation_on_the_auditor_pages(session: Session) -> None:
    assert {"auditor-log", "auditor-verify"} <= set(session.seen)
    for name, seen in session.seen.items():
        serious = [v for v in seen.violations if v[1] in ("serious", "critical")]
        assert not serious, (name, serious)
        assert seen.styles == 0 and seen.handlers == [], name


def _fork(world: ConsoleWorld, folder: Path, heads: list[dict[str, Any]], rewritten: int) -> None:
    """The same log with entry `rewritten` changed and two entries more, signed with the log's own key."""
    real = world.service.transparency_log
    newest = heads[-1]["tree_size"]
    key = load_signing_key(world.service.config.audit_key_path)
    with TransparencyLog.open(folder.parent / "forked.sqlite3", key) as forked:
        for entry in real.entries(0, newest):
            if entry.index == rewritten:
                event = entry.event()
                forked.append(LogEvent(event.timestamp, event.actor, event.operation, event.gallery_id, "OK"))
                forked.append(LogEvent(event.timestamp, "system", "audit.forged"))
            else:
                forked.append(entry.event())
        forked.append(LogEvent(1, "system", "audit.forged"))
        head = forked.sign_tree_head()
        size = head.tree_size
        assert size == newest + 2
        folder.mkdir(parents=True)
        (folder / "heads.json").write_text(
            json.dumps(
                {
                    "log_public_key": _b64(signing.public_bytes(forked.public_key)),
                    "total": 1,
                    "tree_heads": [head.to_json()],
                }
            )
        )
        entries = [
            {
                "index": e.index,
                "leaf_data": _b64(e.data),
                "inclusion_proof": [_b64(p) for p in forked.inclusion_proof(e.index, size)],
            }
            for e in forked.entries(0, 50)
        ]
        (folder / f"entries-{size}-0.json").write_text(json.dumps({"tree_size": size, "entries": entries}))
        proof = [_b64(p) for p in forked.consistency_proof(newest, size)]
        (folder / f"consistency-{newest}-{size}.json").write_text(json.dumps({"proof": proof}))


@pytest.fixture(scope="module")
def static_copy(session: Session, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StaticCopy]:
    world = session.world
    root = tmp_path_factory.mktemp("auditor-static")
    log = world.service.transparency_log
    log.sign_tree_head()
    sizes = sorted({head.tree_size for head in log.tree_heads()})
    heads = [head.to_json() for head in log.tree_heads()]
    _fetch_copy(session, root, sizes)
    export = root / "export"
    log.export(export, sign=False)
    full = root / "full" / "auditor" / "verify"
    # A rewritten entry: one outcome changed in the entries the server hands out.
    rewritten = root / "rewritten" / "auditor" / "verify"
    shutil.copytree(full, rewritten)
    page_file = rewritten / f"entries-{sizes[-1]}-0.json"
    entries = json.loads(page_file.read_text())
    leaf = json.loads(base64.b64decode(entries["entries"][5]["leaf_data"]))
    leaf["outcome"] = "PERMISSION_DENIED" if leaf["outcome"] == "OK" else "OK"
    entries["entries"][5]["leaf_data"] = _b64(
        json.dumps(leaf, sort_keys=True, separators=(",", ":")).encode()
    )
    page_file.write_text(json.dumps(entries))
    # A truncated log: the heads up to the second newest only (each one truly signed).
    truncated = root / "truncated" / "auditor" / "verify"
    shutil.copytree(full, truncated)
    served = json.loads((full / "heads.json").read_text())
    served["tree_heads"] = [h for h in served["tree_heads"] if h["tree_size"] <= sizes[-2]]
    (truncated / "heads.json").write_text(json.dumps(served))
    _fork(world, root / "forked" / "auditor" / "verify", heads, rewritten=4)
    for name in ("rewritten", "truncated", "forked"):
        (root / name / "auditor" / "verify" / "index.html").write_bytes((full / "index.html").read_bytes())

    # The browser's connections to the console first, so that it closes them cleanly; then the server:
    # from here on no SafePassage process answers anything.
    for context in session.contexts:
        context.close()
    session.contexts.clear()
    world.service.stop(grace_s=1)
    server, thread = _serve(root)
    context = session.browser.new_context(viewport=DESK)
    context.set_default_timeout(20_000)
    try:
        yield StaticCopy(root, f"http://127.0.0.1:{server.server_address[1]}", context, sizes, export)
    finally:
        context.close()
        server.shutdown()
        server.server_close()
        thread.join()


def test_the_static_copy_verifies_with_the_server_stopped(static_copy: StaticCopy, session: Session) -> None:
    with pytest.raises(PlaywrightError):  # nothing listens there any more
        session.role(Role.AUDITOR).goto(session.world.origin + VERIFY, timeout=3000)
    page = static_copy.page("full")
    assert _verdict(page) == "verified", _problems(page)
    assert page.locator("#entry-rows tr.verified").count() > 10
    key_id = page.locator("#key-id").inner_text()
    # Pinned in the address: the same key passes, another key id is flagged.
    pinned = static_copy.page("full", f"#key={key_id}")
    assert _verdict(pinned) == "verified", _problems(pinned)
    wrong = static_copy.page("full", "#key=" + "0" * 64)
    assert _verdict(wrong) == "failed"
    assert "not the one pinned" in _problems(wrong)


def test_a_rewritten_entry_is_flagged(static_copy: StaticCopy) -> None:
    page = static_copy.page("rewritten")
    assert _verdict(page) == "failed"
    assert "Entry 5 is not in the signed tree" in _problems(page)
    assert page.locator("#entry-rows tr.refused").count() == 1


def test_a_truncated_log_is_flagged(static_copy: StaticCopy) -> None:
    page = static_copy.page("truncated")
    assert _verdict(page) == "failed"
    problems = _problems(page)
    assert f"size {static_copy.sizes[-2]}, where it saw size {static_copy.sizes[-1]}" in problems, problems


def test_a_forked_log_is_flagged_though_its_own_signatures_and_proofs_hold(static_copy: StaticCopy) -> None:
    page = static_copy.page("forked")
    assert _verdict(page) == "failed"
    problems = _problems(page)
    assert f"does not extend the log of size {static_copy.sizes[-1]}" in problems, problems
    # Its own head is signed by the log's key and its entries are in its own tree: only memory catches it.
    assert page.locator("#entry-rows tr.refused").count() == 0
    assert "Entry" not in problems
    # The true log still passes afterwards: the fork did not replace what the browser remembers.
    again = static_copy.page("full")
    assert _verdict(again) == "verified", _problems(again)


EXPORT_FILES = ("entries.jsonl", "tree_heads.jsonl", "log_public_key.pem")


def _check_export(page: Page, folder: Path) -> str:
    page.locator("#export-files").set_input_files([str(folder / name) for name in EXPORT_FILES])
    page.locator("#export-check:not([data-state='idle']):not([data-state='running'])").wait_for()
    state: str = page.eval_on_selector("#export-check", "node => node.dataset.state")
    return state


def test_the_page_verifies_a_real_export_and_finds_a_rewritten_line_in_one(
    static_copy: StaticCopy, tmp_path: Path
) -> None:
    page = static_copy.page("full")
    _verdict(page)
    assert _check_export(page, static_copy.export) == "verified", page.locator(
        "#export-problems"
    ).inner_text()
    assert page.locator("#export-key-id").inner_text() == page.locator("#key-id").inner_text()
    tampered = tmp_path / "tampered"
    shutil.copytree(static_copy.export, tampered)
    lines = (tampered / "entries.jsonl").read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b'"outcome":"OK"', b'"outcome":"NOT_FOUND"')
    (tampered / "entries.jsonl").write_bytes(b"\n".join(lines))
    assert _check_export(page, tampered) == "failed"
    assert "do not reproduce the signed root" in page.locator("#export-problems").inner_text()


def test_the_browser_merkle_code_agrees_with_the_python_one_on_random_trees(static_copy: StaticCopy) -> None:
    page = static_copy.page("full")
    _verdict(page)
    rng = random.Random(2126)
    cases: list[dict[str, Any]] = []
    for size in [*range(1, 18), *rng.sample(range(18, 300), 12)]:
        data = [rng.randbytes(rng.randrange(8, 40)) for _ in range(size)]
        hashes = [merkle.leaf_hash(d) for d in data]
        tree = merkle.MerkleTree(hashes)
        index = rng.randrange(size)
        first = rng.randrange(0, size + 1)
        cases.append(
            {
                "data": [d.hex() for d in data],
                "root": tree.root().hex(),
                "index": index,
                "inclusion": [p.hex() for p in tree.inclusion_proof(index, size)],
                "first": first,
                "first_root": tree.root(first).hex(),
                "consistency": [p.hex() for p in tree.consistency_proof(first, size)],
            }
        )
    results: list[list[bool]] = page.evaluate(CROSS_CHECK, cases)
    assert len(results) == len(cases)
    for case, result in zip(cases, results, strict=True):
        assert all(result), (len(case["data"]), case["index"], case["first"], result)
