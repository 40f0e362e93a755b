"""`safepassage records`: protected identity records, from an NGO desk, a kiosk or a border desk.

safepassage records enrol GALLERY --record R.json --face IMG --consent-text T.txt --language L
                        --grant SCOPE... [--refuse SCOPE...] --pin P --duress-pin D --out-dir DIR
safepassage records consent HOLDER
safepassage records grant|withdraw HOLDER SCOPE... --consent-text T --language L [--out FILE]
safepassage records credential HOLDER --out-dir DIR [--valid-days N]
safepassage records change-pin HOLDER [--new-pin P --new-duress-pin D]
safepassage records verify-holder (--credential FILE | --recovery-code C) --face IMG [--pin P]
safepassage records duplicates GALLERY IMG | share HOLDER [ORG] | erase HOLDER --out FILE
safepassage records referrals [--all] | ack ID | rotate-keys | public-keys --out-dir DIR
safepassage records verify-receipt RECEIPT --station-key PEM     (offline)
safepassage records backup [--config F] [--data-dir DIR] --out FILE  (on the server's host)

--out names a file, --out-dir a folder (made if missing; --out is still read as --out-dir there).
`enrol` writes the consent receipt, the record id (record-id.txt) and the credential (credential.png,
credential.txt) into its folder, and prints the recovery code once.

HOLDER is --record-id ID (caseworkers of the record's organisation), --recovery-code CODE (the
holder's proof), or --credential FILE (text or QR PNG) with the holder's live --face IMG and --pin:
a credential alone proves nothing. A live face is signed by this client's certificate key as a
capture statement (--liveness: supervised at a staffed desk, head_turn from a kiosk's challenge).
Scopes: store, verify_at_border, duplicate_check, share:<organisation>. PINs not given on the
command line are asked for without echo (on a terminal only; elsewhere --pin and --duress-pin are
required). A file that cannot be read, a record that is not one, or a missing PIN is one line naming
the file or flag, exit status 2; a refusal by the server is one line, exit status 1.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict, ParseDict, ParseError

from safepassage.api.v1 import matching_pb2 as mpb
from safepassage.api.v1 import protected_identity_pb2 as pb
from safepassage.api.v1 import protected_identity_pb2_grpc as pb_grpc
from safepassage.cli.client import ClientSetupError, Stubs

TIMEOUT_S = 120
Run = Callable[[Stubs, argparse.Namespace], None]
Add = Callable[..., argparse.ArgumentParser]


class UnusableInput(ClientSetupError):
    """A file, flag or value given on the command line cannot be used; the message names it (exit 2)."""


def _stub(stubs: Stubs) -> pb_grpc.ProtectedIdentityServiceStub:
    return pb_grpc.ProtectedIdentityServiceStub(stubs.channel)


def _read(path: Path, flag: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise UnusableInput(f"cannot read {flag} {path}: {error.strerror}") from None


def _read_text(path: Path, flag: str) -> str:
    try:
        return _read(path, flag).decode("utf-8")
    except UnicodeDecodeError:
        raise UnusableInput(f"{flag} {path} is not UTF-8 text") from None


def _credential_text(path: Path) -> str:
    data = _read(path, "--credential")
    if data.startswith(b"\x89PNG") or data.startswith(b"\xff\xd8"):
        from safepassage.credential import read_qr  # OpenCV, only when a QR image is given

        return read_qr(data)
    return data.decode("ascii", errors="replace").strip()


def _holder(args: argparse.Namespace) -> pb.HolderRef:
    if args.record_id:
        return pb.HolderRef(record_id=args.record_id)
    if args.recovery_code:
        return pb.HolderRef(recovery_code=args.recovery_code)
    if args.credential:
        return pb.HolderRef(credential=_credential_text(args.credential))
    raise UnusableInput("name the holder: --record-id, --recovery-code or --credential")


def _consent(args: argparse.Namespace, granted: list[str], refused: list[str]) -> pb.ConsentGiven:
    """The consent the holder gave, with the text they were shown (required: it goes on the receipt)."""
    if args.consent_text is None:
        raise UnusableInput(
            "--consent-text FILE is required: the consent text the holder was shown (UTF-8, in --language)"
        )
    text = _read_text(args.consent_text, "--consent-text")
    if not text.strip():
        raise UnusableInput(f"--consent-text {args.consent_text} is empty")
    return pb.ConsentGiven(language=args.language, text=text, granted=granted, refused=refused)


def _pin(given: str | None, prompt: str, flag: str) -> str:
    if given is not None:
        return given
    if not sys.stdin.isatty():
        raise UnusableInput(f"no {prompt} given: pass {flag} (standard input is not a terminal to ask on)")
    first = getpass.getpass(f"{prompt}: ")
    if getpass.getpass(f"{prompt} again: ") != first:
        raise UnusableInput(f"the two {prompt} entries differ")
    return first


def _record(path: Path) -> pb.ProtectedRecord:
    try:
        return ParseDict(json.loads(_read_text(path, "--record")), pb.ProtectedRecord())
    except (ValueError, ParseError) as error:  # JSONDecodeError is a ValueError
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UnusableInput(f"--record {path} is not a protected record (JSON): {reason}") from None


def _show(message: Any) -> None:
    shape = MessageToDict(message, preserving_proto_field_name=True)
    for photo in ("face_photo", "photo"):
        _drop_photos(shape, photo)
    print(json.dumps(shape, indent=2, ensure_ascii=False))


def _drop_photos(value: Any, key: str) -> None:
    """Photos are shown as their size: base64 on a terminal helps nobody."""
    if isinstance(value, dict):
        if isinstance(value.get(key), str):
            value[key] = f"<{len(value[key]) * 3 // 4} bytes>"
        for item in value.values():
            _drop_photos(item, key)
    elif isinstance(value, list):
        for item in value:
            _drop_photos(item, key)


def _folder(out: Path) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UnusableInput(f"cannot make the --out-dir folder {out}: {error.strerror}") from None
    return out


def _write_credential(credential: pb.Credential, out: Path) -> None:
    _folder(out)
    (out / "credential.txt").write_text(credential.text + "\n", encoding="ascii")
    (out / "credential.png").write_bytes(credential.qr_png)
    print(f"credential {credential.credential_id} (expires {credential.expires_at}): {out}/credential.png")


def enrol(stubs: Stubs, args: argparse.Namespace) -> None:
    record = _record(args.record)
    faces = [mpb.Probe(image=_read(path, "--face")) for path in args.face]
    consent = _consent(args, args.grant, args.refuse)
    pin = _pin(args.pin, "PIN", "--pin")
    duress_pin = _pin(args.duress_pin, "duress PIN", "--duress-pin")
    out = _folder(args.out)
    answer = _stub(stubs).EnrolRecord(
        pb.EnrolRecordRequest(
            gallery_id=args.gallery,
            record=record,
            faces=faces,
            consent=consent,
            pin=pin,
            duress_pin=duress_pin,
            credential_valid_days=args.valid_days or 0,
        ),
        timeout=TIMEOUT_S,
    )
    (out / "consent-receipt.json").write_text(answer.consent_receipt + "\n", encoding="utf-8")
    # The record id is on every receipt anyway; a file of its own is what `--record-id "$(cat ...)"` reads.
    (out / "record-id.txt").write_text(answer.record_id + "\n", encoding="ascii")
    print(f"record {answer.record_id} ({out}/record-id.txt)")
    print(f"recovery code (shown once, give it to the holder): {answer.recovery_code}")
    print(f"consent receipt: {out}/consent-receipt.json")
    if answer.HasField("credential"):
        _write_credential(answer.credential, args.out)


def _live(stubs: Stubs, face: Path, liveness: str) -> pb.LiveCapture:
    image = _read(face, "--face")
    return pb.LiveCapture(image=image, statement=stubs.sign_capture(image, liveness))


def _proof(stubs: Stubs, args: argparse.Namespace) -> pb.HolderProof:
    """The holder's live face and PIN, when the holder is named by a credential."""
    if not getattr(args, "face", None):
        return pb.HolderProof()
    pin = args.pin if args.pin is not None else (_pin(None, "PIN", "--pin") if args.credential else "")
    return pb.HolderProof(live=_live(stubs, args.face, args.liveness), pin=pin)


