"""OSCORE security contexts (RFC 8613) on disk, in aiocoap's ``FilesystemSecurityContext`` format.

A context is a directory: ``settings.json`` (sender and recipient ids, algorithm),
``secret.json`` (master secret and salt) and ``sequence.json`` (written by aiocoap: the next
sender sequence number, reserved ahead in chunks so that a crash never reuses one, and the replay
window). The directory is owner-only; a context readable by others is refused.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

from aiocoap.oscore import FilesystemSecurityContext

from firmware.errors import PolewatchError

logger = logging.getLogger(__name__)

ALGORITHM = "AES-CCM-16-64-128"  # the OSCORE default: 8-byte tag, 13-byte nonce
MAX_ID_BYTES = 7  # the nonce length minus 6, for this algorithm


class SecurityError(PolewatchError, PermissionError):
    """A security context is missing, malformed or not private."""


def write_context(
    directory: Path, sender_id: bytes, recipient_id: bytes, secret: bytes, salt: bytes
) -> None:
    """Create a context directory, owner-only, for one side of a pair."""
    if max(len(sender_id), len(recipient_id)) > MAX_ID_BYTES:
        raise ValueError(f"OSCORE ids are at most {MAX_ID_BYTES} bytes")
    directory.mkdir(parents=True, exist_ok=False, mode=0o700)
    os.chmod(directory, 0o700)
    files = {
        "settings.json": {
            "sender-id_hex": sender_id.hex(),
            "recipient-id_hex": recipient_id.hex(),
            "algorithm": ALGORITHM,
        },
        "secret.json": {"secret_hex": secret.hex(), "salt_hex": salt.hex()},
    }
    for name, content in files.items():
        fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(content, f)
            f.write("\n")


def load_context(directory: Path) -> FilesystemSecurityContext:
    """Open a context for use; only one process may hold it at a time."""
    secret = directory / "secret.json"
    if not secret.exists():
        raise SecurityError(f"{directory}: no OSCORE security context (secret.json missing)")
    for path in (directory, secret):
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SecurityError(
                f"{path}: readable by others (mode {stat.filemode(mode)}); it must be owner-only"
            )
    try:
        return FilesystemSecurityContext(str(directory))
    except FilesystemSecurityContext.LoadError as exc:
        raise SecurityError(f"{directory}: bad OSCORE context: {exc}") from exc
    except (OSError, ValueError, KeyError) as exc:  # the lock is held, or the files are damaged
        raise SecurityError(f"{directory}: cannot open the OSCORE context: {exc}") from exc


def close_context(ctx: FilesystemSecurityContext) -> None:
    """Persist the exact sequence number and replay window, and release the context's lock.

    aiocoap does this when the object is collected; a unit that restarts its uplink in the same
    process (tests, the simulator) must not wait for the garbage collector.
    """
    if getattr(ctx, "lockfile", None) is not None:
        ctx._destroy()
