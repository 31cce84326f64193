"""``polewatch bundle`` and ``polewatch slot``, and the bundle side of ``polewatch flash``."""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from host_tools.provision.progress import Progress
from polewatch.helptext import ExampleFormatter

logger = logging.getLogger(__name__)

BUNDLE_EXAMPLE = """examples:
  polewatch bundle --keygen keys/fleet.key        # once: keys/fleet.key (secret), .pub (share)
  polewatch bundle --board board_configs/rpi4-lepton35.toml --site units/pole-0003/site.toml \\
      --signing-key keys/fleet.key --release 2025.11.1 -o build/pole-0003.pwb
  polewatch bundle --verify build/pole-0003.pwb --fleet-key keys/fleet.key.pub
"""

SLOT_EXAMPLE = """examples:
  polewatch slot status --root /media/$USER/rootfs   # on a mounted SD card
  polewatch slot health-check --root / --restart     # what polewatch-health.timer runs
  polewatch slot rollback --root / --restart         # back to the previous release by hand

A/B layout (under ROOT): opt/polewatch/slots/{a,b}/ hold one release each; 'current' is the one
polewatch.service runs, 'previous' the rollback target, 'committed' the last that passed its
health check; state.json holds the release on trial. See docs/bundle.md.
"""


def add_bundle_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add the ``bundle`` subcommand; return its parser."""
    p = sub.add_parser(
        "bundle",
        help="build a signed release bundle for a unit (or make the fleet key, or verify one)",
        description="Build a release bundle: the code as a wheel, the board and site config and "
        "the files they name, the thermal model, the systemd units, and a manifest with the "
        "SHA-256 of every file, signed with the fleet's Ed25519 key. Install it with "
        "'polewatch flash BUNDLE'.",
        epilog=BUNDLE_EXAMPLE,
        formatter_class=ExampleFormatter,
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--keygen", type=Path, metavar="KEY", help="create a fleet key pair and exit")
    mode.add_argument("--verify", type=Path, metavar="BUNDLE", help="verify a bundle and exit")
    p.add_argument("--board", type=Path, help="board config file")
    p.add_argument("--site", type=Path, help="the unit's site config file")
    p.add_argument("--signing-key", type=Path, help="the fleet's private key (PEM)")
    p.add_argument("--fleet-key", type=Path, help="with --verify: the fleet's public key (PEM)")
    p.add_argument(
        "--wheel", type=Path, help="a prebuilt polewatch wheel (default: build one from the source)"
    )
    p.add_argument("--release", help="release label (default: the code's version)")
    p.add_argument(
        "-o",
        "--out",
        type=Path,
        help="bundle file (default build/bundles/polewatch-RELEASE-BOARD-UNIT.pwb)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def cmd_bundle(args: argparse.Namespace) -> int:
    """``bundle``."""
    from host_tools.provision import signing
    from host_tools.provision.bundle import (
        SUFFIX,
        BundleError,
        build_bundle,
        build_wheel,
        source_root,
        verify_bundle,
    )

    if args.keygen is not None:
        public = signing.generate_key(args.keygen)
        kid = signing.key_id(signing.load_public_key(public))
        print(
            f"fleet key {kid}: private {args.keygen} (keep it secret), "
            f"public {public} (give it to technicians and units)"
        )
        return 0
    if args.verify is not None:
        if args.fleet_key is None:
            raise BundleError("--verify needs --fleet-key")
        progress = Progress(1, quiet=args.quiet)
        bundle = verify_bundle(args.verify, signing.load_public_key(args.fleet_key), progress)
        progress.close()
        m = bundle.manifest
        print(
            f"{args.verify}: OK: release {m['release']} (code {m['version']}) for board "
            f"{m['board']}, unit {m['unit']}, {len(m['files'])} files, key {m['signing_key']}"
        )
        return 0
    missing = [o for o in ("board", "site", "signing_key") if getattr(args, o) is None]
    if missing:
        raise BundleError("give " + ", ".join("--" + o.replace("_", "-") for o in missing))
    key = signing.load_private_key(args.signing_key)
    progress = Progress(3 if args.wheel is None else 2, quiet=args.quiet)
    with tempfile.TemporaryDirectory(prefix="polewatch-bundle-") as tmp:
        wheel = args.wheel
        if wheel is None:
            src = source_root()
            if src is None:
                raise BundleError("not running from a source tree: give --wheel")
            progress.step(f"building the code's wheel from {src}")
            wheel = build_wheel(src, Path(tmp))
            progress.note(f"{wheel.name} ({wheel.stat().st_size // 1024} KiB)")
        out = args.out
        if out is None:
            from firmware.config.load import load_pair

            board, site = load_pair(args.board, args.site)
            release = args.release or wheel.name.split("-")[1]
            name = f"polewatch-{release}-{board.board.name}-{site.unit.id}{SUFFIX}"
            out = Path("build/bundles") / name
        manifest = build_bundle(out, args.board, args.site, wheel, key, args.release, progress)
    progress.close()
    print(
        f"bundle {out}: release {manifest['release']} for board {manifest['board']}, unit "
        f"{manifest['unit']}, {len(manifest['files'])} files, signed by {manifest['signing_key']}"
    )
    return 0


def add_flash_bundle_options(p: argparse.ArgumentParser) -> None:
    """The ``flash`` options for installing a bundle."""
    p.add_argument("bundle", nargs="?", type=Path, metavar="BUNDLE", help="a bundle to install")
    target = p.add_mutually_exclusive_group()
    target.add_argument(
        "--root", type=Path, metavar="DIR", help="install onto this root (a mounted SD card, or /)"
    )
    target.add_argument("--ssh", metavar="USER@HOST", help="install onto a running unit over SSH")
    p.add_argument("--fleet-key", type=Path, help="the fleet's public key (PEM) to verify with")
    p.add_argument(
        "--identity",
        type=Path,
        metavar="DIR",
        help="first install (--root): the unit's OSCORE context from 'polewatch provision'",
    )
    p.add_argument(
        "--board", metavar="NAME", help="refuse a bundle built for another board than NAME"
    )
    p.add_argument(
        "--trial-timeout",
        type=float,
        default=300.0,
        help="seconds an update has to pass its health check before it is rolled back (300)",
    )
    p.add_argument(
        "--ssh-option",
        action="append",
        default=[],
        metavar="OPT",
        help="extra option for both ssh and scp, e.g. --ssh-option=-oPort=2222 (repeatable)",
    )


def cmd_flash_bundle(args: argparse.Namespace) -> int:
    """``flash BUNDLE --root DIR`` or ``--ssh USER@HOST``."""
    from host_tools.provision.bundle import BundleError, verify_bundle
    from host_tools.provision.install import plan_root_install, run_plan, ssh_commands
    from host_tools.provision.signing import load_public_key

    if args.fleet_key is None:
        raise BundleError("give --fleet-key: the fleet's public key to verify the bundle with")
    if (args.root is None) == (args.ssh is None):
        raise BundleError("give where to install: --root DIR or --ssh USER@HOST")
    key = load_public_key(args.fleet_key)
    if args.ssh is not None:
        if args.identity is not None:
            raise BundleError("--identity goes with a first install onto an SD card (--root)")
        progress = Progress(1)
        bundle = verify_bundle(args.bundle, key, progress)
        progress.close()
        commands = ssh_commands(
            args.bundle,
            args.ssh,
            ssh_options=tuple(args.ssh_option),
            trial_timeout_s=args.trial_timeout,
            expected_board=args.board,
        )
        for i, cmd in enumerate(commands, 1):
            shown = " ".join(cmd)
            if args.dry_run:
                print(f"would run [{i}/{len(commands)}]: {shown}")
                continue
            print(f"[{i}/{len(commands)}] {shown}", flush=True)
            if subprocess.run(cmd, check=False).returncode != 0:
                print(f"polewatch flash: failed: {shown}", file=sys.stderr)
                return 1
        if not args.dry_run:
            print(
                f"release {bundle.release} installed on {args.ssh}; on trial until its health "
                "check passes ('polewatch slot status' there)"
            )
        return 0
    progress = Progress(6)  # verify, then the plan's five steps
    bundle = verify_bundle(args.bundle, key, progress)
    plan = plan_root_install(
        bundle,
        args.root,
        key,
        expected_board=args.board,
        identity=args.identity,
        trial_timeout_s=args.trial_timeout,
        progress=progress,
    )
    progress.steps = 1 + len(plan.steps)  # five, unless the plan changes
    run_plan(plan, args.dry_run, progress)
    if args.dry_run:
        print(f"dry run: {args.bundle} verified; nothing written to {args.root}")
    else:
        state = "on trial until its health check passes" if plan.trial else "committed"
        print(f"release {bundle.release} installed into {args.root} slot {plan.slot} ({state})")
    return 0


def add_slot_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add the ``slot`` subcommand; return its parser."""
    p = sub.add_parser(
        "slot",
        help="A/B release slots on a unit: status, health check, commit, rollback",
        description="Look after a unit's A/B release slots. 'boot' counts a start of a release "
        "on trial (polewatch.service runs it first) and rolls back after too many; "
        "'health-check' commits a release on trial once the unit runs it and the receiver "
        "acknowledged a heartbeat, and rolls it back when its time is up; 'commit' and "
        "'rollback' do so by hand.",
        epilog=SLOT_EXAMPLE,
        formatter_class=ExampleFormatter,
    )
    p.add_argument(
        "action",
        choices=["status", "verify", "boot", "health-check", "commit", "rollback"],
        metavar="ACTION",
        help="status, verify (the current release against its signed manifest), boot, "
        "health-check, commit or rollback",
    )
    p.add_argument(
        "--fleet-key",
        type=Path,
        help="verify: the fleet's public key (default ROOT/etc/polewatch/fleet-key.pub)",
    )
    p.add_argument("--root", type=Path, default=Path("/"), help="the unit's root (default /)")
    p.add_argument(
        "--restart",
        action="store_true",
        help="after a rollback, restart polewatch.service (systemctl) onto the previous release",
    )
    return p