def consent(stubs: Stubs, args: argparse.Namespace) -> None:
    request = pb.GetConsentRequest(holder=_holder(args), proof=_proof(stubs, args))
    _show(_stub(stubs).GetConsent(request, timeout=TIMEOUT_S))


def _change(stubs: Stubs, args: argparse.Namespace, granted: list[str], refused: list[str]) -> None:
    answer = _stub(stubs).ChangeConsent(
        pb.ChangeConsentRequest(
            holder=_holder(args), consent=_consent(args, granted, refused), proof=_proof(stubs, args)
        ),
        timeout=TIMEOUT_S,
    )
    if args.out:
        _write_file(args.out, answer.receipt)
        print(f"receipt: {args.out}")
    if answer.erasure_receipt:
        print("'store' withdrawn: the record is erased")
        print(answer.erasure_receipt)
    else:
        _show(answer.state)


def grant(stubs: Stubs, args: argparse.Namespace) -> None:
    _change(stubs, args, args.scopes, [])


def withdraw(stubs: Stubs, args: argparse.Namespace) -> None:
    _change(stubs, args, [], args.scopes)


def credential(stubs: Stubs, args: argparse.Namespace) -> None:
    request = pb.IssueCredentialRequest(
        holder=_holder(args), valid_days=args.valid_days or 0, proof=_proof(stubs, args)
    )
    _write_credential(_stub(stubs).IssueCredential(request, timeout=TIMEOUT_S), args.out)


