"""Merkle tree hashing and proofs of RFC 9162 (Certificate Transparency 2.0), section 2.1.

The functional core of the log: nothing here reads files or clocks.

Hashing (section 2.1.1): a leaf hashes as ``SHA-256(0x00 || data)`` and an
interior node as ``SHA-256(0x01 || left || right)``; the prefixes keep a leaf
from ever being passed off as a node. The tree hash of n leaves splits at
the largest power of two below n, so the left subtree is always complete.

:class:`MerkleTree` caches every *complete* subtree in level arrays
(``levels[h][i]`` covers leaves ``[i*2^h, (i+1)*2^h)``), appended to as
leaves arrive. Every subtree the RFC's recursions ask for is a run of such
complete subtrees, so a root or a proof for any earlier size costs
O(log^2 n) cached lookups, never a rehash of the log. The level arrays hold
about 2n hashes: 64 MB per million leaves.

The proof generators follow the RFC's recursive definitions (PATH, SUBPROOF)
unrolled into loops; the verifiers are the RFC's algorithms, step for step,
and raise :class:`ProofError` instead of returning False.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from safepassage.audit.errors import InvalidRange, ProofError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MerkleTree",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion_proof",
    "root_hash",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
# MTH({}) = HASH() (section 2.1.1): the hash of nothing, with no prefix.
EMPTY_ROOT = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``: the hash of one log entry's leaf data."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: the hash of an interior node."""
    return _sha256(b"\x01" + left + right).digest()


class MerkleTree:
    """An append-only list of leaf hashes with every complete subtree cached.

    Each level is one bytearray of concatenated 32-byte hashes rather than a
    list of bytes objects: 64 bytes per leaf in all instead of about 150.
    """

    __slots__ = ("_levels",)

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[bytearray] = [bytearray()]
        self.extend(leaf_hashes)

    @property
    def size(self) -> int:
        return len(self._levels[0]) // HASH_SIZE

    def __len__(self) -> int:
        return self.size

    def _node(self, height: int, index: int) -> bytes:
        """The complete subtree of height ``height`` covering leaves from ``index * 2**height``."""
        offset = index * HASH_SIZE
        return bytes(self._levels[height][offset : offset + HASH_SIZE])

    def leaf(self, index: int) -> bytes:
        """The leaf hash at ``index``."""
        if not 0 <= index < self.size:
            raise InvalidRange(f"leaf {index} is outside a tree of size {self.size}")
        return self._node(0, index)

    def append(self, hashed_leaf: bytes) -> int:
        """Add one leaf hash; returns its index. Completes the subtrees it closes."""
        if len(hashed_leaf) != HASH_SIZE:
            raise ValueError(f"a leaf hash is {HASH_SIZE} bytes, not {len(hashed_leaf)}")
        levels = self._levels
        index = self.size
        levels[0] += hashed_leaf
        # Leaf number index+1 closes one complete subtree per trailing 1 bit of
        # index; the two children are the last 64 bytes of the level below.
        height, position = 0, index
        while position & 1:
            if len(levels) == height + 1:
                levels.append(bytearray())
            levels[height + 1] += _sha256(b"\x01" + levels[height][-2 * HASH_SIZE :]).digest()
            height += 1
            position >>= 1
        return index

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        for hashed in leaf_hashes:
            self.append(hashed)

    def _subtree(self, start: int, end: int) -> bytes:
        """MTH of leaves ``[start, end)``, which must be a run of complete aligned subtrees.

        That holds for every range the RFC recursions visit: they split at the
        largest power of two k below the length, so a left part is complete
        and a right part starts at a multiple of k, which is at least its length.
        The run decomposes into complete subtrees, largest first, and folds from
        the right exactly as MTH's recursive split does.
        """
        parts: list[bytes] = []
        while start < end:
            height = (end - start).bit_length() - 1
            if start & ((1 << height) - 1):
                raise ValueError(f"range [{start}, {end}) is not aligned to its largest subtree")
            parts.append(self._node(height, start >> height))
            start += 1 << height
        result = parts.pop()
        while parts:
            result = node_hash(parts.pop(), result)
        return result

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (default: all of them)."""
        size = self.size if size is None else size
        if not 0 <= size <= self.size:
            raise InvalidRange(f"tree size {size} is outside 0..{self.size}")
        return self._subtree(0, size) if size else EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """PATH(index, D[size]) (section 2.1.3.1): the audit path of leaf ``index``, leaf end first."""
        if not 0 <= index < size <= self.size:
            raise InvalidRange(f"no leaf {index} in a tree of size {size} (log size {self.size})")
        # PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n])  if m < k
        #               = PATH(m - k, D[k:n]) : MTH(D[0:k])  otherwise.
        # Walking down collects the outermost sibling first, so reverse at the end.
        path: list[bytes] = []
        start, end = 0, size
        while end - start > 1:
            k = 1 << ((end - start - 1).bit_length() - 1)
            if index < start + k:
                path.append(self._subtree(start + k, end))
                end = start + k
            else:
                path.append(self._subtree(start, start + k))
                start += k
        path.reverse()
        return path

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """PROOF(first, D[second]) (section 2.1.4.1); empty when first is 0 or equals second."""
        if not 0 <= first <= second <= self.size:
            raise InvalidRange(f"no consistency proof from {first} to {second} (log size {self.size})")
        if first in (0, second):
            return []
        # SUBPROOF(m, D[n], b): m == n -> [] if b else [MTH(D[n])];
        #   m <= k -> SUBPROOF(m, D[0:k], b) : MTH(D[k:n]);
        #   m > k  -> SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k]).
        path: list[bytes] = []
        start, end, whole = 0, second, True
        while True:
            if first == end:
                if not whole:
                    path.append(self._subtree(start, end))
                break
            k = 1 << ((end - start - 1).bit_length() - 1)
            if first - start <= k:
                path.append(self._subtree(start + k, end))
                end = start + k
            else:
                path.append(self._subtree(start, start + k))
                start += k
                whole = False
        path.reverse()
        return path


# -- functions over lists of leaf hashes -------------------------------------


def root_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of a list of leaf hashes."""
    return MerkleTree(leaf_hashes).root()


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int, size: int | None = None) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of the first ``size`` leaf hashes."""
    return MerkleTree(leaf_hashes).inclusion_proof(index, len(leaf_hashes) if size is None else size)


def consistency_proof(leaf_hashes: Sequence[bytes], first: int, second: int | None = None) -> list[bytes]:
    """The consistency proof between the trees of the first ``first`` and ``second`` leaf hashes."""
    return MerkleTree(leaf_hashes).consistency_proof(first, len(leaf_hashes) if second is None else second)


# -- verification (section 2.1.3.2 and 2.1.4.2) -------------------------------


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} is {len(value)} bytes, not {HASH_SIZE}")


def root_from_inclusion_proof(hashed_leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """The root an inclusion proof leads to, by RFC 9162 section 2.1.3.2 steps 1-4.

    Raises ProofError if the proof has the wrong length for (index, size).
    """
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    _check_hash(hashed_leaf, "the leaf hash")
    fn, sn = index, size - 1
    result = hashed_leaf
    for position, sibling in enumerate(proof):
        _check_hash(sibling, f"proof element {position}")
        if sn == 0:
            raise ProofError(f"the inclusion proof is too long ({len(proof)} elements)")
        if fn & 1 or fn == sn:
            result = node_hash(sibling, result)
            # A right edge with no sibling at this level: climb until fn is a right child.
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            result = node_hash(result, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"the inclusion proof is too short ({len(proof)} elements)")
    return result


def verify_inclusion(hashed_leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check that leaf ``index`` of the tree of ``size`` with root ``root`` hashes to ``hashed_leaf``.

    Raises ProofError on any failure; returns None on success.
    """
    _check_hash(root, "the root hash")
    if root_from_inclusion_proof(hashed_leaf, index, size, proof) != root:
        raise ProofError(f"leaf {index} is not included in the tree of size {size} with this root")


