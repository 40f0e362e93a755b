"""Concurrent readers see consistent snapshots while a writer inserts and deletes."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from safepassage.store import EMPTY_DIGEST, TemplateStore, gallery_digest
from tests.store.store_helpers import vector_for

Items = Callable[..., list[tuple[str, npt.NDArray[np.float32]]]]

BATCHES = 40
READERS = 4


@pytest.mark.timeout(60)
def test_readers_run_while_a_writer_inserts(
    template_store: TemplateStore, gallery: str, items: Items
) -> None:
    committed: list[str] = []  # reference ids whose insert has returned
    lock = threading.Lock()
    done = threading.Event()
    errors: list[BaseException] = []
    reads = [0] * READERS

    def writer() -> None:
        try:
            for b in range(BATCHES):
                batch = items(f"w{b}", 25)
                template_store.templates.insert(gallery, batch)
                with lock:
                    committed.extend(ref for ref, _ in batch)
                if b % 5 == 4:
                    template_store.templates.delete(gallery, f"w{b}-00000")
                    with lock:
                        committed.remove(f"w{b}-00000")
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            done.set()

    def reader(slot: int) -> None:
        last_generation = -1
        try:
            while not done.is_set() or reads[slot] < 3:
                state = template_store.galleries.state(gallery)
                assert state.generation >= last_generation  # never goes back in time
                last_generation = state.generation
                with lock:
                    sample = committed[-3:]
                for ref in sample:
                    _, vector = template_store.templates.get(gallery, ref)
                    assert vector.tobytes() == vector_for(ref).tobytes()
                # One snapshot from start to end; verify=True checks its size and digest.
                folded = EMPTY_DIGEST
                for ids, vectors in template_store.templates.iterate(gallery, batch_size=64):
                    folded = gallery_digest(template_store.sealer, ids, vectors, start=folded)
                    assert np.all(np.diff(ids) > 0)
                reads[slot] += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer)]
    threads += [threading.Thread(target=reader, args=(i,)) for i in range(READERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=50)
    assert not any(thread.is_alive() for thread in threads)
    assert not errors, errors
    assert all(count >= 3 for count in reads)

    state = template_store.galleries.state(gallery)
    assert state.size == len(committed) == BATCHES * 25 - BATCHES // 5
    assert state.generation == BATCHES + BATCHES // 5


def test_an_open_iteration_is_a_snapshot_and_does_not_block_writes(
    template_store: TemplateStore, gallery: str, items: Items
) -> None:
    first = template_store.templates.insert(gallery, items("a", 10))
    iterator = template_store.templates.iterate(gallery, batch_size=4)
    ids, _ = next(iterator)
    # Another write commits while the iteration holds its snapshot open.
    later = template_store.templates.insert(gallery, items("b", 5))
    template_store.templates.delete(gallery, "a-00009")
    seen = ids.tolist() + [i for chunk, _ in iterator for i in chunk.tolist()]
    assert seen == first  # neither the insert nor the delete is visible; verify passed
    assert template_store.templates.count(gallery) == 14
    assert set(later) <= set(template_store.templates.reference_ids(gallery, later))