def change_pin(stubs: Stubs, args: argparse.Namespace) -> None:
    request = pb.ChangePinRequest(
        holder=_holder(args),
        proof=_proof(stubs, args),
        new_pin=_pin(args.new_pin, "new PIN", "--new-pin"),
        new_duress_pin=_pin(args.new_duress_pin, "new duress PIN", "--new-duress-pin"),
    )
    answer = _stub(stubs).ChangePin(request, timeout=TIMEOUT_S)
    print(f"record {answer.record_id}: PIN and duress PIN changed")


def verify_holder(stubs: Stubs, args: argparse.Namespace) -> None:
    if args.face is None:
        raise UnusableInput("verify-holder needs the holder's live --face")
    live = _live(stubs, args.face, args.liveness)
    answer = _stub(stubs).VerifyHolder(
        pb.VerifyHolderRequest(
            holder=_holder(args),
            live=mpb.Probe(image=live.image),
            live_statement=live.statement,
            pin=args.pin or "",
        ),
        timeout=TIMEOUT_S,
    )
    _show(answer)


def duplicates(stubs: Stubs, args: argparse.Namespace) -> None:
    answer = _stub(stubs).CheckDuplicate(
        pb.CheckDuplicateRequest(
            gallery_id=args.gallery, probe=mpb.Probe(image=_read(args.image, "IMAGE")), top_k=args.top_k
        ),
        timeout=TIMEOUT_S,
    )
    _show(answer)


def share(stubs: Stubs, args: argparse.Namespace) -> None:
    request = pb.ShareRecordRequest(
        holder=_holder(args), proof=_proof(stubs, args), organisation=args.organisation or ""
    )
    _show(_stub(stubs).ShareRecord(request, timeout=TIMEOUT_S))


def _write_file(out: Path, text: str) -> None:
    """A signed receipt, written after the server acted: say where it could not go, never a traceback."""
    try:
        out.write_text(text + "\n", encoding="utf-8")
    except OSError as error:
        print(text)  # the only copy of a receipt for what is already done
        raise UnusableInput(
            f"cannot write --out {out}: {error.strerror} (the receipt is printed above)"
        ) from None