def verify_consistency(
    first: int, second: int, proof: Sequence[bytes], first_root: bytes, second_root: bytes
) -> None:
    """Check that the tree of size ``second`` extends the tree of size ``first``.

    RFC 9162 section 2.1.4.2, plus the cases it leaves out (as the
    transparency-dev implementation does): equal sizes need an empty proof
    and equal roots; first == 0 needs an empty proof (every tree extends the
    empty one). Raises ProofError on any failure.
    """
    _check_hash(first_root, "the first root")
    _check_hash(second_root, "the second root")
    if not 0 <= first <= second:
        raise ProofError(f"tree size {second} cannot extend tree size {first}")
    if first == second:
        if proof:
            raise ProofError("a consistency proof between equal sizes must be empty")
        if first_root != second_root:
            raise ProofError(f"two different roots for tree size {first}")
        return
    if first == 0:
        if proof:
            raise ProofError("a consistency proof from the empty tree must be empty")
        return
    # Step 1.
    if not proof:
        raise ProofError(f"the consistency proof from {first} to {second} is empty")
    for position, element in enumerate(proof):
        _check_hash(element, f"proof element {position}")
    path = list(proof)
    # Step 2: a complete first tree is itself a node of the second, so the proof omits it.
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    # Steps 3-4.
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # Step 5.
    fr = sr = path[0]
    # Step 6.
    for element in path[1:]:
        if sn == 0:
            raise ProofError(f"the consistency proof from {first} to {second} is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(element, fr)
            sr = node_hash(element, sr)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, element)
        fn >>= 1
        sn >>= 1
    # Step 7.
    if sn != 0:
        raise ProofError(f"the consistency proof from {first} to {second} is too short")
    if fr != first_root:
        raise ProofError(f"the consistency proof does not lead to the root of tree size {first}")
    if sr != second_root:
        raise ProofError(f"the consistency proof does not lead to the root of tree size {second}")
