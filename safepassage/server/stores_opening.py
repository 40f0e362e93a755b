"""The service's stores, opened at start-up in order, and the work due on them before serving.

The template store comes first, and with it the removal of what a crash left (index snapshots of
galleries deleted since, partly written snapshot files); then the CCTV probes kept for review, the
identify-stream replies and the transparency log, which is refused if shorter than, or inconsistent
with, a tree head it published (head file, witness). Each is registered with the caller's ExitStack,
so a failure further on closes what was opened.

The protected-records side opens after the matcher: the KEK keyring and the station's, issuer's and
reader's keys are made on a first run (where the config allows it) and read after. Before the first
call is served, erasures that a stop interrupted are finished, protected templates that an earlier
version kept in the template store are moved out of it, and every record's templates are loaded into
memory (they are held there only).
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass

from safepassage import credential, enrolment, store
from safepassage.audit import TransparencyLog, load_or_create_signing_key
from safepassage.matcher import Matcher, snapshot
from safepassage.server.config import Config
from safepassage.server.settings_conversion import enrolment_settings, tree_head_publisher

__all__ = ["Stores", "open_protected_records", "open_stores"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stores:
    """What the service writes besides the record vault (the first three sealed under one key)."""

    template_store: store.TemplateStore
    kept_probes: store.ProbeStore
    stream_replies: store.ReplyLedger
    transparency_log: TransparencyLog
    reference_images: store.ReferenceImageStore


def open_stores(config: Config, sealer: store.TemplateSealer, opened: ExitStack) -> Stores:
    """Open (or create) each store, registering its close with `opened`."""
    template_store = opened.enter_context(store.TemplateStore.open(config.database_path, sealer))
    galleries = {g.gallery_id for g in template_store.galleries.records()}
    snapshot.remove_stale(config.snapshot_dir, galleries)
    reference_images = store.ReferenceImageStore.open(config.reference_images_path, sealer)
    opened.callback(reference_images.close)
    reference_images.forget_galleries_except(galleries)  # a gallery deleted before its images were
    kept_probes = store.ProbeStore.open(config.probes_path, sealer)
    opened.callback(kept_probes.close)
    stream_replies = store.ReplyLedger.open(config.stream_replies_path, sealer)
    opened.callback(stream_replies.close)
    transparency_log = TransparencyLog.open(
        config.audit_log_path,
        load_or_create_signing_key(config.audit_key_path),
        publisher=tree_head_publisher(config),
    )
    opened.callback(transparency_log.close)
    return Stores(template_store, kept_probes, stream_replies, transparency_log, reference_images)


def open_protected_records(config: Config, matcher: Matcher, lookup_key: bytes) -> enrolment.ProtectedRecords:
    """The record vault, its keyring and the station's, issuer's and reader's keys, ready to serve.

    The vault is closed again if anything after opening it fails.
    """
    settings = config.enrolment
    keys = enrolment.FileKeyring.open(config.keyring_path, create=config.storage.generate_template_key)
    vault = enrolment.RecordVault.open(config.records_path)
    try:
        records = enrolment.ProtectedRecords(
            vault=vault,
            keys=keys,
            matcher=matcher,
            station=enrolment.StationKey.load_or_create(config.station_key_path, settings.station_id),
            issuer=credential.IssuerKey.load_or_create(config.issuer_key_path, settings.issuer_id),
            reader=credential.ReaderKey.load_or_create(config.reader_key_path),
            agency_readers=[credential.ReaderPublicKey.load(path) for path in settings.agency_reader_keys],
            lookup_key=lookup_key,
            settings=enrolment_settings(config),
        )
        # Before serving: finish erasures a stop interrupted, move protected templates an earlier
        # version kept in the template store out of it, and hold them in memory only.
        enrolment.complete_pending(records)
        records.purge_store_copies()
        loaded = records.load_templates()
        log.info("protected records: %d records' templates loaded from the vault", loaded)
        return records
    except BaseException:
        vault.close()
        raise