def erase_record(stubs: Stubs, args: argparse.Namespace) -> None:
    request = pb.EraseRecordRequest(holder=_holder(args), proof=_proof(stubs, args))
    answer = _stub(stubs).EraseRecord(request, timeout=TIMEOUT_S)
    _write_file(args.out, answer.receipt)
    print(f"record {answer.record_id} erased ({answer.templates_removed} templates); receipt: {args.out}")


def referrals(stubs: Stubs, args: argparse.Namespace) -> None:
    request = pb.ListReferralsRequest(channels=args.channel or [], include_acknowledged=args.all)
    _show(_stub(stubs).ListReferrals(request, timeout=TIMEOUT_S))


def acknowledge(stubs: Stubs, args: argparse.Namespace) -> None:
    request = pb.AcknowledgeReferralRequest(referral_id=args.referral)
    _show(_stub(stubs).AcknowledgeReferral(request, timeout=TIMEOUT_S))


def rotate_keys(stubs: Stubs, args: argparse.Namespace) -> None:
    _show(_stub(stubs).RotateRecordKeys(pb.RotateRecordKeysRequest(), timeout=TIMEOUT_S))


def public_keys(stubs: Stubs, args: argparse.Namespace) -> None:
    answer = _stub(stubs).GetPublicKeys(pb.GetPublicKeysRequest(), timeout=TIMEOUT_S)
    _folder(args.out)
    (args.out / f"{answer.station_id}-station.pem").write_bytes(answer.station_public_pem)
    (args.out / f"{answer.issuer_id}-issuer.pem").write_bytes(answer.issuer_public_pem)
    print(f"station {answer.station_id} and issuer {answer.issuer_id} public keys written to {args.out}")


def _out_dir(parser: argparse.ArgumentParser, what: str) -> None:
    """A folder to write into: --out-dir (--out, its older spelling, still works)."""
    parser.add_argument(
        "--out-dir",
        "--out",
        dest="out",
        type=Path,
        required=True,
        metavar="DIR",
        help=f"{what} (made if missing)",
    )


