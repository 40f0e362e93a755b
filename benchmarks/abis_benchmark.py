"""ABIS adapter benchmark: inserts and identifies per second through ActiveMQ and with the matcher directly.

A real broker (Debian's ActiveMQ, STOMP on a free port), the adapter in this process (one worker,
so it is compared with one direct caller), and MOSIP's side sending requests and reading answers.

    identify   the gallery holds ``--size`` seeded synthetic 128-d templates shaped like the model's
               (benchmarks/synthetic_templates.py), inserted directly with Matcher.insert_many: at
               100k, sending each through a datashare would measure the face pipeline 100k times.
               ``--searches`` identify requests (by referenceId, the whole gallery) are sent at once
               and timed until the last answer; "direct" is Matcher.identify of the same templates,
               one after another, in this process.
    insert     ``--inserts`` real LFW faces, each a JPEG 2000 image in a 19794-5 record in CBEFF,
               encrypted as MOSIP's datashare is and fetched over HTTPS: through the broker, the
               whole adapter path; "direct" is the same decode and embedding of the same images
               and Matcher.insert, without broker, HTTPS or decryption.

The ratio is direct / through the broker per second: the share of the matcher's rate that the
adapter delivers. Results: a table on stdout and benchmarks/results/abis.json.

    uv run python benchmarks/abis_benchmark.py --size 100000 --searches 500 --inserts 40
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks import synthetic_templates as synthetic
from benchmarks.activemq import Broker
from benchmarks.machine_profile import machine_info
from benchmarks.mosip_datashare import DatashareServer, jpeg_2000_face
from benchmarks.mosip_queues import Mosip, request
from safepassage.abis.config import AbisConfig, BrokerConfig, DatashareConfig, FacesSection
from safepassage.abis.service import AbisService

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "benchmarks" / "results" / "abis.json"
_CHUNK = 5000


def _config(folder: Path, broker: Broker, datashare: DatashareServer, model_dir: Path) -> AbisConfig:
    partner = datashare.partner
    return AbisConfig(
        data_dir=folder / "abis",
        workers=1,
        broker=BrokerConfig(port=broker.port, heartbeat_ms=0, prefetch=1000),
        datashare=DatashareConfig(
            token_file=partner.token_file,
            partner_key_file=partner.key_file,
            partner_certificate_file=partner.certificate_file,
            ca_file=partner.ca_file,
        ),
        faces=FacesSection(model_dir=model_dir),
    )


def _faces(faces_dir: Path, count: int) -> list[Path]:
    people = sorted(p for p in (faces_dir / "lfw").iterdir() if p.is_dir())
    return [sorted(person.glob("*.jpg"))[0] for person in people[:count]]


def _through_broker(mosip: Mosip, bodies: list[dict[str, object]]) -> tuple[float, int]:
    """Seconds from the first send to the last answer, and how many answers failed."""
    started = time.perf_counter()
    for body in bodies:
        mosip.send(body)
    answers = [mosip.wait(str(body["requestId"]), timeout_s=600) for body in bodies]
    return time.perf_counter() - started, sum(a.failure is not None for a in answers)


def measure(options: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="abis-benchmark-") as temporary:
        folder = Path(temporary)
        broker = Broker(folder / "broker")
        broker.start()
        datashare = DatashareServer(folder / "datashare").start()
        service = AbisService(_config(folder, broker, datashare, options.model_dir))
        runner = threading.Thread(target=service.run, daemon=True)
        runner.start()
        mosip = Mosip(broker.port)
        try:
            if not service.connected.wait(30):
                raise RuntimeError("the adapter did not connect")
            return _run(options, service, datashare, mosip)
        finally:
            mosip.close()
            service.stop()
            runner.join(timeout=10)
            service.close()
            datashare.close()
            broker.stop()


def _run(
    options: argparse.Namespace, service: AbisService, datashare: DatashareServer, mosip: Mosip
) -> dict[str, object]:
    matcher, gallery = service.matcher, service.references.gallery_id
    data = synthetic.generate(options.size, 0, seed=options.seed)
    started = time.perf_counter()
    for first in range(0, options.size, _CHUNK):
        items = [(f"ref-{i}", data.templates[i]) for i in range(first, min(first + _CHUNK, options.size))]
        assert matcher.insert_many(gallery, items) == [None] * len(items)
    load_s = time.perf_counter() - started
    probes = np.random.default_rng(options.seed).choice(options.size, options.searches, replace=False)

    started = time.perf_counter()
    for i in probes:
        matcher.identify(gallery, data.templates[i][None, :], 11)
    direct_identify_s = time.perf_counter() - started
    bodies = [request("identify", referenceId=f"ref-{i}", flags={"maxResults": "10"}) for i in probes]
    broker_identify_s, identify_failures = _through_broker(mosip, bodies)

    photos = _faces(options.faces_dir, 2 * options.inserts)
    images = [jpeg_2000_face(p) for p in photos]
    embedder = service.references
    started = time.perf_counter()
    for number, image in enumerate(images[: options.inserts]):
        matcher.insert(gallery, f"direct-{number}", embedder.embed([image]))
    direct_insert_s = time.perf_counter() - started
    bodies = []
    for number, image in enumerate(images[options.inserts :]):
        url = datashare.publish_faces(f"/share/{number}", [image])
        bodies.append(request("insert", referenceId=f"queued-{number}", referenceURL=url))
    broker_insert_s, insert_failures = _through_broker(mosip, bodies)

    def rates(direct_s: float, broker_s: float, count: int) -> dict[str, float]:
        direct, queued = count / direct_s, count / broker_s
        return {
            "direct_per_s": round(direct, 2),
            "broker_per_s": round(queued, 2),
            "ratio": round(queued / direct, 3),
        }

    return {
        "gallery_size": options.size,
        "gallery_load_s": round(load_s, 1),
        "identify": {"searches": options.searches, "failures": identify_failures}
        | rates(direct_identify_s, broker_identify_s, options.searches),
        "insert": {"inserts": options.inserts, "failures": insert_failures}
        | rates(direct_insert_s, broker_insert_s, options.inserts),
        "workers": 1,
        "model": matcher.spec(gallery).model_name,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=100_000, help="synthetic references in the gallery")
    parser.add_argument("--searches", type=int, default=500)
    parser.add_argument("--inserts", type=int, default=40, help="real faces inserted each way")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--faces-dir", type=Path, default=REPO.parent / "shared" / "data" / "faces")
    parser.add_argument("--model-dir", type=Path, default=REPO / "var" / "models")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    options = _parser().parse_args(argv)
    started = time.perf_counter()
    result = measure(options)
    report = {"machine": machine_info(), "total_seconds": round(time.perf_counter() - started, 1), **result}
    options.out.parent.mkdir(parents=True, exist_ok=True)
    partial = options.out.with_suffix(".partial")
    partial.write_text(json.dumps(report, indent=2) + "\n")
    partial.replace(options.out)
    for what in ("identify", "insert"):
        row = report[what]
        assert isinstance(row, dict)
        print(
            f"{what:8s} direct {row['direct_per_s']:>9.1f}/s  via the broker {row['broker_per_s']:>9.1f}/s"
            f"  ratio {row['ratio']:.3f}  failures {row['failures']}"
        )
    print(f"gallery {options.size} references; results in {options.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
