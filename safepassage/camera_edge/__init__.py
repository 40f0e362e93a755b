"""Edge capture clients for CCTV units and kiosks.

Capture, quality, tracking, the encrypted outbox, streaming to the server, the
kiosk and its liveness challenge. The face pipeline they run (detect ->
landmarks -> align -> embed on ONNX Runtime, from a verified model pack) is
`safepassage.face.pipeline`, the one the server runs too, so edge and server
embeddings share one space. This package imports nothing of the server side
(no dlib, faiss, matcher, enrolment, store, server).
"""
