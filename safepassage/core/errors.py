"""Root of every SafePassage error, and the categories the API boundary maps.

Each package defines its own ``errors.py`` whose classes inherit from the
package's root *and* from exactly one category below, for example::

    class GalleryNotFound(MatcherError, NotFound): ...

The server's one error interceptor maps categories to gRPC status codes, so
domain code never imports grpc and a new error needs no new mapping.
Messages must say what was wrong without quoting biometric or personal data:
ids and counts only.

    SafePassageError
    ├── InvalidInput        the request is malformed       -> INVALID_ARGUMENT
    ├── NotFound            a named thing does not exist   -> NOT_FOUND
    ├── AlreadyExists       a unique name is taken         -> ALREADY_EXISTS
    ├── TooLarge            a size or count limit is hit   -> RESOURCE_EXHAUSTED
    ├── FailedPrecondition  valid, but not in this state   -> FAILED_PRECONDITION
    ├── Unavailable         a dependency is down, retry    -> UNAVAILABLE
    ├── DataIntegrityError  stored data failed a check     -> DATA_LOSS
    ├── Unauthenticated     no valid client identity       -> UNAUTHENTICATED
    └── PermissionDenied    identity known, not allowed    -> PERMISSION_DENIED
"""

from __future__ import annotations


class SafePassageError(Exception):
    """Root of all errors raised on purpose by SafePassage code."""


class InvalidInput(SafePassageError):
    """The caller sent something malformed; retrying unchanged cannot help."""


class NotFound(SafePassageError):
    """A gallery, reference or other named thing does not exist."""


class AlreadyExists(SafePassageError):
    """The caller tried to create something whose unique name is taken."""


class TooLarge(SafePassageError):
    """A size, count or pixel limit was exceeded."""


class FailedPrecondition(SafePassageError):
    """The request is well formed but the system is not in a state to serve it."""


class Unavailable(SafePassageError):
    """A dependency is temporarily unavailable; the caller may retry."""


class DataIntegrityError(SafePassageError):
    """Stored data failed an integrity check (authentication tag, digest)."""


class Unauthenticated(SafePassageError):
    """The caller proved no valid identity: no, invalid, expired or revoked client certificate."""


class PermissionDenied(SafePassageError):
    """The caller is authenticated but its role may not do this."""
