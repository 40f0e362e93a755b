"""One real ActiveMQ broker, one HTTPS datashare and one running adapter per test module."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.activemq import Broker, BrokerMissing
from benchmarks.mosip_datashare import DatashareServer
from benchmarks.mosip_queues import Mosip
from safepassage import face as faces
from safepassage.abis.config import AbisConfig, BrokerConfig, DatashareConfig, FacesSection
from safepassage.abis.service import AbisService


@pytest.fixture(scope="session")
def abis_embedder(model_dir: Path) -> faces.Embedder:
    from safepassage.face.onnx_embedder import OnnxEmbedder
    from safepassage.face.pipeline import PipelineSettings

    return OnnxEmbedder(PipelineSettings(model_dir=model_dir, threads=1))


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    try:
        running = Broker(tmp_path_factory.mktemp("activemq"))
        running.start()
    except BrokerMissing as error:
        pytest.fail(str(error), pytrace=False)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def datashare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatashareServer]:
    server = DatashareServer(tmp_path_factory.mktemp("datashare")).start()
    yield server
    server.close()


def adapter_config(data_dir: Path, broker: Broker, datashare: DatashareServer, model_dir: Path) -> AbisConfig:
    partner = datashare.partner
    return AbisConfig(
        data_dir=data_dir,
        workers=2,
        broker=BrokerConfig(port=broker.port, heartbeat_ms=0, reconnect_s=0.5),
        datashare=DatashareConfig(
            token_file=partner.token_file,
            partner_key_file=partner.key_file,
            partner_certificate_file=partner.certificate_file,
            ca_file=partner.ca_file,
            timeout_s=10,
        ),
        faces=FacesSection(model_dir=model_dir),
    )


@pytest.fixture(scope="module")
def adapter(
    tmp_path_factory: pytest.TempPathFactory,
    broker: Broker,
    datashare: DatashareServer,
    model_dir: Path,
    abis_embedder: faces.Embedder,
) -> Iterator[AbisService]:
    config = adapter_config(tmp_path_factory.mktemp("abis"), broker, datashare, model_dir)
    service = AbisService(config, abis_embedder)
    runner = threading.Thread(target=service.run, daemon=True)
    runner.start()
    assert service.connected.wait(30), "the adapter did not connect to the broker"
    yield service
    service.stop()
    runner.join(timeout=10)
    service.close()


@pytest.fixture(scope="module")
def mosip(broker: Broker) -> Iterator[Mosip]:
    side = Mosip(broker.port)
    yield side
    side.close()
