"""Who listens on a TCP port: named in the refusal when the server's port is taken.

The server binds without SO_REUSEPORT (gRPC's default would let a second
server share the port, each answering some connections from its own index),
so a taken port fails the bind. Linux's /proc tells which process holds it:
the listening socket's inode from /proc/net/tcp{,6}, then the process whose
descriptor points at that socket. Processes of other users are invisible to a
non-root server; the message then names none.
"""

from __future__ import annotations

import os
from pathlib import Path

from safepassage.core.errors import FailedPrecondition

__all__ = ["PortInUse", "port_holders"]

_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's state column


class PortInUse(FailedPrecondition):
    """The listen address is taken (by another server, or anything else)."""


def port_holders(port: int) -> list[int]:
    """Pids of the processes listening on ``port`` (any address), as far as /proc shows them."""
    sockets = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    if not sockets:
        return []
    found: list[int] = []
    for process in Path("/proc").iterdir():
        if not process.name.isdigit():
            continue
        try:
            descriptors = list((process / "fd").iterdir())
        except OSError:  # gone, or another user's
            continue
        for descriptor in descriptors:
            try:
                if os.readlink(descriptor) in sockets:
                    found.append(int(process.name))
                    break
            except OSError:
                continue
    return sorted(found)


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) < 10 or fields[3] != _LISTEN:
                continue
            local_port = fields[1].rsplit(":", 1)[-1]
            if int(local_port, 16) == port:
                inodes.add(fields[9])
    return inodes
