"""The console: a web front door for border officers (and, later, reviewers and administrators).

Served over HTTPS on a port of its own by `safepassage serve`. A person logs in with their own
client certificate from the deployment's CA; every page and action becomes a call to the same gRPC
service, made over a loopback mutual-TLS channel with the console's own certificate and the
person's certificate forwarded (safepassage/server/forwarding.py), so the same access interceptor,
authorisation matrix, rate limits and transparency log decide and record it, under the person.
The console holds no user database, no policy and no data: docs/console.md.

    settings        what the composition root hands it (ports, TLS files, the loopback target)
    gateway         the loopback gRPC channel; protobuf stops here
    answers         the plain values pages show (the person, a search's answer, the threshold story)
    refusals        the console's errors and the HTTP status and message of each
    catalogue       the gettext message catalogue, read from its .po file at start-up
    form_tokens     CSRF tokens bound to the person's certificate
    upload_form     form bodies read in memory, never spooled to disk
    probe_crop      the face the service found, cut from the upload in memory, for display
    pages           the page registry, templates and the response headers of every page
    officer_desk    the officer desk: verify, identify, 1:few, and the officer's decision
    web_server      the HTTPS server (client certificates required) in a thread of its own
"""

from safepassage.console.settings import ConsoleSettings
from safepassage.console.web_server import Console

__all__ = ["Console", "ConsoleSettings"]
