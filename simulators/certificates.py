"""Self-signed application instance certificates for simulators, demos and tests.

Secure industrial protocols (OPC UA first) identify both ends by X.509
certificates. A simulator needs a server certificate and the client it serves
needs its own; both are generated here, on first use, into a directory the
caller chooses: key files are never part of the repository.

The certificates follow the OPC UA application instance profile (Part 6,
6.2.2): RSA 2048 signed with SHA-256, the application URI and the host names
as subject alternative names, and the key usages the RSA security policies
need. The certificate is written in DER, the private key as unencrypted PKCS#8
PEM readable by its owner only, from its first byte (:mod:`support.private_file`).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from support.private_file import replace_private

Role = Literal["server", "client"]

KEY_BITS = 2048
# Some peers compare clocks loosely: a certificate valid from "now" may look not yet valid.
_BACKDATE = timedelta(minutes=5)
# Reused certificates must outlive a demo or test run by a comfortable margin.
_MIN_REMAINING = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class ApplicationCertificate:
    """Where one application's certificate and private key are, and the URI they name."""

    certificate: Path
    private_key: Path
    application_uri: str


def generate_application_certificate(
    directory: Path,
    name: str,
    application_uri: str,
    *,
    role: Role,
    hostnames: Sequence[str] = (),
    days: int = 365,
) -> ApplicationCertificate:
    """Create a fresh key pair and self-signed certificate as ``<name>.der`` and ``<name>.key.pem``.

    The subject alternative names hold ``application_uri`` (peers check it against
    the application description), the machine's host name, ``localhost``,
    127.0.0.1 and ``hostnames``. Existing files of that name are replaced.
    """
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    certificate = _self_signed(key, name, application_uri, role, hostnames, days)
    paths = _paths(directory, name, application_uri)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    replace_private(paths.private_key, key_pem)
    paths.certificate.write_bytes(certificate.public_bytes(serialization.Encoding.DER))
    return paths


def ensure_application_certificate(
    directory: Path,
    name: str,
    application_uri: str,
    *,
    role: Role,
    hostnames: Sequence[str] = (),
) -> ApplicationCertificate:
    """The certificate already in ``directory`` if it names ``application_uri`` and stays
    valid for another day, else a new one: a restarted simulator keeps its identity, so
    the clients that trust it keep trusting it."""
    paths = _paths(directory, name, application_uri)
    if paths.certificate.is_file() and paths.private_key.is_file():
        certificate = x509.load_der_x509_certificate(paths.certificate.read_bytes())
        if _still_usable(certificate, application_uri):
            return paths
    return generate_application_certificate(
        directory, name, application_uri, role=role, hostnames=hostnames
    )


def _paths(directory: Path, name: str, application_uri: str) -> ApplicationCertificate:
    return ApplicationCertificate(
        certificate=directory / f"{name}.der",
        private_key=directory / f"{name}.key.pem",
        application_uri=application_uri,
    )


def _still_usable(certificate: x509.Certificate, application_uri: str) -> bool:
    if certificate.not_valid_after_utc - datetime.now(UTC) < _MIN_REMAINING:
        return False
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return False
    return application_uri in names.value.get_values_for_type(x509.UniformResourceIdentifier)


def _self_signed(
    key: rsa.RSAPrivateKey,
    name: str,
    application_uri: str,
    role: Role,
    hostnames: Sequence[str],
    days: int,
) -> x509.Certificate:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "plantcore"),
        ]
    )
    dns_names = dict.fromkeys([*hostnames, socket.gethostname(), "localhost"])
    alt_names: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(application_uri),
        *(x509.DNSName(host) for host in dns_names),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    usage = ExtendedKeyUsageOID.SERVER_AUTH if role == "server" else ExtendedKeyUsageOID.CLIENT_AUTH
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
