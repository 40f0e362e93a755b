"""What the holder knows: a PIN, a duress PIN and a recovery code.

The PIN releases the full record at a verification; the duress PIN looks
exactly like it to whoever watches (same answer, same time spent) but
raises a protection referral. Both are kept as scrypt hashes inside the
record's sealed secrets, under the record's own data key: a stolen database
without the key-encryption key gives nothing to brute-force, and erasure
destroys them with the rest. A check always computes both hashes, so the
time taken does not tell an ordinary PIN from a duress PIN.

The recovery code proves the holder without a credential (lost phone,
confiscated paper): 100 random bits, shown as 20 Crockford base32
characters in groups of four. The service finds a record by an HMAC of the
normalised code under a deployment key (a lookup tag), never by the code
itself; 100 bits make guessing hopeless, so HMAC-SHA256 suffices there.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass

from safepassage.core.key_derivation import stretch
from safepassage.enrolment.errors import HolderNotVerified, InvalidRecord, RecordIntegrityError

__all__ = [
    "PIN_PATTERN",
    "HolderSecrets",
    "PinKind",
    "new_recovery_code",
    "normalise_recovery_code",
    "recovery_tag",
]

# New PINs: 6 to 12 digits (a million guesses, against five a lockout). Hashes of 4-digit PINs
# made before that rule still check, so nobody is locked out by it; they change at the next PIN change.
PIN_PATTERN = re.compile(r"[0-9]{6,12}")
_CHECKABLE_PIN = re.compile(r"[0-9]{4,12}")
_SALT_SIZE = 16
# scrypt at 2**14 x 8: about 40 ms a hash, 16 MiB; two per check.
_SCRYPT_N = 2**14
_SCRYPT_R = 8
_FORMAT = 1

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CODE_LENGTH = 20  # 100 bits
_CODE_CHARS = re.compile(r"[0-9A-HJKMNP-TV-Z]{20}")
# Crockford's reading rules: O->0, I/L->1; hyphens and spaces are for people.
_CONFUSABLE = str.maketrans({"O": "0", "I": "1", "L": "1", "-": None, " ": None})


class PinKind(enum.Enum):
    ORDINARY = "ordinary"
    DURESS = "duress"


def _scrypt(pin: str, salt: bytes) -> bytes:
    return stretch(pin.encode("ascii"), salt, n=_SCRYPT_N, r=_SCRYPT_R)


def _check_pin(pin: str, field: str) -> str:
    if not isinstance(pin, str) or not PIN_PATTERN.fullmatch(pin):
        raise InvalidRecord(f"{field} must be 6 to 12 digits")
    return pin


@dataclass(frozen=True)
class HolderSecrets:
    """The PIN and duress PIN hashes of one record (sealed under its data key by the caller)."""

    pin_salt: bytes
    pin_hash: bytes
    duress_salt: bytes
    duress_hash: bytes

    def __repr__(self) -> str:
        return "HolderSecrets(<hashes hidden>)"

    @classmethod
    def create(cls, pin: str, duress_pin: str) -> HolderSecrets:
        _check_pin(pin, "pin")
        _check_pin(duress_pin, "duress_pin")
        if hmac.compare_digest(pin, duress_pin):
            raise InvalidRecord("duress_pin must differ from pin")
        pin_salt, duress_salt = os.urandom(_SALT_SIZE), os.urandom(_SALT_SIZE)
        return cls(pin_salt, _scrypt(pin, pin_salt), duress_salt, _scrypt(duress_pin, duress_salt))

    def check(self, pin: str) -> PinKind:
        """Which PIN this is; HolderNotVerified if neither. Both hashes are always computed."""
        candidate = pin if isinstance(pin, str) and _CHECKABLE_PIN.fullmatch(pin) else "0000"
        ordinary = hmac.compare_digest(_scrypt(candidate, self.pin_salt), self.pin_hash)
        duress = hmac.compare_digest(_scrypt(candidate, self.duress_salt), self.duress_hash)
        if candidate != pin:
            raise HolderNotVerified("the PIN is not 4 to 12 digits")
        if ordinary:
            return PinKind.ORDINARY
        if duress:
            return PinKind.DURESS
        raise HolderNotVerified("wrong PIN")

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "format": _FORMAT,
                "pin": [self.pin_salt.hex(), self.pin_hash.hex()],
                "duress": [self.duress_salt.hex(), self.duress_hash.hex()],
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode("ascii")

    @classmethod
    def from_bytes(cls, data: bytes) -> HolderSecrets:
        try:
            parsed = json.loads(data)
            if parsed["format"] != _FORMAT:
                raise ValueError("format")
            pin_salt, pin_hash = (bytes.fromhex(part) for part in parsed["pin"])
            duress_salt, duress_hash = (bytes.fromhex(part) for part in parsed["duress"])
        except (ValueError, KeyError, TypeError) as exc:
            # Opened under the record's key, so this is damage from before sealing: not input.
            raise RecordIntegrityError(
                f"the holder's secrets are unreadable ({type(exc).__name__})"
            ) from None
        return cls(pin_salt, pin_hash, duress_salt, duress_hash)


def new_recovery_code() -> str:
    """A fresh code, e.g. ``7K2M-Q9XD-4TBE-H1WR-C8NP``: 100 bits from the OS CSPRNG."""
    raw = "".join(secrets.choice(_CROCKFORD) for _ in range(_CODE_LENGTH))
    return "-".join(raw[i : i + 4] for i in range(0, _CODE_LENGTH, 4))


def normalise_recovery_code(code: str) -> str:
    """Upper case, no separators, Crockford's confusables mapped; HolderNotVerified if malformed."""
    if not isinstance(code, str) or len(code) > 64:
        raise HolderNotVerified("the recovery code is malformed")
    normalised = code.upper().translate(_CONFUSABLE)
    if not _CODE_CHARS.fullmatch(normalised):
        raise HolderNotVerified("the recovery code is malformed (20 characters of 0-9 and A-Z)")
    return normalised


def recovery_tag(lookup_key: bytes, code: str) -> bytes:
    """The lookup tag a record is found by: HMAC-SHA256 of the normalised code."""
    return hmac.new(lookup_key, normalise_recovery_code(code).encode("ascii"), hashlib.sha256).digest()
