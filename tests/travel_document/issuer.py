"""A test issuing state: a CSCA and Document Signers made with pyca/cryptography's x509 builder, and
chips (DG1, DG2, SOD) written with the room's own writers over real photos."""

from __future__ import annotations

import datetime
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from PIL import Image

from safepassage.travel_document import (
    FaceImage,
    FaceRecordFormat,
    ImageEncoding,
    write_dg1,
    write_dg2,
    write_sod,
)

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
NOW = datetime.datetime.now(datetime.UTC)
YEAR = datetime.timedelta(days=365)
# ICAO 9303 part 3's specimen passport (Anna Maria Eriksson, Utopia).
SPECIMEN_TD3 = (
    "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<",
    "L898902C36UTO7408122F1204159ZE184226B<<<<<10",
)


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str, country: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, country),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


@dataclass(frozen=True)
class Authority:
    """A certificate and its key: a CSCA, or a Document Signer (or a master list signer) under one."""

    key: PrivateKey = field(repr=False)
    certificate: x509.Certificate

    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


def _certificate(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    signer: PrivateKey,
    *,
    ca: bool,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    return builder.sign(signer, hashes.SHA256())


def make_csca(
    country: str = "UT",
    name: str = "CSCA Utopia",
    key: PrivateKey | None = None,
    not_before: datetime.datetime = NOW - 5 * YEAR,
    not_after: datetime.datetime = NOW + 10 * YEAR,
) -> Authority:
    key = key or ec_key()
    subject = _name(name, country)
    certificate = _certificate(
        subject, subject, key.public_key(), key, ca=True, not_before=not_before, not_after=not_after
    )
    return Authority(key, certificate)


def make_signer(
    csca: Authority,
    name: str = "Document Signer Utopia 1",
    key: PrivateKey | None = None,
    not_before: datetime.datetime = NOW - YEAR,
    not_after: datetime.datetime = NOW + 5 * YEAR,
) -> Authority:
    """A Document Signer (or master list signer) certificate that ``csca`` issues."""
    key = key or ec_key()
    country = csca.certificate.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value
    certificate = _certificate(
        _name(name, str(country)),
        csca.certificate.subject,
        key.public_key(),
        csca.key,
        ca=False,
        not_before=not_before,
        not_after=not_after,
    )
    return Authority(key, certificate)


def jpeg_2000(photo: bytes, codestream: bool = False) -> bytes:
    """A photo re-encoded as chips hold it: lossy JPEG 2000 (a JP2 file, or a bare codestream)."""
    out = io.BytesIO()
    with Image.open(io.BytesIO(photo)) as image:
        image.convert("RGB").save(
            out, "JPEG2000", quality_mode="rates", quality_layers=[12], no_jp2=codestream, irreversible=True
        )
    return out.getvalue()


def portrait(
    photo: bytes, encoding: ImageEncoding, record_format: FaceRecordFormat, codestream: bool = False
) -> FaceImage:
    data = photo if encoding is ImageEncoding.JPEG else jpeg_2000(photo, codestream)
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
    return FaceImage(record_format, encoding, data, width, height)


@dataclass(frozen=True)
class Chip:
    """What a reader application hands over after reading a chip."""

    dg1: bytes
    dg2: bytes
    sod: bytes


def issue_chip(
    photo: bytes,
    signer: Authority,
    *,
    encoding: ImageEncoding = ImageEncoding.JPEG,
    record_format: FaceRecordFormat = FaceRecordFormat.ISO_19794_5,
    mrz: tuple[str, ...] = SPECIMEN_TD3,
    signing_time: datetime.datetime | None = NOW,
    hash_algorithm: str = "sha256",
    pss: bool = False,
    hashes: Mapping[int, bytes] | None = None,
) -> Chip:
    """DG1 and DG2 for this photo, and a SOD over them signed by ``signer`` (``hashes`` overrides some)."""
    dg1 = write_dg1(mrz)
    dg2 = write_dg2([portrait(photo, encoding, record_format)], record_format)
    sod = write_sod(
        {1: dg1, 2: dg2},
        signer.key,
        signer.certificate,
        hash_algorithm=hash_algorithm,
        pss=pss,
        signing_time=signing_time,
        hashes=hashes,
    )
    return Chip(dg1, dg2, sod)


def photo_of(faces_dir: Path, person: str, n: int = 1) -> bytes:
    """The n-th LFW photo of a person (1-based, in name order)."""
    return sorted((faces_dir / "lfw" / person).glob("*.jpg"))[n - 1].read_bytes()
