"""`python -m tests.crash_serve STEP serve ...`: the real server, killed (exit 137) right after STEP.

Tests use it to stop a server at each step of an erasure, as a power cut would,
and check that the next start completes what was begun.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from safepassage.enrolment.custodian import KeyCustodian
from safepassage.enrolment.holder_templates import HolderTemplates
from safepassage.enrolment.vault_erasures import Erasures
from safepassage.enrolment.vault_records import DataKeys

STEPS: dict[str, tuple[Any, str]] = {
    "journal": (Erasures, "begin"),
    "templates_dropped": (HolderTemplates, "drop"),
    "rewrapped": (DataKeys, "replace"),
    "tombstone": (Erasures, "erase"),
    "kek_destroyed": (KeyCustodian, "destroy_unused"),
}


def _dying(original: Callable[..., Any]) -> Callable[..., Any]:
    def step(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        os._exit(137)
        return result

    return step


def main(argv: list[str]) -> int:
    owner, name = STEPS[argv[0]]
    setattr(owner, name, _dying(getattr(owner, name)))
    from safepassage.cli.main import main as cli

    return cli(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
