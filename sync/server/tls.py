"""Self-signed TLS certificate for a practice server, and its SHA-256 fingerprint for pinning."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sync.server.private import create_private_file, make_private_dir


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 of the DER certificate, as colon-separated hex (what the laptop pins)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def spki_sha256(cert_pem: bytes) -> str:
    """SHA-256 of the SubjectPublicKeyInfo, hex; survives re-issuing a cert for the same key."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    der = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return digest.finalize().hex()


def make_self_signed(out_dir: Path, host: str = "127.0.0.1", days: int = 825) -> tuple[Path, Path]:
    """Write server.crt and server.key (both 0600; a folder made for them 0700) into ``out_dir``."""
    make_private_dir(out_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt = x509.DNSName(host)
    sans = [alt]
    if host not in ("localhost", "127.0.0.1"):
        sans.append(x509.DNSName("localhost"))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = out_dir / "server.crt", out_dir / "server.key"
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Created 0600 from the start (whatever the umask), so the key is never briefly readable by others.
    create_private_file(key_path, key_bytes)
    create_private_file(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path
