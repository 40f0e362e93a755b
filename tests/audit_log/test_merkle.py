"""RFC 9162 hashing and proofs: known answers, and a literal transcription of the RFC as the reference."""

from __future__ import annotations

import hashlib

import pytest

from safepassage.audit import (
    InvalidRange,
    MerkleTree,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)
from safepassage.audit.merkle import EMPTY_ROOT

# The test leaves of RFC 6962's reference implementation (also used by
# google/certificate-transparency and transparency-dev/merkle, testonly/constants.go).
LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
# Root hashes for tree sizes 0..8 of LEAVES (same source).
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


# -- a literal transcription of RFC 9162 section 2.1, for comparison ----------


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: list[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = _k(len(d))
    return hashlib.sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:])).digest()


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [ref_mth(d)]
    k = _k(len(d))
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


def test_hash_prefixes_known_answers() -> None:
    # transparency-dev/merkle rfc6962_test.go
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    assert leaf_hash(b"L123456").hex() == "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    assert (
        node_hash(b"N123", b"N456").hex()
        == "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"
    )


def test_roots_of_reference_leaves() -> None:
    hashes = [leaf_hash(leaf) for leaf in LEAVES]
    tree = MerkleTree()
    assert tree.root().hex() == ROOTS[0]
    for size in range(1, 9):
        tree.append(hashes[size - 1])
        assert tree.root().hex() == ROOTS[size]
        assert root_hash(hashes[:size]).hex() == ROOTS[size]
    # Earlier sizes stay answerable from the grown tree.
    assert [tree.root(size).hex() for size in range(9)] == ROOTS


def test_proofs_equal_the_rfc_definitions() -> None:
    data = [bytes([i]) * (i % 5) for i in range(70)]
    hashes = [leaf_hash(x) for x in data]
    tree = MerkleTree(hashes)
    for n in range(1, len(data) + 1):
        assert tree.root(n) == ref_mth(data[:n])
        for m in range(n):
            proof = tree.inclusion_proof(m, n)
            assert proof == ref_path(m, data[:n])
            verify_inclusion(hashes[m], m, n, proof, tree.root(n))
        for m in range(1, n):
            proof = tree.consistency_proof(m, n)
            assert proof == ref_subproof(m, data[:n], True)
            verify_consistency(m, n, proof, tree.root(m), tree.root(n))
        assert tree.consistency_proof(0, n) == []
        assert tree.consistency_proof(n, n) == []
        verify_consistency(0, n, [], EMPTY_ROOT, tree.root(n))
        verify_consistency(n, n, [], tree.root(n), tree.root(n))


def test_list_functions_match_the_tree() -> None:
    hashes = [leaf_hash(bytes([i])) for i in range(13)]
    tree = MerkleTree(hashes)
    assert inclusion_proof(hashes, 5) == tree.inclusion_proof(5, 13)
    assert inclusion_proof(hashes, 5, 7) == tree.inclusion_proof(5, 7)
    assert consistency_proof(hashes, 6) == tree.consistency_proof(6, 13)
    assert consistency_proof(hashes, 3, 9) == tree.consistency_proof(3, 9)


def _flip(value: bytes) -> bytes:
    return bytes([value[0] ^ 1]) + value[1:]


def test_bad_inclusion_proofs_raise() -> None:
    hashes = [leaf_hash(bytes([i])) for i in range(11)]
    tree = MerkleTree(hashes)
    root, proof = tree.root(), tree.inclusion_proof(6, 11)
    verify_inclusion(hashes[6], 6, 11, proof, root)
    bad_cases = [
        (hashes[5], 6, 11, proof, root),  # another leaf
        (hashes[6], 5, 11, proof, root),  # another index
        (hashes[6], 6, 7, proof, root),  # another size (one whose path has another shape)
        (hashes[6], 6, 11, proof[:-1], root),  # truncated
        (hashes[6], 6, 11, [*proof, root], root),  # extended
        (hashes[6], 6, 11, [_flip(proof[0]), *proof[1:]], root),  # modified
        (hashes[6], 6, 11, proof, _flip(root)),  # wrong root
        (hashes[6], 11, 11, proof, root),  # index out of range
        (hashes[6], 6, 11, [proof[0][:31], *proof[1:]], root),  # short element
    ]
    for case in bad_cases:
        with pytest.raises(ProofError):
            verify_inclusion(*case)


def test_bad_consistency_proofs_raise() -> None:
    tree = MerkleTree(leaf_hash(bytes([i])) for i in range(21))
    old, new, proof = tree.root(6), tree.root(21), tree.consistency_proof(6, 21)
    verify_consistency(6, 21, proof, old, new)
    bad_cases = [
        (6, 21, proof, tree.root(5), new),
        (6, 21, proof, old, tree.root(20)),
        (5, 21, proof, old, new),
        (6, 40, proof, old, new),
        (6, 21, proof[:-1], old, new),
        (6, 21, [*proof, new], old, new),
        (6, 21, [], old, new),
        (6, 21, [proof[0], _flip(proof[1]), *proof[2:]], old, new),
        (21, 6, proof, new, old),  # shrinking
        (21, 21, proof, new, new),  # equal sizes with a proof
        (21, 21, [], new, old),  # equal sizes, different roots
        (0, 21, proof, EMPTY_ROOT, new),  # from empty with a proof
    ]
    for case in bad_cases:
        with pytest.raises(ProofError):
            verify_consistency(*case)


def test_requests_outside_the_tree_are_refused() -> None:
    tree = MerkleTree(leaf_hash(bytes([i])) for i in range(5))
    for call in (
        lambda: tree.inclusion_proof(5, 5),
        lambda: tree.inclusion_proof(0, 6),
        lambda: tree.inclusion_proof(-1, 3),
        lambda: tree.consistency_proof(3, 6),
        lambda: tree.consistency_proof(4, 3),
        lambda: tree.root(6),
        lambda: tree.leaf(5),
    ):
        with pytest.raises(InvalidRange):
            call()
    with pytest.raises(ValueError):
        tree.append(b"short")
