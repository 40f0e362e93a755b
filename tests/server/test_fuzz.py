import grpc
import pytest
from safepassage_api.v1 import matching_pb2 as pb

pytestmark = pytest.mark.server

def test_probe(server_factory, clients_for):
    service, port, _ = server_factory()
    c = clients_for(port)
    c.admin.galleries.CreateGallery(pb.CreateGalleryRequest(gallery_id="w", purpose=pb.WATCHLIST))
    ch = c.admin.channel
    for method in ["/safepassage.v1.GalleryService/DescribeGallery", "/safepassage.v1.MatchingService/CountTemplates"]:
        call = ch.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        for data in [b"\xff\xff\xff", b"\x0a\x05ab", b"\x0a\x02\xff\xfe", b"\x08\x01", b""]:
            try:
                print(method, data, "OK", call(data, timeout=5))
            except grpc.RpcError as e:
                print(method, data, e.code(), e.details())