def cmd_slot(args: argparse.Namespace) -> int:
    """``slot``."""
    from host_tools.provision.slots import Slots

    slots = Slots(args.root)
    now = time.time()
    if args.action == "status":
        print(json.dumps(slots.status(), indent=1, sort_keys=True))
        return 0
    if args.action == "verify":
        from host_tools.provision.install import FLEET_KEY, verify_installed
        from host_tools.provision.signing import load_public_key

        current = slots.link("current")
        if current is None:
            print(f"polewatch slot: no release installed under {args.root}", file=sys.stderr)
            return 1
        key = load_public_key(args.fleet_key or args.root / FLEET_KEY)
        manifest = verify_installed(slots.slot_dir(current), key)
        print(
            f"slot {current}: release {manifest['release']} verified ({len(manifest['files'])} "
            "files match the signed manifest)"
        )
        return 0
    if args.action == "boot":
        print(slots.boot(now))
        return 0
    if args.action == "commit":
        print(f"slot {slots.commit(now)} committed")
        return 0
    if args.action == "rollback":
        target = slots.rollback("rolled back by hand", now)
        print(f"rolled back to slot {target} (release {slots.release(target)})")
        return _restart() if args.restart else 0
    verdict = slots.health_check(now)
    print(f"{verdict.outcome}: {verdict.detail}")
    if verdict.rolled_back:
        if args.restart:
            _restart()
        return 1
    return 0


def _restart() -> int:
    cmd = ["systemctl", "restart", "polewatch.service"]
    proc = subprocess.run(cmd, check=False)
    if proc.returncode != 0:
        print(f"polewatch slot: {' '.join(cmd)} failed ({proc.returncode})", file=sys.stderr)
    return proc.returncode
