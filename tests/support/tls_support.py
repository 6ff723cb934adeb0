"""Throwaway certificate authorities for the tests of TLS to the home broker, made with openssl.

`make_ca` makes a CA; `make_server` a server certificate for 127.0.0.1 and localhost signed by
it. Two CAs give a broker whose certificate the client must refuse.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

OPENSSL_TIMEOUT_S = 60

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="apt install openssl")


@dataclass(frozen=True)
class Ca:
    cert: Path
    key: Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=OPENSSL_TIMEOUT_S)


def make_ca(folder: Path, name: str = "ca") -> Ca:
    """A CA certificate and key in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = Ca(folder / f"{name}.crt", folder / f"{name}.key")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-subj", f"/CN=test {name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-days", "2", "-keyout", str(ca.key), "-out", str(ca.cert))  # fmt: skip
    return ca


def make_server(folder: Path, ca: Ca, name: str = "server") -> tuple[Path, Path]:
    """(certificate, key) for 127.0.0.1 and localhost, signed by `ca`."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key, csr = (folder / f"{name}.{ext}" for ext in ("crt", "key", "csr"))
    ext = folder / f"{name}.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(csr))  # fmt: skip
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
             "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))  # fmt: skip
    key.chmod(0o600)
    return cert, key
