"use strict";
// The auditor's check of the transparency log, run by this browser so that the auditor need not
// trust the server that shows the page: the tree heads' Ed25519 signatures (WebCrypto), every
// entry shown against the newest head's root (an RFC 9162 inclusion proof) and each head against
// the next (a consistency proof), with SHA-256 and the domain separation of
// safepassage/audit/merkle.py: leaf = SHA-256(0x00 || data), node = SHA-256(0x01 || left || right).
// The newest head this browser accepted is kept (localStorage, per log key): a later log that is
// shorter, or that does not extend it, is flagged. The data comes from files beside the page
// (heads.json, entries-SIZE-START.json, consistency-FIRST-SECOND.json), so the same check runs on
// a copy of them served by anyone. What it cannot check: that the public key is the operator's. The
// page shows the key's id; an auditor pins the published one with #key=<id> in the address.
(function () {
  const CONTEXT = new TextEncoder().encode("safepassage-audit-log-tree-head\n");
  const VERSION = 1;

  class ProofError extends Error {}

  function fromBase64(text) {
    const binary = atob(text);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  function toBase64(bytes) {
    let binary = "";
    for (const b of bytes) binary += String.fromCharCode(b);
    return btoa(binary);
  }

  function toHex(bytes) {
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function concat(...parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let offset = 0;
    for (const part of parts) {
      out.set(part, offset);
      offset += part.length;
    }
    return out;
  }

  function equal(a, b) {
    if (a.length !== b.length) return false;
    let diff = 0;
    for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
    return diff === 0;
  }

  async function sha256(bytes) {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  }

  const leafHash = (data) => sha256(concat(Uint8Array.of(0), data));
  const nodeHash = (left, right) => sha256(concat(Uint8Array.of(1), left, right));

  // MTH (RFC 9162 2.1.1): split at the largest power of two below n.
  async function rootHash(leafHashes) {
    if (leafHashes.length === 0) return sha256(new Uint8Array(0));
    if (leafHashes.length === 1) return leafHashes[0];
    let k = 1;
    while (k * 2 < leafHashes.length) k *= 2;
    return nodeHash(await rootHash(leafHashes.slice(0, k)), await rootHash(leafHashes.slice(k)));
  }

  function checkHash(value, what) {
    if (!(value instanceof Uint8Array) || value.length !== 32) throw new ProofError(what + " is not 32 bytes");
  }

  // RFC 9162 2.1.3.2 steps 1-4, as merkle.root_from_inclusion_proof (BigInt: sizes may pass 2^32).
  async function rootFromInclusionProof(hashedLeaf, index, size, proof) {
    let fn = BigInt(index);
    let sn = BigInt(size) - 1n;
    if (fn < 0n || fn > sn) throw new ProofError("the leaf index is not in the tree");
    checkHash(hashedLeaf, "the leaf hash");
    let result = hashedLeaf;
    for (const sibling of proof) {
      checkHash(sibling, "a proof element");
      if (sn === 0n) throw new ProofError("the inclusion proof is too long");
      if (fn & 1n || fn === sn) {
        result = await nodeHash(sibling, result);
        while (!(fn & 1n) && fn) {
          fn >>= 1n;
          sn >>= 1n;
        }
      } else {
        result = await nodeHash(result, sibling);
      }
      fn >>= 1n;
      sn >>= 1n;
    }
    if (sn !== 0n) throw new ProofError("the inclusion proof is too short");
    return result;
  }

  async function verifyInclusion(hashedLeaf, index, size, proof, root) {
    checkHash(root, "the root hash");
    if (!equal(await rootFromInclusionProof(hashedLeaf, index, size, proof), root)) {
      throw new ProofError("the leaf is not included in the tree with this root");
    }
  }

  // RFC 9162 2.1.4.2, with the cases it leaves out, as merkle.verify_consistency.
  async function verifyConsistency(first, second, proof, firstRoot, secondRoot) {
    checkHash(firstRoot, "the first root");
    checkHash(secondRoot, "the second root");
    let m = BigInt(first);
    const n = BigInt(second);
    if (m < 0n || m > n) throw new ProofError("the second tree is smaller than the first");
    if (m === n) {
      if (proof.length) throw new ProofError("a proof between equal sizes must be empty");
      if (!equal(firstRoot, secondRoot)) throw new ProofError("two different roots for one tree size");
      return;
    }
    if (m === 0n) {
      if (proof.length) throw new ProofError("a proof from the empty tree must be empty");
      return;
    }
    if (!proof.length) throw new ProofError("the consistency proof is empty");
    proof.forEach((element) => checkHash(element, "a proof element"));
    const path = (m & (m - 1n)) === 0n ? [firstRoot, ...proof] : [...proof];
    let fn = m - 1n;
    let sn = n - 1n;
    while (fn & 1n) {
      fn >>= 1n;
      sn >>= 1n;
    }
    let fr = path[0];
    let sr = path[0];
    for (const element of path.slice(1)) {
      if (sn === 0n) throw new ProofError("the consistency proof is too long");
      if (fn & 1n || fn === sn) {
        fr = await nodeHash(element, fr);
        sr = await nodeHash(element, sr);
        while (!(fn & 1n) && fn) {
          fn >>= 1n;
          sn >>= 1n;
        }
      } else {
        sr = await nodeHash(sr, element);
      }
      fn >>= 1n;
      sn >>= 1n;
    }
    if (sn !== 0n) throw new ProofError("the consistency proof is too short");
    if (!equal(fr, firstRoot)) throw new ProofError("the proof does not lead to the first root");
    if (!equal(sr, secondRoot)) throw new ProofError("the proof does not lead to the second root");
  }

  // The bytes a tree head's signature covers (safepassage/audit/tree_head.py).
  function headMessage(head) {
    const fields = new Uint8Array(17);
    const view = new DataView(fields.buffer);
    view.setUint8(0, head.version);
    view.setBigUint64(1, BigInt(head.tree_size));
    view.setBigUint64(9, BigInt(head.timestamp));
    return concat(CONTEXT, fields, head.root);
  }

  async function importKey(raw) {
    return crypto.subtle.importKey("raw", raw, { name: "Ed25519" }, false, ["verify"]);
  }

  async function verifyHead(key, head) {
    if (head.version !== VERSION || head.signature.length !== 64) return false;
    return crypto.subtle.verify({ name: "Ed25519" }, key, head.signature, headMessage(head));
  }

  function parseHead(json) {
    return {
      version: json.version,
      tree_size: json.tree_size,
      timestamp: json.timestamp,
      root: fromBase64(json.sha256_root_hash),
      signature: fromBase64(json.tree_head_signature),
    };
  }

  window.SafePassageAudit = {
    ProofError,
    fromBase64,
    toBase64,
    toHex,
    sha256,
    leafHash,
    nodeHash,
    rootHash,
    rootFromInclusionProof,
    verifyInclusion,
    verifyConsistency,
    headMessage,
    importKey,
    verifyHead,
  };

  // -- the page ---------------------------------------------------------------------------------

  const page = document.getElementById("log-check");
  if (!page) return;
  const messages = {};
  document.querySelectorAll("#messages [data-message]").forEach((element) => {
    messages[element.dataset.message] = element.textContent;
  });
  function say(name, values) {
    let text = messages[name] || name;
    for (const [key, value] of Object.entries(values || {})) text = text.split("{" + key + "}").join(String(value));
    return text;
  }

  const problems = [];
  let newestHead = null; // the newest head whose signature this page checked
  const problemList = document.getElementById("problems");
  const checkList = document.getElementById("checks");
  function item(list, text) {
    const li = document.createElement("li");
    li.textContent = text;
    list.appendChild(li);
  }
  function problem(name, values) {
    problems.push(name);
    item(problemList, say(name, values));
  }
  function passed(name, values) {
    item(checkList, say(name, values));
  }

  async function getJson(path) {
    const response = await fetch(path, { cache: "no-store", credentials: "same-origin" });
    if (!response.ok) throw new Error(path + ": " + response.status);
    return response.json();
  }

  async function consistent(older, newer) {
    if (older.tree_size === newer.tree_size) return equal(older.root, newer.root);
    try {
      const answer = await getJson("consistency-" + older.tree_size + "-" + newer.tree_size + ".json");
      const proof = answer.proof.map(fromBase64);
      await verifyConsistency(older.tree_size, newer.tree_size, proof, older.root, newer.root);
      return true;
    } catch (error) {
      return false;
    }
  }

  function entryRow(entry, ok) {
    const row = document.createElement("tr");
    let event = {};
    try {
      event = JSON.parse(new TextDecoder().decode(entry.data));
    } catch (error) {
      event = {};
    }
    const when = Number.isFinite(event.timestamp) ? new Date(event.timestamp).toISOString() : "";
    const details = event.details && typeof event.details === "object" ? event.details : {};
    const cells = [
      String(entry.index),
      when,
      String(event.actor || ""),
      String(event.operation || ""),
      String(event.outcome || ""),
      Object.entries(details).map(([k, v]) => k + "=" + v).join(" "),
      ok ? say("entry-ok") : say("entry-bad"),
    ];
    cells.forEach((text, i) => {
      const cell = document.createElement(i === 0 ? "th" : "td");
      if (i === 0) cell.scope = "row";
      cell.textContent = text;
      row.appendChild(cell);
    });
    row.className = ok ? "verified" : "refused";
    return row;
  }

  async function checkEntries(newest, start) {
    const answer = await getJson("entries-" + newest.tree_size + "-" + start + ".json");
    if (answer.tree_size !== newest.tree_size) throw new Error("entries of another tree size");
    const rows = document.getElementById("entry-rows");
    let checked = 0;
    for (const raw of answer.entries) {
      const entry = { index: raw.index, data: fromBase64(raw.leaf_data) };
      let ok = true;
      try {
        const proof = raw.inclusion_proof.map(fromBase64);
        await verifyInclusion(await leafHash(entry.data), entry.index, newest.tree_size, proof, newest.root);
      } catch (error) {
        ok = false;
        problem("entry-not-included", { index: entry.index, size: newest.tree_size });
      }
      rows.appendChild(entryRow(entry, ok));
      checked += 1;
    }
    return checked;
  }

  function pinnedKey() {
    const match = /(?:^#|&)key=([0-9a-f]{64})/.exec(window.location.hash);
    return match ? match[1] : null;
  }

  async function run() {
    const verdict = document.getElementById("verdict");
    let entries = 0;
    let heads = [];
    try {
      const answer = await getJson("heads.json");
      const raw = fromBase64(answer.log_public_key);
      const keyId = toHex(await sha256(raw));
      document.getElementById("key-id").textContent = keyId;
      const pinned = pinnedKey();
      const remembered = localStorage.getItem("safepassage.audit.key");
      if (pinned && pinned !== keyId) problem("key-not-pinned", { pinned: pinned });
      else if (pinned) passed("key-pinned");
      else if (remembered && remembered !== keyId) problem("key-changed", { seen: remembered });
      else passed("key-first-use");
      if (!remembered) localStorage.setItem("safepassage.audit.key", keyId);
      const key = await importKey(raw);
      heads = answer.tree_heads.map(parseHead);
      let signed = 0;
      for (const head of heads) {
        if (await verifyHead(key, head)) signed += 1;
        else problem("head-not-signed", { size: head.tree_size });
      }
      passed("heads-signed", { count: signed });
      for (let i = 1; i < heads.length; i++) {
        const older = heads[i - 1];
        const newer = heads[i];
        if (newer.tree_size < older.tree_size) problem("log-went-back", { first: older.tree_size, second: newer.tree_size });
        else if (!(await consistent(older, newer))) problem("heads-fork", { first: older.tree_size, second: newer.tree_size });
      }
      if (heads.length > 1) passed("heads-consistent", { count: heads.length - 1 });
      if (!heads.length) {
        problem("no-heads");
      } else {
        const newest = heads[heads.length - 1];
        document.getElementById("newest-size").textContent = String(newest.tree_size);
        document.getElementById("newest-root").textContent = toHex(newest.root);
        const memory = "safepassage.audit.seen." + keyId;
        const seenJson = localStorage.getItem(memory);
        if (seenJson) {
          const seenRaw = JSON.parse(seenJson);
          const seen = { tree_size: seenRaw.tree_size, root: fromBase64(seenRaw.root) };
          if (newest.tree_size < seen.tree_size) problem("log-shorter", { size: newest.tree_size, seen: seen.tree_size });
          else if (!(await consistent(seen, newest))) problem("log-forked", { size: newest.tree_size, seen: seen.tree_size });
          else passed("extends-seen", { seen: seen.tree_size });
        }
        entries = await checkEntries(newest, 0);
        passed("entries-included", { count: entries, size: newest.tree_size });
        if (!problems.length) {
          localStorage.setItem(memory, JSON.stringify({ tree_size: newest.tree_size, root: toBase64(newest.root) }));
        }
        newestHead = newest;
        page.dataset.newestSize = String(newest.tree_size);
      }
    } catch (error) {
      problem("incomplete");
    }
    page.dataset.state = problems.length ? "failed" : "verified";
    verdict.textContent = problems.length
      ? say("verdict-failed", { count: problems.length })
      : say("verdict-ok", { heads: heads.length, entries: entries });
    verdict.className = problems.length ? "verdict match" : "verdict";
  }

  async function checkOne(event) {
    event.preventDefault();
    const out = document.getElementById("entry-result");
    const index = Number(document.getElementById("entry-index").value);
    const size = newestHead ? newestHead.tree_size : 0;
    try {
      if (!newestHead || !Number.isInteger(index)) throw new Error("nothing to check against");
      const answer = await getJson("entries-" + size + "-" + index + ".json");
      const raw = answer.entries.find((e) => e.index === index);
      if (!raw) throw new Error("no such entry");
      const data = fromBase64(raw.leaf_data);
      await verifyInclusion(await leafHash(data), index, size, raw.inclusion_proof.map(fromBase64), newestHead.root);
      out.textContent = say("entry-check-ok", { index: index, size: size });
    } catch (error) {
      out.textContent = say("entry-check-failed", { index: index, size: size });
    }
  }

  // An export folder (`safepassage audit export`) the auditor picks: every leaf hashed here, every
  // signed head's root recomputed from the entries (no proof needed), as `safepassage audit verify`.
  function pemBody(text) {
    const body = text.replace(/-----(BEGIN|END) PUBLIC KEY-----/g, "").replace(/\s+/g, "");
    return fromBase64(body);
  }

  function lines(bytes) {
    const out = [];
    let start = 0;
    for (let i = 0; i < bytes.length; i++) {
      if (bytes[i] === 10) {
        out.push(bytes.subarray(start, i));
        start = i + 1;
      }
    }
    if (start !== bytes.length) throw new Error("the last line has no newline");
    return out;
  }

  async function checkExport(event) {
    const box = document.getElementById("export-check");
    const list = document.getElementById("export-problems");
    const result = document.getElementById("export-result");
    list.textContent = "";
    box.dataset.state = "running";
    const files = {};
    for (const file of event.target.files) files[file.name] = new Uint8Array(await file.arrayBuffer());
    let failures = 0;
    const fail = (name, values) => {
      failures += 1;
      item(list, say(name, values));
    };
    let heads = [];
    let leaves = [];
    try {
      for (const name of ["entries.jsonl", "tree_heads.jsonl", "log_public_key.pem"]) {
        if (!files[name]) throw new Error("missing " + name);
      }
      const pem = new TextDecoder().decode(files["log_public_key.pem"]);
      const key = await crypto.subtle.importKey("spki", pemBody(pem), { name: "Ed25519" }, false, ["verify"]);
      const spki = pemBody(pem);
      document.getElementById("export-key-id").textContent = toHex(await sha256(spki.subarray(spki.length - 32)));
      leaves = await Promise.all(lines(files["entries.jsonl"]).map((line) => leafHash(line)));
      const text = new TextDecoder();
      heads = lines(files["tree_heads.jsonl"]).map((line) => parseHead(JSON.parse(text.decode(line))));
      let previous = 0;
      for (const head of heads) {
        if (!(await verifyHead(key, head))) fail("head-not-signed", { size: head.tree_size });
        if (head.tree_size < previous) fail("log-went-back", { first: previous, second: head.tree_size });
        previous = Math.max(previous, head.tree_size);
        if (head.tree_size > leaves.length) {
          fail("export-too-short", { size: head.tree_size, entries: leaves.length });
        } else if (!equal(await rootHash(leaves.slice(0, head.tree_size)), head.root)) {
          fail("export-root", { size: head.tree_size });
        }
      }
      if (!heads.length) fail("no-heads");
    } catch (error) {
      fail("export-unreadable");
    }
    box.dataset.state = failures ? "failed" : "verified";
    result.textContent = failures
      ? say("verdict-failed", { count: failures })
      : say("export-ok", { heads: heads.length, entries: leaves.length });
    result.className = failures ? "verdict match" : "verdict";
  }

  document.getElementById("entry-form").addEventListener("submit", checkOne);
  document.getElementById("export-files").addEventListener("change", checkExport);
  run();
})();
