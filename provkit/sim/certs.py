"""Throwaway X.509 material for the local Graph-compatible server and its simulated app registrations.

``make_tls_material`` writes a CA and a server certificate for ``127.0.0.1``/``localhost``; clients trust the CA
through ``PROVKIT_CA_BUNDLE``. ``make_client_certificate`` writes the one-file PEM (key and certificate) that a user
passes as ``PROVKIT_CERT_PATH``. The thumbprint helpers compute what Entra shows for a certificate credential and
what msal puts in a client assertion's ``x5t`` / ``x5t#S256`` header.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_BACKDATE = datetime.timedelta(hours=1)
_TLS_VALIDITY = datetime.timedelta(days=3)


@dataclass(frozen=True)
class TlsMaterial:
    """Paths of the PEM files a local TLS server needs; ``ca_path`` is the bundle clients trust."""

    ca_path: Path
    cert_path: Path
    key_path: Path


def make_tls_material(directory: Path) -> TlsMaterial:
    """Write ``ca.pem``, ``server.pem`` and ``server-key.pem`` (mode 0600) into ``directory``.

    The server certificate names ``127.0.0.1`` (IP) and ``localhost`` (DNS), is valid from an hour ago for three
    days, and is signed by a CA whose private key is never written, so nothing else can be signed with it.
    Assumes ``directory`` may not exist yet; existing files of the same names are replaced.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "provkit local CA (throwaway)")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _TLS_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _TLS_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    material = TlsMaterial(
        ca_path=directory / "ca.pem",
        cert_path=directory / "server.pem",
        key_path=directory / "server-key.pem",
    )
    _write(material.ca_path, ca_cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    _write(material.cert_path, server_cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    _write(material.key_path, _private_pem(server_key), mode=0o600)
    return material


def make_client_certificate(directory: Path, common_name: str, *, valid_days: int = 365) -> tuple[Path, str]:
    """Write a self-signed RSA certificate credential as one PEM file (private key, then certificate), mode 0600.

    Returns the file's path (``<common name>.pem``, made filename-safe) and the certificate's SHA-1 thumbprint as
    upper-case hex, the form Entra shows under Certificates & secrets.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", common_name).strip("-.") or "client"
    path = directory / f"{slug}.pem"
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    _write(path, _private_pem(key) + cert_pem, mode=0o600)
    return path, thumbprint_of(cert_pem)


def certificate_pem_of(pem_bytes: bytes) -> bytes:
    """Return the first certificate in ``pem_bytes`` as PEM, without any private key that shares the file.

    Raises ``ValueError`` when there is no certificate in it.
    """
    return _first_certificate(pem_bytes).public_bytes(serialization.Encoding.PEM)


def thumbprint_of(pem_bytes: bytes) -> str:
    """Return the SHA-1 of the first certificate's DER encoding as upper-case hex (Entra's thumbprint).

    ``pem_bytes`` may also hold a private key; raises ``ValueError`` when it holds no certificate.
    """
    der = _first_certificate(pem_bytes).public_bytes(serialization.Encoding.DER)
    return hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()


def sha256_thumbprint_of(pem_bytes: bytes) -> str:
    """Return the SHA-256 of the first certificate's DER encoding as upper-case hex.

    msal sends this (base64url-encoded, as ``x5t#S256``) when given ``public_certificate`` without ``thumbprint``.
    """
    der = _first_certificate(pem_bytes).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest().upper()


def _first_certificate(pem_bytes: bytes) -> x509.Certificate:
    certificates = (
        x509.load_pem_x509_certificates(pem_bytes) if b"-----BEGIN CERTIFICATE-----" in pem_bytes else []
    )
    if not certificates:
        raise ValueError("no PEM certificate found (expected a '-----BEGIN CERTIFICATE-----' block)")
    return certificates[0]


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not cert_sign,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _private_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: Path, data: bytes, *, mode: int) -> None:
    # Open with the final mode so a key file is never readable by others, not even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.fchmod(fd, mode)  # the file may have existed with a wider mode
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def make_signing_certificate(key: rsa.RSAPrivateKey) -> x509.Certificate:
    """A certificate for the token-signing key, so the JWKS can carry ``x5c`` like Entra's does."""
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "provkit simulated token signing")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
