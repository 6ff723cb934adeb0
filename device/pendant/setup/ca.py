"""The device's CA as the app's web server hands it to a phone: `/ca.crt` and its fingerprint.

A phone trusts the pendant's certificate once it trusts the CA that `pendant.setup.provision` made
for this device (name-constrained to the device's own names; its key is gone). The web server
serves that CA's certificate, DER-encoded, as `application/x-x509-ca-cert`, the type iOS
offers to install as a profile and Android saves as a certificate to install from Settings;
the trust page (`web/trust.html`) shows its SHA-256 fingerprint, which `pendant pair` prints on
the pendant's console, so the wearer can compare the two before trusting it.
"""

from __future__ import annotations

import hashlib
import ssl
from dataclasses import dataclass
from pathlib import Path

CONTENT_TYPE = "application/x-x509-ca-cert"
PATH = "/ca.crt"
# What a phone saves it as (Android lists downloads by name).
FILENAME = "pendant-ca.crt"


class CaFileError(ValueError):
    """The CA file cannot be served; the message names the file and what is wrong."""


def fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate, as a phone's certificate screen shows it (AB:CD:...)."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


@dataclass(frozen=True)
class DeviceCa:
    """The CA certificate (DER) and its fingerprint, read once when the server starts (the
    service's credential is a copy made at start; a new CA means a restart anyway)."""

    der: bytes
    sha256: str

    @classmethod
    def load(cls, path: Path) -> DeviceCa:
        """From a PEM file (what provisioning writes); CaFileError if it is not one."""
        try:
            text = Path(path).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not a PEM file"
            raise CaFileError(f"{path}: {reason or exc} (--ca)") from None
        if "-----BEGIN CERTIFICATE-----" not in text:
            raise CaFileError(f"{path}: not a PEM certificate (--ca)")
        try:
            der = ssl.PEM_cert_to_DER_cert(text.strip())
        except ValueError:
            raise CaFileError(f"{path}: not a PEM certificate (--ca)") from None
        return cls(der, fingerprint(der))