def add_records_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], add: Add) -> None:
    records = sub.add_parser("records", help="protected identity records").add_subparsers(
        dest="records_action", required=True
    )
    holder = argparse.ArgumentParser(add_help=False)
    who = holder.add_mutually_exclusive_group()
    who.add_argument("--record-id", help="the record id (caseworkers of the record's organisation)")
    who.add_argument("--recovery-code", help="the holder's recovery code (proves the holder)")
    who.add_argument("--credential", type=Path, help="the holder's credential (text file or QR PNG)")
    holder.add_argument("--face", type=Path, help="the holder's live face, captured now (with --credential)")
    holder.add_argument("--pin", help="the holder's PIN (with --credential and --face)")
    holder.add_argument(
        "--liveness",
        choices=["supervised", "head_turn"],
        default="supervised",
        help="what this device checked of the live face (default supervised: a staffed desk)",
    )
    consent_text = argparse.ArgumentParser(add_help=False)
    consent_text.add_argument("--consent-text", type=Path, help="the consent text shown, UTF-8")
    consent_text.add_argument("--language", default="en", help="its BCP 47 language tag (default en)")

    def command(
        name: str, run: Run, help_text: str, *parents: argparse.ArgumentParser
    ) -> argparse.ArgumentParser:
        return add(name, run, help_text, records, parents)

    enrol_cmd = command("enrol", enrol, "enrol a protected record with consent", consent_text)
    enrol_cmd.add_argument("gallery")
    enrol_cmd.add_argument("--record", type=Path, required=True, help="the record as JSON")
    enrol_cmd.add_argument("--face", type=Path, action="append", required=True, help="a face image (repeat)")
    enrol_cmd.add_argument("--grant", action="append", default=[], metavar="SCOPE")
    enrol_cmd.add_argument("--refuse", action="append", default=[], metavar="SCOPE")
    enrol_cmd.add_argument("--pin", help="the holder's PIN, 6 digits or more (asked for on a terminal)")
    enrol_cmd.add_argument(
        "--duress-pin", help="a second PIN that answers the same and raises a protection referral"
    )
    enrol_cmd.add_argument("--valid-days", type=int, help="credential validity in days")
    _out_dir(enrol_cmd, "folder for the consent receipt, record-id.txt and the credential")
    command("consent", consent, "show a record's consent", holder)
    for name, run in (("grant", grant), ("withdraw", withdraw)):
        change = command(name, run, f"{name} consent scopes", holder, consent_text)
        change.add_argument("scopes", nargs="+", metavar="SCOPE")
        change.add_argument("--out", type=Path, metavar="FILE", help="write the signed receipt to this file")
    issue = command("credential", credential, "issue a fresh holder credential", holder)
    issue.add_argument("--valid-days", type=int)
    _out_dir(issue, "folder for credential.png and credential.txt")
    pins = command("change-pin", change_pin, "the holder changes their PIN and duress PIN", holder)
    pins.add_argument("--new-pin")
    pins.add_argument("--new-duress-pin")
    command("verify-holder", verify_holder, "verify a holder 1:1 (and a PIN for the record)", holder)
    dup = command("duplicates", duplicates, "duplicate check over consenting records")
    dup.add_argument("gallery")
    dup.add_argument("image", type=Path)
    dup.add_argument("--top-k", type=int, default=5)
    shared = command("share", share, "the record, for your organisation, if the holder named it", holder)
    shared.add_argument("organisation", nargs="?", help="your organisation (default: your certificate's)")
    gone = command("erase", erase_record, "erase a record (crypto-shredding)", holder)
    gone.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="FILE",
        help="write the signed erasure receipt to this file",
    )
    listed = command("referrals", referrals, "protection referrals on your channels")
    listed.add_argument("--channel", action="append")
    listed.add_argument("--all", action="store_true", help="include acknowledged ones")
    command("ack", acknowledge, "acknowledge a referral").add_argument("referral", type=int)
    command("rotate-keys", rotate_keys, "rotate the key-encryption key (admin)")
    _out_dir(
        command("public-keys", public_keys, "fetch the station and issuer public keys"),
        "folder for <station>-station.pem and <issuer>-issuer.pem",
    )
    offline = records.add_parser("verify-receipt", help="check a signed receipt offline")
    offline.add_argument("receipt", type=Path)
    offline.add_argument("--station-key", type=Path, required=True, help="the station's public key (PEM)")
    backup = records.add_parser("backup", help="a consistent copy of the record vault (server host)")
    backup.add_argument("--config", type=Path, help="the server's configuration file (for its key folder)")
    backup.add_argument("--data-dir", type=Path, help="override storage.data_dir (default var/safepassage)")
    backup.add_argument("--out", type=Path, required=True, help="the copy; never among the server's keys")


def run_local(args: argparse.Namespace) -> int | None:
    """The records commands that need no server; None for the others."""
    from safepassage.enrolment import ReceiptInvalid, verify_receipt

    if args.records_action == "verify-receipt":
        try:
            text = _read_text(args.receipt, "RECEIPT")
            receipt = verify_receipt(text, _read(args.station_key, "--station-key"))
        except UnusableInput as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        except ReceiptInvalid as error:
            print(f"INVALID: {error}", file=sys.stderr)
            return 1
        print(f"VALID {receipt.kind.value} receipt for record {receipt.record_id} from {receipt.station_id}")
        return 0
    if args.records_action == "backup":
        return run_backup(args)
    return None


def run_backup(args: argparse.Namespace) -> int:
    """Copy the vault, never into the keys' folder, and say which keys must not go with the copy."""
    from safepassage.core.errors import SafePassageError
    from safepassage.enrolment.vault_file import backup_vault
    from safepassage.server.config import load_config
    from safepassage.server.key_layout import backup_warning, check_backup_destination

    overrides: dict[str, object] = {} if args.data_dir is None else {"storage.data_dir": str(args.data_dir)}
    try:
        config = load_config(args.config, overrides)
        check_backup_destination(args.out, config)
        backup_vault(config.records_path, args.out)
    except SafePassageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"record vault copied to {args.out}")
    print(backup_warning(args.out, config), file=sys.stderr)
    return 0
