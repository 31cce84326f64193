"""Release bundles: one signed file with everything a unit runs.

A bundle is an uncompressed tar (``*.pwb``) written canonically (fixed order, times, owners and
modes), holding::

    manifest.json     format, release, version, board, unit, and the SHA-256 and size of every file
    manifest.sig      the fleet key's Ed25519 signature over manifest.json (base64)
    wheels/*.whl      the code (polewatch, firmware, host tools, simulator), no dependencies
    requirements.txt  the wheel's dependencies, for the unit's base environment
    config/board.toml, config/site.toml, and files they name (clips, models), relative to them
    models/thermal/*.tflite  the committed thermal model
    systemd/*         polewatch.service (Type=notify, WatchdogSec=), the health check and its timer

Verifying checks the signature, then every file's hash and size, then that the bundle is exactly
the canonical tar of those files: a byte changed anywhere (a header, padding, the end) is refused,
not only one inside a file.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
import logging
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path, PurePosixPath
from typing import IO, Any, BinaryIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from firmware.errors import PolewatchError
from host_tools.provision import signing
from host_tools.provision.progress import Progress

logger = logging.getLogger(__name__)

FORMAT = "polewatch-bundle/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
SUFFIX = ".pwb"
TEMPLATES = Path(__file__).parent / "templates"
SYSTEMD_UNITS = ("polewatch.service", "polewatch-health.service", "polewatch-health.timer")
MAX_MANIFEST_BYTES = 1 << 20
CHUNK = 1 << 16
# What a source tree copy for the wheel build leaves out (caches, builds, the venv, data).
_SKIP = (".git", ".venv", "build", "dist", "var", "*.egg-info", "__pycache__", ".*_cache")
_WHEEL_RE = re.compile(r"^polewatch-(?P<version>[^-]+)-[^-]+-[^-]+-[^-]+\.whl$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+)*$")


class BundleError(PolewatchError, ValueError):
    """A bundle cannot be built, or is not one this fleet signed exactly as it is."""


@dataclass(frozen=True)
class Entry:
    """One file of a bundle: its name inside, and where its bytes come from."""

    name: str
    source: Path | bytes

    @property
    def size(self) -> int:
        """Its size in bytes."""
        return len(self.source) if isinstance(self.source, bytes) else self.source.stat().st_size

    def open(self) -> BinaryIO:
        """Its bytes, as a file."""
        if isinstance(self.source, bytes):
            return io.BytesIO(self.source)
        return self.source.open("rb")


# --- building -------------------------------------------------------------------------------


def source_root() -> Path | None:
    """The source tree this code runs from, if it is one (a checkout, not an installed wheel)."""
    root = Path(__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file():
        return None
    name = tomllib.loads(pyproject.read_text()).get("project", {}).get("name")
    return root if name == "polewatch" else None


def build_wheel(src: Path, out_dir: Path) -> Path:
    """Build the code's wheel (no dependencies) from a copy of ``src``; return its path.

    The copy keeps the build's scratch files out of the source tree; no build isolation, so no
    network is needed (the project's setuptools is used).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="polewatch-wheel-") as tmp:
        copy = Path(tmp) / "src"
        shutil.copytree(src, copy, ignore=shutil.ignore_patterns(*_SKIP), symlinks=True)
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        cmd += ["--quiet", "--disable-pip-version-check", str(copy), "-w", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wheels = sorted(Path(tmp).glob("polewatch-*.whl"))
        if proc.returncode != 0 or not wheels:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
            raise BundleError(f"{src}: building the wheel failed ({proc.returncode}): {tail}")
        dest = out_dir / wheels[0].name
        shutil.copyfile(wheels[0], dest)
    logger.info("wheel %s built from %s", dest.name, src)
    return dest


def wheel_requirements(wheel: Path) -> list[str]:
    """The wheel's dependencies (``Requires-Dist`` without extras), one requirement a line."""
    with zipfile.ZipFile(wheel) as zf:
        meta = next((n for n in zf.namelist() if n.endswith(".dist-info/METADATA")), None)
        if meta is None:
            raise BundleError(f"{wheel}: no METADATA in the wheel")
        message = Parser().parsestr(zf.read(meta).decode())
    return [r for r in message.get_all("Requires-Dist", []) if "extra ==" not in r]


def _referenced(data: dict[str, Any], where: str) -> Iterator[tuple[str, str]]:
    """(key path, relative path) of every file a board or site config names."""
    thermal = data.get("thermal", {})
    if isinstance(thermal, dict) and isinstance(thermal.get("path"), str):
        yield f"{where}: thermal.path", thermal["path"]
    detection = data.get("detection", {})
    for table, keys in (("visible", ("model", "labels")), ("thermal_model", ("model",))):
        section = detection.get(table, {}) if isinstance(detection, dict) else {}
        for key in keys:
            if isinstance(section, dict) and isinstance(section.get(key), str):
                yield f"{where}: detection.{table}.{key}", section[key]
    profiles = data.get("deterrence", {}).get("profiles", {})
    for name, profile in profiles.items() if isinstance(profiles, dict) else []:
        for i, step in enumerate(profile.get("steps", []) if isinstance(profile, dict) else []):
            if isinstance(step, dict) and isinstance(step.get("voice"), str):
                yield f"{where}: deterrence.profiles.{name}.steps[{i}].voice", step["voice"]


def collect(board_path: Path, site_path: Path, wheel: Path) -> tuple[list[Entry], dict[str, str]]:
    """The files of a bundle for this board, site and wheel, and its manifest's description."""
    from firmware.config.load import load_pair, read_toml
    from firmware.detect.thermal import DEFAULT_MODEL

    board, site = load_pair(board_path, site_path)  # a bundle carries valid configs only
    match = _WHEEL_RE.match(wheel.name)
    if match is None:
        raise BundleError(f"{wheel}: not a polewatch wheel (polewatch-VERSION-*.whl)")
    requirements = "".join(f"{r}\n" for r in wheel_requirements(wheel))
    entries = [
        Entry(f"wheels/{wheel.name}", wheel),
        Entry("requirements.txt", requirements.encode()),
        Entry("config/board.toml", board_path),
        Entry("config/site.toml", site_path),
    ]
    for path, where in ((board_path, "board"), (site_path, "site")):
        for key, rel in _referenced(read_toml(path), f"{path.name} ({where})"):
            pure = PurePosixPath(rel)
            if pure.is_absolute() or ".." in pure.parts or not _NAME_RE.match(rel):
                raise BundleError(
                    f"{key}: {rel!r}: a bundled file must be named relative to its config's "
                    "folder, inside it"
                )
            name = f"config/{pure}"
            if all(e.name != name for e in entries):
                entries.append(Entry(name, path.parent / pure))
    model_cfg = site.detection.thermal_model
    if board.thermal is not None and model_cfg.enabled and model_cfg.model is None:
        if not DEFAULT_MODEL.is_file():
            raise BundleError(f"{DEFAULT_MODEL}: the thermal model is missing (make models)")
        entries.append(Entry(f"models/thermal/{DEFAULT_MODEL.name}", DEFAULT_MODEL))
    for unit in SYSTEMD_UNITS:
        entries.append(Entry(f"systemd/{unit}", TEMPLATES / unit))
    for e in entries:
        if isinstance(e.source, Path) and not e.source.is_file():
            raise BundleError(f"{e.source}: no such file (bundled as {e.name})")
    info = {
        "version": match["version"],
        "board": board.board.name,
        "platform": board.board.platform,
        "unit": site.unit.id,
    }
    return entries, info


def build_bundle(
    out: Path,
    board_path: Path,
    site_path: Path,
    wheel: Path,
    key: Ed25519PrivateKey,
    release: str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write a signed bundle to ``out``; return its manifest."""
    entries, info = collect(board_path, site_path, wheel)
    total = sum(e.size for e in entries)
    if progress:
        progress.step(f"hashing {len(entries)} files", total)
    files = []
    for e in entries:
        digest = hashlib.sha256()
        with e.open() as f:
            for chunk in iter(functools.partial(f.read, CHUNK), b""):
                digest.update(chunk)
                if progress:
                    progress.advance(len(chunk))
        files.append({"path": e.name, "size": e.size, "sha256": digest.hexdigest()})
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "release": release or info["version"],
        **info,
        "created_s": int(time.time()),
        "signing_key": signing.key_id(key.public_key()),
        "files": files,
    }
    manifest_bytes = json.dumps(manifest, indent=1, sort_keys=True).encode() + b"\n"
    signature = base64.b64encode(signing.sign(manifest_bytes, key)) + b"\n"
    all_entries = [Entry(MANIFEST, manifest_bytes), Entry(SIGNATURE, signature), *entries]
    if progress:
        progress.step(f"writing {out}", sum(e.size for e in all_entries))
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with partial.open("wb") as f:
        _write_canonical(f, ((e.name, e.size, e.open) for e in all_entries), progress)
    partial.replace(out)
    logger.info(
        "bundle %s: release %s for board %s, unit %s, %d files, signed by %s",
        out,
        manifest["release"],
        manifest["board"],
        manifest["unit"],
        len(files),
        manifest["signing_key"],
    )
    return manifest


class _Counting(io.RawIOBase):
    """A reader that reports what it reads."""

    def __init__(self, inner: IO[bytes], progress: Progress | None) -> None:
        self.inner, self.progress = inner, progress

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.inner.read(size)
        if self.progress:
            self.progress.advance(len(data))
        return data


class _Hasher:
    """A write-only sink that hashes what it is given."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return len(data)


def _write_canonical(
    out: Any,
    entries: Iterable[tuple[str, int, Callable[[], IO[bytes]]]],
    progress: Progress | None = None,
) -> None:
    """The canonical tar of ``entries``: same files, same bytes, wherever and whenever written."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
        for name, size, opener in entries:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = size, 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with opener() as f:
                tar.addfile(info, _Counting(f, progress))


# --- verifying ------------------------------------------------------------------------------


class VerifiedBundle:
    """A bundle whose signature, hashes and form were checked; its files can be copied out."""

    def __init__(self, path: Path, manifest: dict[str, Any], manifest_bytes: bytes, sig: bytes):
        self.path, self.manifest = path, manifest
        self.manifest_bytes, self.signature = manifest_bytes, sig
        self.files: dict[str, dict[str, Any]] = {f["path"]: f for f in manifest["files"]}

    @property
    def release(self) -> str:
        """The release label."""
        return str(self.manifest["release"])

    @property
    def board(self) -> str:
        """The board config's name it was built for."""
        return str(self.manifest["board"])

    @property
    def unit(self) -> str:
        """The unit id of its site config."""
        return str(self.manifest["unit"])

    @property
    def wheel(self) -> str:
        """The wheel's name inside the bundle."""
        return next(p for p in self.files if p.startswith("wheels/"))

    def read(self, name: str) -> bytes:
        """One file's bytes, checked again against the manifest (the file may have changed)."""
        sink = io.BytesIO()
        self.copy(name, sink)
        return sink.getvalue()

    def copy(self, name: str, out: IO[bytes], progress: Progress | None = None) -> None:
        """Copy one file's bytes to ``out``, checking its hash on the way."""
        meta = self.files[name]
        digest = hashlib.sha256()
        with tarfile.open(self.path, mode="r:") as tar:
            f = tar.extractfile(name)
            if f is None:
                raise BundleError(f"{self.path}: {name} is missing")
            for chunk in iter(lambda: f.read(CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
                if progress:
                    progress.advance(len(chunk))
        if digest.hexdigest() != meta["sha256"]:
            raise BundleError(f"{self.path}: {name} changed since it was verified")


def _fail(path: Path, what: str) -> BundleError:
    return BundleError(f"{path}: refused: {what}")


def verify_bundle(
    path: Path, key: Ed25519PublicKey, progress: Progress | None = None
) -> VerifiedBundle:
    """Check a bundle completely; return it, or raise :class:`BundleError` saying what is wrong."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise BundleError(f"{path}: no such bundle") from None
    if progress:
        progress.step(f"verifying {path.name}", size)
    whole = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            whole.update(chunk)
            if progress:
                progress.advance(len(chunk))
    try:
        with tarfile.open(path, mode="r:") as tar:
            members = tar.getmembers()
            names = [m.name for m in members]
            if names[:2] != [MANIFEST, SIGNATURE]:
                raise _fail(path, f"it must start with {MANIFEST} and {SIGNATURE}")
            if members[0].size > MAX_MANIFEST_BYTES:
                raise _fail(path, f"{MANIFEST} is too large")
            manifest_bytes = _member(tar, members[0])
            sig_text = _member(tar, members[1])
            try:
                sig = base64.b64decode(sig_text.strip(), validate=True)
            except ValueError:
                raise _fail(path, f"{SIGNATURE} is not base64") from None
            try:
                signing.verify(manifest_bytes, sig, key, str(path))
            except signing.SignatureError as exc:
                raise _fail(path, str(exc)) from None
            manifest = json.loads(manifest_bytes)
            if manifest.get("format") != FORMAT:
                raise _fail(path, f"format {manifest.get('format')!r}, not {FORMAT}")
            listed = [f["path"] for f in manifest["files"]]
            if names[2:] != listed:
                raise _fail(path, "its files are not the ones its manifest lists")
            for member, meta in zip(members[2:], manifest["files"], strict=True):
                if not member.isreg() or member.size != meta["size"]:
                    raise _fail(path, f"{member.name}: not a file of the manifest's size")
                if not _NAME_RE.match(member.name):
                    raise _fail(path, f"{member.name}: not an allowed name")
                digest = hashlib.sha256()
                data = tar.extractfile(member)
                assert data is not None  # a regular member
                for chunk in iter(functools.partial(data.read, CHUNK), b""):
                    digest.update(chunk)
                if digest.hexdigest() != meta["sha256"]:
                    raise _fail(path, f"{member.name}: SHA-256 does not match the manifest")
            # Same files, so the canonical tar of them must be this file, byte for byte.
            sink = _Hasher()
            if progress:
                progress.expect(sum(m.size for m in members))

            def opener(m: tarfile.TarInfo) -> Callable[[], IO[bytes]]:
                return lambda: tar.extractfile(m)  # type: ignore[return-value]

            _write_canonical(sink, ((m.name, m.size, opener(m)) for m in members), progress)
    except (tarfile.TarError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(path, f"not a readable bundle: {exc}") from exc
    except (KeyError, TypeError) as exc:
        raise _fail(path, f"malformed manifest: {exc}") from exc
    if sink.digest.digest() != whole.digest():
        raise _fail(path, "it is not byte for byte the bundle that was signed")
    bundle = VerifiedBundle(path, manifest, manifest_bytes, sig)
    logger.info(
        "bundle %s verified: release %s, board %s, unit %s, key %s",
        path,
        bundle.release,
        bundle.board,
        bundle.unit,
        signing.key_id(key),
    )
    return bundle


def _member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    f = tar.extractfile(member)
    if f is None:
        raise tarfile.TarError(f"{member.name} is not a file")
    return f.read()
