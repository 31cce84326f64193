"""Release bundles: built, signed and verified; a byte changed anywhere is refused."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from firmware.detect.thermal import DEFAULT_MODEL
from host_tools.provision.bundle import MANIFEST, BundleError, build_bundle, verify_bundle
from host_tools.provision.progress import Progress
from polewatch.cli import main
from tests.provision.provision_helpers import SIM_BOARD, MakeBundle, write_site

MODEL = f"models/thermal/{DEFAULT_MODEL.name}"


def _members(path: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_bundle_holds_every_part_and_verifies(
    make_bundle: MakeBundle, fleet_public: Ed25519PublicKey
) -> None:
    path = make_bundle("2025.11.1")
    bundle = verify_bundle(path, fleet_public)
    names = set(bundle.files)
    assert bundle.release == "2025.11.1" and bundle.board == "sim" and bundle.unit == "pole-0042"
    assert {"config/board.toml", "config/site.toml", "requirements.txt"} <= names
    assert MODEL in names
    assert {f"systemd/{u}" for u in ("polewatch.service", "polewatch-health.service")} <= names
    assert bundle.wheel.startswith("wheels/polewatch-") and bundle.wheel.endswith(".whl")
    # every file's hash is in the signed manifest, and the bytes match it
    for name, meta in bundle.files.items():
        assert len(meta["sha256"]) == 64
        assert len(bundle.read(name)) == meta["size"]
    service = bundle.read("systemd/polewatch.service").decode()
    assert "Type=notify" in service and "WatchdogSec=" in service
    requirements = bundle.read("requirements.txt").decode().splitlines()
    assert any(r.startswith("aiocoap") for r in requirements)
    assert not any("extra ==" in r for r in requirements)


def test_bundles_are_canonical(
    tmp_path: Path, wheel: Path, fleet_key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = write_site(tmp_path / "site.toml")
    monkeypatch.setattr("time.time", lambda: 1_800_000_000.0)
    a, b = tmp_path / "a.pwb", tmp_path / "b.pwb"
    build_bundle(a, SIM_BOARD, site, wheel, fleet_key, "r1")
    build_bundle(b, SIM_BOARD, site, wheel, fleet_key, "r1")
    assert a.read_bytes() == b.read_bytes()  # Ed25519 signatures are deterministic too


def _header_field(path: Path, member: str, field_at: int, value: bytes) -> None:
    """Rewrite a header field of a member and fix the header's checksum (a careful forger)."""
    offset = _members(path)[member].offset
    data = bytearray(path.read_bytes())
    header = data[offset : offset + 512]
    header[field_at : field_at + len(value)] = value
    header[148:156] = b" " * 8
    header[148:155] = b"%06o\0" % sum(header) + b" "
    data[offset : offset + 512] = header
    path.write_bytes(bytes(data))


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _in_data(member: str, at: float) -> Callable[[Path], None]:
    def tamper(path: Path) -> None:
        m = _members(path)[member]
        _flip(path, m.offset_data + int(m.size * at))

    return tamper


def _padding_after(member: str) -> Callable[[Path], None]:
    def tamper(path: Path) -> None:
        m = _members(path)[member]
        _flip(path, m.offset_data + m.size + 3)  # within the 512-byte block, after the data

    return tamper


def _wheel_name(path: Path) -> str:
    return next(n for n in _members(path) if n.startswith("wheels/"))


TAMPERS: dict[str, Callable[[Path], None]] = {
    "manifest": _in_data(MANIFEST, 0.5),
    "signature": _in_data("manifest.sig", 0.3),
    "site config": _in_data("config/site.toml", 0.4),
    "model": _in_data(MODEL, 0.7),
    "wheel": lambda p: _in_data(_wheel_name(p), 0.5)(p),
    "padding": _padding_after("config/board.toml"),
    "header, checksum fixed": lambda p: _header_field(p, "requirements.txt", 265, b"mallory"),
    "header, checksum not fixed": lambda p: _flip(p, _members(p)["config/site.toml"].offset + 140),
    "end of archive": lambda p: _flip(p, p.stat().st_size - 1),
}


