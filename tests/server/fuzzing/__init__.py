"""Fuzzing the gRPC server with generated bad and hostile requests (see tests/server/test_fuzz.py).

- rpcs: the RPC surface (limits, galleries, message types, who may call what) and the Case;
- corpus: seeded hostile values (text and ids, vectors, image bytes);
- tokens: real and hostile CCTV authorisations;
- structured: real protobuf messages with hostile fields, one generator per RPC;
- raw: byte strings sent as the serialized request;
- plan: how many of each, in one seeded order;
- runner: sending from threads, tallying statuses, and the server's stored state.
"""
