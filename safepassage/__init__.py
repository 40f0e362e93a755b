"""SafePassage: border biometric matching and identity protection.

One owned namespace. Rooms (see the README's map of the code, enforced by tests/test_architecture.py):
core, api (generated), face, store, matcher, enrolment, audit, credential, camera_edge, model_pack,
server, app (the composition root), cli and evaluation. Importing this package imports nothing else.
"""
