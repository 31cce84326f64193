"""Installing bundles onto a root: the A/B tree, refusals, dry runs, identity, and SSH plans."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware.detect.thermal import DEFAULT_MODEL
from host_tools.provision.bundle import verify_bundle
from host_tools.provision.install import (
    InstallError,
    plan_root_install,
    run_plan,
    ssh_commands,
    verify_installed,
)
from host_tools.provision.oscore import provision_oscore
from host_tools.provision.slots import Slots
from polewatch.cli import main
from tests.provision.provision_helpers import REPO, MakeBundle


def _install(bundle: Path, root: Path, key: Ed25519PublicKey, **kw: object) -> bool:
    plan = plan_root_install(verify_bundle(bundle, key), root, key, **kw)  # type: ignore[arg-type]
    run_plan(plan, dry_run=False)
    return plan.trial


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_first_install_onto_a_card_root(
    tmp_path: Path,
    make_bundle: MakeBundle,
    fleet_key_files: tuple[Path, Path],
    fleet_public: Ed25519PublicKey,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = tmp_path / "sd"
    root.mkdir()
    identity = tmp_path / "unit" / "oscore"
    provision_oscore("pole-0042", identity, tmp_path / "rx")
    bundle = make_bundle("r1")
    args = ["flash", str(bundle), "--root", str(root), "--fleet-key", str(fleet_key_files[1])]
    assert main([*args, "--identity", str(identity)]) == 0
    out = capsys.readouterr()
    assert "[1/6] verifying" in out.err and "[6/6] make slot a current" in out.err
    assert "100%" in out.err  # progress of the copy
    assert "release r1 installed" in out.out and "(committed)" in out.out

    base = root / "opt/polewatch"
    assert os.readlink(base / "current") == "slots/a" == os.readlink(base / "committed")
    slot = base / "slots/a"
    manifest = verify_installed(slot, fleet_public)  # the tree's signature verifies
    assert manifest["release"] == "r1"
    # code unpacked at the slot's root, models beside it: firmware finds its default model
    assert (slot / "firmware/runtime.py").is_file() and (slot / "polewatch/cli.py").is_file()
    assert (slot / "models/thermal" / DEFAULT_MODEL.name).is_file()
    assert (slot / "config/site.toml").read_text() == (
        tmp_path / "site-pole-0042-r1/site.toml"
    ).read_text()
    units = root / "etc/systemd/system"
    assert "WatchdogSec=30" in (units / "polewatch.service").read_text()
    wants = units / "multi-user.target.wants/polewatch.service"
    assert os.readlink(wants) == "/etc/systemd/system/polewatch.service"
    assert (units / "timers.target.wants/polewatch-health.timer").is_symlink()
    assert (root / "etc/polewatch/fleet-key.pub").read_bytes() == fleet_key_files[1].read_bytes()
    oscore = root / "var/lib/polewatch/oscore"
    for path in (oscore.parent, oscore, oscore / "secret.json"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0
    assert (oscore / "secret.json").read_bytes() == (identity / "secret.json").read_bytes()
    assert not list(base.glob("slots/.*"))  # no staging left behind
    assert main(["slot", "verify", "--root", str(root)]) == 0
    assert "slot a: release r1 verified" in capsys.readouterr().out


def test_dry_run_verifies_and_writes_nothing(
    tmp_path: Path,
    make_bundle: MakeBundle,
    fleet_key_files: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = tmp_path / "sd"
    root.mkdir()
    bundle = make_bundle()
    args = ["flash", str(bundle), "--root", str(root), "--fleet-key", str(fleet_key_files[1])]
    assert main([*args, "--dry-run"]) == 0
    out = capsys.readouterr()
    assert "would write release r1" in out.err and "would make slot a current" in out.err
    assert "WARNING: no OSCORE context" in out.err
    assert _tree(root) == []
    data = bytearray(bundle.read_bytes())
    data[1000] ^= 1
    bundle.write_bytes(bytes(data))
    assert main([*args, "--dry-run"]) == 2
    assert "refused" in capsys.readouterr().err


def test_update_goes_to_the_other_slot_and_keeps_the_identity(
    tmp_path: Path, make_bundle: MakeBundle, fleet_public: Ed25519PublicKey
) -> None:
    root = tmp_path / "sd"
    root.mkdir()
    identity = tmp_path / "oscore"
    provision_oscore("pole-0042", identity, tmp_path / "rx")
    assert _install(make_bundle("r1"), root, fleet_public, identity=identity) is False
    seq = root / "var/lib/polewatch/oscore/sequence.json"
    seq.write_text('{"next-seq": 4711}')  # the unit has been talking: counters must survive
    other = tmp_path / "other-oscore"
    provision_oscore("pole-0099", other, tmp_path / "rx")
    assert _install(make_bundle("r2"), root, fleet_public, identity=other) is True
    assert seq.read_text() == '{"next-seq": 4711}'
    assert (root / "var/lib/polewatch/oscore/secret.json").read_bytes() != (
        other / "secret.json"
    ).read_bytes()
    slots = Slots(root)
    assert slots.link("current") == "b" and slots.link("previous") == "a"
    assert slots.link("committed") == "a"  # r2 is on trial
    trial = slots.state()["trial"]
    assert trial["slot"] == "b" and trial["release"] == "r2" and trial["previous"] == "a"
    assert verify_installed(slots.slot_dir("b"), fleet_public)["release"] == "r2"
    # while r2 is on trial, nothing else goes on: the fallback must stay intact
    with pytest.raises(InstallError, match="still on trial"):
        _install(make_bundle("r3"), root, fleet_public)
    slots.commit()
    assert _install(make_bundle("r3"), root, fleet_public) is True
    assert slots.link("current") == "a" and slots.release("a") == "r3"
    assert slots.link("previous") == "b"


def test_bundle_for_another_board_or_unit_is_refused(
    tmp_path: Path, make_bundle: MakeBundle, fleet_public: Ed25519PublicKey
) -> None:
    root = tmp_path / "sd"
    root.mkdir()
    with pytest.raises(InstallError, match="built for board 'sim', not 'rpi4-lepton35'"):
        _install(make_bundle(), root, fleet_public, expected_board="rpi4-lepton35")
    _install(make_bundle("r1"), root, fleet_public)
    # the installed release says which board this unit is: a bundle for another is refused
    manifest = root / "opt/polewatch/slots/a/manifest.json"
    data = json.loads(manifest.read_text())
    data["board"] = "rpi5-mlx90640-modbus"
    manifest.write_text(json.dumps(data))
    with pytest.raises(InstallError, match="runs board 'rpi5-mlx90640-modbus'"):
        _install(make_bundle("r2"), root, fleet_public)
    data["board"] = "sim"
    manifest.write_text(json.dumps(data))
    with pytest.raises(InstallError, match="built for unit 'pole-0043'"):
        _install(make_bundle("r2", unit_id="pole-0043"), root, fleet_public)
    assert Slots(root).link("current") == "a" and not (root / "opt/polewatch/slots/b").exists()


def test_ssh_plan_copies_installs_on_the_unit_and_restarts(
    tmp_path: Path,
    make_bundle: MakeBundle,
    fleet_key_files: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    bundle = make_bundle()
    commands = ssh_commands(bundle, "pi@pole-0042.local", ssh_options=("-oPort=2222",))
    assert commands[0] == [
        "scp",
        "-oPort=2222",
        str(bundle),
        f"pi@pole-0042.local:/var/tmp/{bundle.name}",
    ]
    remote = commands[1][-1]
    assert commands[1][:3] == ["ssh", "-oPort=2222", "pi@pole-0042.local"]
    # installed by the unit's committed code, verified there with the unit's own fleet key
    assert "PYTHONPATH=/opt/polewatch/committed" in remote
    assert (
        f"flash /var/tmp/{bundle.name} --root / --fleet-key /etc/polewatch/fleet-key.pub" in remote
    )
    assert "systemctl restart polewatch.service" in commands[2][-1]
    args = ["flash", str(bundle), "--ssh", "pi@pole-0042.local", "--fleet-key"]
    assert main([*args, str(fleet_key_files[1]), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("would run [") == 3 and "scp" in out


def test_ssh_remote_command_installs_when_run_on_the_unit(
    tmp_path: Path, make_bundle: MakeBundle, fleet_public: Ed25519PublicKey
) -> None:
    """The remote half of the plan is 'polewatch flash --root /': the same code as a card."""
    import subprocess
    import sys

    root = tmp_path / "unit-root"
    root.mkdir()
    bundle = make_bundle()
    remote = ssh_commands(bundle, "pi@x")[1][-1]
    flash_args = remote.split(" -m polewatch ")[1].split(";")[0].split()
    flash_args[flash_args.index("--root") + 1] = str(root)
    flash_args[1] = str(bundle)  # what scp copied
    key = root / "etc/polewatch/fleet-key.pub"
    key.parent.mkdir(parents=True)
    from host_tools.provision.signing import public_pem

    key.write_bytes(public_pem(fleet_public))
    flash_args[flash_args.index("--fleet-key") + 1] = str(key)
    proc = subprocess.run(
        [sys.executable, "-m", "polewatch", *flash_args],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert Slots(root).link("current") == "a"
