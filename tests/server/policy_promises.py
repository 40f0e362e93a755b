"""What the README promises each role may do, written out by hand: the oracle of the policy tests.

The authorisation tests once computed their expected answers from ``authorization.MATRIX``, the
table under test, so a wrong entry there (auditors allowed to Identify, kiosks allowed to share
a record) passed the whole suite. This table is typed in from the README's role promises and
changed only when a promise changes; a policy change that is not also a promise change fails
the tests that read it (tests/server/test_authorization.py, test_protected_authorization.py).

Each cell lists the gallery purposes a role may act on: "W" watchlist, "P" protected identity,
"-" none. Operations that name no gallery use "*" for allowed and "-" for refused.
"""

from __future__ import annotations

from safepassage.matcher import GalleryPurpose
from safepassage.server.authorization import Operation
from safepassage.server.identity import Role

ROLES = (Role.ADMIN, Role.AUDITOR, Role.OFFICER, Role.CCTV_EDGE, Role.KIOSK, Role.NGO_CASEWORKER)

# fmt: off
#                                      admin  auditor officer cctv  kiosk  caseworker
PROMISES: dict[Operation, tuple[str, str, str, str, str, str]] = {
    # Galleries: admins run them; auditors see metadata, never a search.
    Operation.CREATE_GALLERY:            ("WP", "-",   "-",   "-",  "-",  "-"),
    Operation.DELETE_GALLERY:            ("WP", "-",   "-",   "-",  "-",  "-"),
    Operation.CALIBRATE_GALLERY:         ("W",  "-",   "-",   "-",  "-",  "-"),
    Operation.LIST_GALLERIES:            ("*",  "*",   "-",   "-",  "-",  "-"),
    Operation.DESCRIBE_GALLERY:          ("WP", "WP",  "W",   "W",  "WP", "P"),
    Operation.RENEW_TEMPLATE_PROTECTION: ("*",  "-",   "-",   "-",  "-",  "-"),
    # Watchlist templates: only admins write them; nobody touches protected templates this way.
    Operation.INSERT_TEMPLATE:           ("W",  "-",   "-",   "-",  "-",  "-"),
    Operation.BULK_INSERT_TEMPLATES:     ("W",  "-",   "-",   "-",  "-",  "-"),
    Operation.DELETE_TEMPLATE:           ("W",  "-",   "-",   "-",  "-",  "-"),
    Operation.COUNT_TEMPLATES:           ("WP", "WP",  "-",   "-",  "-",  "P"),
    # Searches: officers on watchlists; cameras stream under an authorisation; kiosks verify 1:1.
    Operation.IDENTIFY:                  ("-",  "-",   "W",   "-",  "-",  "-"),
    Operation.VERIFY:                    ("-",  "-",   "W",   "-",  "W",  "-"),
    Operation.IDENTIFY_STREAM:           ("-",  "-",   "W",   "W",  "-",  "-"),
    # Reviewing kept CCTV hits (four eyes: two different officers confirm; one may dismiss).
    Operation.CONFIRM_MATCH:             ("-",  "-",   "W",   "-",  "-",  "-"),
    Operation.DISMISS_MATCH:             ("-",  "-",   "W",   "-",  "-",  "-"),
    Operation.LIST_KEPT_HITS:            ("-",  "-",   "W",   "-",  "-",  "-"),
    # A watchlist's reference images (opt-in face crops): only who reviews its hits sees them.
    Operation.GET_REFERENCE_IMAGE:       ("-",  "-",   "W",   "-",  "-",  "-"),
    # A traveller against their own passport chip's photo: officers at a desk, kiosks at an e-gate.
    Operation.VERIFY_DOCUMENT:           ("-",  "-",   "*",   "-",  "*",  "-"),
    # The officer's decision on a chip check, for the log.
    Operation.RECORD_DOCUMENT_DECISION:  ("-",  "-",   "*",   "-",  "-",  "-"),
    # The officer's own decision on an answer, into the log (the console's desk records it).
    Operation.RECORD_DECISION:           ("-",  "-",   "W",   "-",  "-",  "-"),
    # Protected records: the NGO's caseworkers and kiosks, under the record policy.
    Operation.ENROL_RECORD:              ("-",  "-",   "-",   "-",  "P",  "P"),
    Operation.CHECK_DUPLICATE:           ("-",  "-",   "-",   "-",  "-",  "P"),
    Operation.GET_CONSENT:               ("-",  "-",   "-",   "-",  "*",  "*"),
    Operation.CHANGE_CONSENT:            ("-",  "-",   "-",   "-",  "*",  "*"),
    Operation.ISSUE_CREDENTIAL:          ("-",  "-",   "-",   "-",  "*",  "*"),
    Operation.CHANGE_PIN:                ("-",  "-",   "-",   "-",  "*",  "*"),
    Operation.ERASE_RECORD:              ("-",  "-",   "-",   "-",  "*",  "*"),
    Operation.VERIFY_HOLDER:             ("-",  "-",   "*",   "-",  "*",  "-"),
    Operation.SHARE_RECORD:              ("-",  "-",   "-",   "-",  "-",  "*"),
    Operation.LIST_REFERRALS:            ("-",  "-",   "-",   "-",  "-",  "*"),
    Operation.ACKNOWLEDGE_REFERRAL:      ("-",  "-",   "-",   "-",  "-",  "*"),
    Operation.ROTATE_RECORD_KEYS:        ("*",  "-",   "-",   "-",  "-",  "-"),
    # Public material, for checking receipts, credentials and revocations offline.
    Operation.GET_CREDENTIAL_REVOCATIONS: ("*", "*",   "*",   "*",  "*",  "*"),
    Operation.GET_PUBLIC_KEYS:           ("*",  "*",   "*",   "*",  "*",  "*"),
    # Who the caller is and what its role may do: every client may ask about itself.
    Operation.DESCRIBE_CALLER:           ("*",  "*",   "*",   "*",  "*",  "*"),
    # The deployment's certificates: administrators only (issue, list, revoke).
    Operation.ISSUE_CERTIFICATE:         ("*",  "-",   "-",   "-",  "-",  "-"),
    Operation.LIST_CERTIFICATES:         ("*",  "-",   "-",   "-",  "-",  "-"),
    Operation.REVOKE_CERTIFICATE:        ("*",  "-",   "-",   "-",  "-",  "-"),
    # CCTV authorisations and their uses, fishing alerts (from the log): administrators and auditors.
    Operation.LIST_AUTHORISATIONS:       ("*",  "*",   "-",   "-",  "-",  "-"),
    # Signing one on the server (where the deployment keeps the authority's key there): administrators,
    # on watchlists.
    Operation.SIGN_AUTHORISATION:        ("W",  "-",   "-",   "-",  "-",  "-"),
    Operation.LIST_FISHING_ALERTS:       ("*",  "*",   "-",   "-",  "-",  "-"),
    # The transparency log's entries, signed heads and proofs: administrators and auditors.
    Operation.LIST_TREE_HEADS:           ("*",  "*",   "-",   "-",  "-",  "-"),
    Operation.LIST_LOG_ENTRIES:          ("*",  "*",   "-",   "-",  "-",  "-"),
    Operation.GET_CONSISTENCY_PROOF:     ("*",  "*",   "-",   "-",  "-",  "-"),
    # A webcam capture's quality (the kiosk's prompts): officers (a search), caseworkers (an enrolment).
    Operation.ASSESS_CAPTURE:            ("-",  "-",   "*",   "-",  "-",  "*"),
    # The service's own head-turn check: whoever brings a live face to a holder proof or an enrolment.
    Operation.START_LIVENESS:            ("-",  "-",   "*",   "-",  "*",  "*"),
    Operation.CHECK_LIVENESS:            ("-",  "-",   "*",   "-",  "*",  "*"),
}
# fmt: on

_PURPOSE_LETTER = {GalleryPurpose.WATCHLIST: "W", GalleryPurpose.PROTECTED_IDENTITY: "P"}


def promised(operation: Operation, role: Role, purpose: GalleryPurpose) -> bool:
    """Whether the README promises `role` may call `operation` (on a gallery of `purpose`)."""
    cell = PROMISES[operation][ROLES.index(role)]
    if cell == "*":
        return True
    return _PURPOSE_LETTER[purpose] in cell
