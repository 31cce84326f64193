"""The fleet's Ed25519 signing key: making it, loading it, signing and verifying bundle manifests.

The private key signs releases and stays with whoever builds them (PEM, PKCS#8, owner-only); the
public key goes with every technician and onto every unit (``/etc/polewatch/fleet-key.pub``), so
that both the flashing tool and the unit refuse a bundle that the fleet did not sign.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from firmware.errors import PolewatchError

logger = logging.getLogger(__name__)


class SignatureError(PolewatchError, ValueError):
    """A key cannot be loaded, or a signature does not verify."""


def generate_key(private_path: Path) -> Path:
    """Create a new fleet key pair: ``private_path`` (owner-only) and ``private_path``.pub."""
    public_path = private_path.with_name(private_path.name + ".pub")
    for path in (private_path, public_path):
        if path.exists():
            raise FileExistsError(f"{path}: already exists; not overwriting a key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    private_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public_path.write_bytes(public_pem(key.public_key()))
    logger.info("fleet key %s created in %s", key_id(key.public_key()), private_path)
    return public_path


def public_pem(key: Ed25519PublicKey) -> bytes:
    """A public key as PEM (SubjectPublicKeyInfo)."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Load the fleet's private key (PEM, unencrypted)."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise SignatureError(f"{path}: no such signing key") from None
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"{path}: not a PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(f"{path}: not an Ed25519 key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Load a fleet public key (PEM)."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except FileNotFoundError:
        raise SignatureError(f"{path}: no such public key") from None
    except ValueError as exc:
        raise SignatureError(f"{path}: not a PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError(f"{path}: not an Ed25519 public key")
    return key


def key_id(key: Ed25519PublicKey) -> str:
    """A short fingerprint of a public key (first 8 bytes of the SHA-256 of its raw form)."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign(data: bytes, key: Ed25519PrivateKey) -> bytes:
    """The Ed25519 signature of ``data``."""
    return key.sign(data)


def verify(data: bytes, signature: bytes, key: Ed25519PublicKey, what: str) -> None:
    """Raise :class:`SignatureError` unless ``signature`` is the key's over ``data``."""
    try:
        key.verify(signature, data)
    except InvalidSignature:
        raise SignatureError(
            f"{what}: the signature does not verify with fleet key {key_id(key)}"
        ) from None