@pytest.mark.parametrize("where", TAMPERS)
def test_one_byte_changed_anywhere_is_refused(
    make_bundle: MakeBundle, fleet_public: Ed25519PublicKey, where: str
) -> None:
    path = make_bundle()
    verify_bundle(path, fleet_public)
    TAMPERS[where](path)
    with pytest.raises(BundleError, match="refused"):
        verify_bundle(path, fleet_public)


def test_another_fleets_key_is_refused(
    make_bundle: MakeBundle, fleet_public: Ed25519PublicKey
) -> None:
    path = make_bundle(key=Ed25519PrivateKey.generate())
    with pytest.raises(BundleError, match="signature does not verify"):
        verify_bundle(path, fleet_public)


def test_resigned_manifest_with_wrong_hash_is_refused(
    tmp_path: Path,
    make_bundle: MakeBundle,
    fleet_key: Ed25519PrivateKey,
    fleet_public: Ed25519PublicKey,
) -> None:
    """Even a correctly signed manifest is refused when a file does not match it."""
    import base64
    import io

    from host_tools.provision.bundle import _write_canonical

    path = make_bundle()
    with tarfile.open(path) as tar:
        members = tar.getmembers()
        blobs = {m.name: tar.extractfile(m).read() for m in members}  # type: ignore[union-attr]
    manifest = json.loads(blobs[MANIFEST])
    manifest["files"][-1]["sha256"] = "0" * 64
    blobs[MANIFEST] = json.dumps(manifest).encode()
    blobs["manifest.sig"] = base64.b64encode(fleet_key.sign(blobs[MANIFEST]))
    forged = tmp_path / "forged.pwb"
    with forged.open("wb") as f:
        entries = [(n, len(b), (lambda b=b: io.BytesIO(b))) for n, b in blobs.items()]
        _write_canonical(f, entries)
    with pytest.raises(BundleError, match="SHA-256 does not match"):
        verify_bundle(forged, fleet_public)


def test_site_naming_a_file_outside_its_folder_is_refused(
    tmp_path: Path, wheel: Path, fleet_key: Ed25519PrivateKey, repo: Path
) -> None:
    site = write_site(tmp_path / "site" / "site.toml")
    text = site.read_text().replace(
        "[[rules]]",
        '[detection.thermal_model]\nmodel = "../model.tflite"\n\n[[rules]]',
    )
    site.write_text(text)
    (tmp_path / "model.tflite").write_bytes((repo / MODEL).read_bytes())
    with pytest.raises(BundleError, match="relative to its config's folder"):
        build_bundle(tmp_path / "x.pwb", SIM_BOARD, site, wheel, fleet_key)


def test_bundle_cli_builds_with_progress_and_verifies(
    tmp_path: Path,
    wheel: Path,
    fleet_key_files: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    site = write_site(tmp_path / "site.toml")
    out = tmp_path / "pole.pwb"
    args = ["bundle", "--board", str(SIM_BOARD), "--site", str(site), "--wheel", str(wheel)]
    args += ["--signing-key", str(fleet_key_files[0]), "--release", "r7", "-o", str(out)]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "[1/2] hashing" in captured.err and "[2/2] writing" in captured.err
    assert "100%" in captured.err
    assert "release r7 for board sim, unit pole-0042" in captured.out
    assert main(["bundle", "--verify", str(out), "--fleet-key", str(fleet_key_files[1])]) == 0
    assert ": OK: release r7" in capsys.readouterr().out
    _flip(out, 700)
    assert main(["bundle", "--verify", str(out), "--fleet-key", str(fleet_key_files[1])]) == 2
    assert "refused" in capsys.readouterr().err


def test_progress_draws_a_bar_on_a_terminal() -> None:
    import io

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    p = Progress(1, stream=out)
    p.step("copying", 1000)
    for _ in range(4):
        p.advance(250)
    p.close()
    text = out.getvalue()
    assert text.startswith("[1/1] copying\n")
    assert "\r" in text and "100%" in text and text.endswith("\n")
