"""The console's errors: what the service refused, and what the console itself refuses.

A call the service refuses comes back as the gRPC status of its category (safepassage/server/
errors.py); the gateway turns it into the error of the same category here, keeping the service's
message, which names the operation and the reason (never an image or a name). The console's own
refusals (a form without its token, an upload too large, a form missing a field) are errors of
the same hierarchy. `http_status` and `headline` say how a page shows each: one table.

    ConsoleError (SafePassageError)
    ├── RoleRefused            (PermissionDenied)    the matrix refuses the person's role this
    ├── FormRefused            (PermissionDenied)    the form's token is missing, wrong or old (CSRF)
    ├── CertificateRefused     (Unauthenticated)     the person's certificate is revoked, expired, foreign
    ├── FormIncomplete         (InvalidInput)        a field is missing or malformed
    ├── RequestRefused         (InvalidInput)        the service refused the request as given
    ├── NothingThere           (NotFound)            no such gallery, reference id or page
    ├── NotPossibleNow         (FailedPrecondition)  the service cannot do it in its present state
    ├── TooMuch                (TooLarge)            an upload too large, or a rate limit or budget
    └── ServiceUnreachable     (Unavailable)         the service did not answer
"""

from __future__ import annotations

import grpc

from safepassage.core.errors import (
    FailedPrecondition,
    InvalidInput,
    NotFound,
    PermissionDenied,
    SafePassageError,
    TooLarge,
    Unauthenticated,
    Unavailable,
)

__all__ = [
    "CertificateRefused",
    "ConsoleError",
    "FormIncomplete",
    "FormRefused",
    "NotPossibleNow",
    "NothingThere",
    "RequestRefused",
    "RoleRefused",
    "ServiceUnreachable",
    "TooMuch",
    "from_status",
    "http_status",
    "refusal_page",
]


def N_(message: str) -> str:
    """Marks a message for the catalogue; pages translate it when they show it."""
    return message


class ConsoleError(SafePassageError):
    """Root of the console's errors."""


class RoleRefused(ConsoleError, PermissionDenied):
    pass


class FormRefused(ConsoleError, PermissionDenied):
    pass


class CertificateRefused(ConsoleError, Unauthenticated):
    pass


class FormIncomplete(ConsoleError, InvalidInput):
    pass


class RequestRefused(ConsoleError, InvalidInput):
    pass


class NothingThere(ConsoleError, NotFound):
    pass


class NotPossibleNow(ConsoleError, FailedPrecondition):
    pass


class TooMuch(ConsoleError, TooLarge):
    pass


class ServiceUnreachable(ConsoleError, Unavailable):
    pass


_FROM_STATUS: dict[grpc.StatusCode, type[ConsoleError]] = {
    grpc.StatusCode.PERMISSION_DENIED: RoleRefused,
    grpc.StatusCode.UNAUTHENTICATED: CertificateRefused,
    grpc.StatusCode.INVALID_ARGUMENT: RequestRefused,
    grpc.StatusCode.NOT_FOUND: NothingThere,
    grpc.StatusCode.FAILED_PRECONDITION: NotPossibleNow,
    grpc.StatusCode.RESOURCE_EXHAUSTED: TooMuch,
}


def from_status(code: grpc.StatusCode, details: str) -> ConsoleError:
    """The console's error for a status the service answered (anything unexpected: unreachable)."""
    return _FROM_STATUS.get(code, ServiceUnreachable)(details or code.name)


# Category -> HTTP status, the page's headline and what it means: catalogue messages.
_PAGES: tuple[tuple[type[SafePassageError], int, str, str], ...] = (
    (
        PermissionDenied,
        403,
        N_("You may not do this"),
        N_(
            "The service's authorisation matrix does not let your role do this, or the form was not"
            " one this console gave you. The refusal is logged under your certificate."
        ),
    ),
    (
        Unauthenticated,
        403,
        N_("Your certificate is not accepted"),
        N_(
            "Your certificate is revoked, expired or not from this deployment. Ask an administrator"
            " for a new one."
        ),
    ),
    (
        InvalidInput,
        400,
        N_("The request was not accepted"),
        N_("Something in the form was missing or could not be used. Go back, correct it and try again."),
    ),
    (NotFound, 404, N_("Not found"), N_("There is no such gallery, reference id or page.")),
    (
        FailedPrecondition,
        409,
        N_("This cannot be done now"),
        N_("The service cannot do this in its present state."),
    ),
    (
        TooLarge,
        429,
        N_("Too much at once"),
        N_("The upload is too large, or you have reached a rate limit or your daily budget."),
    ),
    (
        Unavailable,
        503,
        N_("The service is not answering"),
        N_("Try again in a moment. If it persists, tell an administrator."),
    ),
)


def refusal_page(error: SafePassageError) -> tuple[int, str, str]:
    """The HTTP status, headline and explanation of `error`'s page (catalogue messages, untranslated)."""
    for category, status, title, meaning in _PAGES:
        if isinstance(error, category):
            return status, title, meaning
    return 500, N_("Something went wrong"), N_("The console's log has the details.")


def http_status(error: SafePassageError) -> int:
    return refusal_page(error)[0]
