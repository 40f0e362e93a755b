import grpc
import pytest
from safepassage_api.v1 import matching_pb2 as pb

pytestmark = pytest.mark.server

def test_probe(server_factory, clients_for):
    service, port, _ = server_factory()
    c = clients_for(port)
    c.admin.galleries.CreateGallery(pb.CreateGalleryRequest(gallery_id="w", purpose=pb.WATCHLIST))
    print(c.admin.galleries.DescribeGallery(pb.DescribeGalleryRequest(gallery_id="w")))
    for pid in [0, 1, 2**63 - 1, 2**63, 2**64 - 1]:
        try:
            c.officer.matching.ConfirmMatch(pb.ConfirmMatchRequest(gallery_id="w", probe_id=pid))
        except grpc.RpcError as e:
            print(pid, e.code(), e.details())
