"""``polewatch flash``: install a release bundle on a unit, or firmware on its companion boards.

``BUNDLE --root DIR`` or ``BUNDLE --ssh USER@HOST`` verifies a signed release bundle and installs
it into the unit's A/B slots (see :mod:`polewatch.bundle` and :mod:`host_tools.provision.install`).
``--supervisor`` compiles the RP2040 supervisor (``firmware/supervisor``) with ``mpy-cross`` into a
build folder and copies it to the Pico with ``mpremote``; ``main.py`` stays source, as MicroPython
runs ``main.py`` at boot.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from pathlib import Path

from firmware.errors import HardwareError
from polewatch.helptext import ExampleFormatter

logger = logging.getLogger(__name__)

SUPERVISOR_SRC = Path(__file__).resolve().parents[1] / "firmware" / "supervisor"
# The modules the Pico runs; __init__.py and unixport/ are for the unit and the tests only.
SUPERVISOR_MODULES = ("framing", "messages", "config", "hw", "core")
SUPERVISOR_ENTRY = "main.py"

FLASH_EXAMPLE = """examples:
  # a release bundle onto a mounted SD card (first install: with the unit's OSCORE context)
  polewatch flash build/pole-0003.pwb --root /media/$USER/rootfs --fleet-key keys/fleet.key.pub \\
      --identity units/pole-0003/oscore
  # an update to a running unit over SSH (A/B: rolled back if its health check fails)
  polewatch flash build/pole-0003.pwb --ssh pi@pole-0003.local --fleet-key keys/fleet.key.pub
  polewatch flash build/pole-0003.pwb --root /mnt/sd --fleet-key keys/fleet.key.pub --dry-run

  polewatch flash --supervisor --port /dev/ttyACM0
  polewatch flash --supervisor --dry-run      # compile, and show what would be copied
"""


def add_flash_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``flash`` subcommand (extend its options here)."""
    from polewatch.bundle import add_flash_bundle_options

    p = sub.add_parser(
        "flash",
        help="install a release bundle on a unit, or the RP2040 supervisor firmware",
        description="Install a signed release bundle ('polewatch bundle') on a unit: verified "
        "(signature, every file's hash, the board and unit), then written into the free A/B slot "
        "of a mounted SD card root (--root) or a running unit (--ssh) and switched to; an update "
        "stays on trial until its health check passes and is rolled back otherwise. "
        "--supervisor compiles the "
        "RP2040 I/O supervisor with mpy-cross and copies it to a Raspberry Pi Pico (running "
        "MicroPython) over USB with mpremote, then resets the Pico.",
        epilog=FLASH_EXAMPLE,
        formatter_class=ExampleFormatter,
    )
    p.add_argument(
        "--supervisor", action="store_true", help="install the RP2040 supervisor firmware"
    )
    p.add_argument(
        "--port",
        default="auto",
        help="the Pico's serial device, e.g. /dev/ttyACM0 (default: mpremote's auto)",
    )
    p.add_argument(
        "--build-dir",
        type=Path,
        default=Path("build/supervisor"),
        help="where the compiled files go (default build/supervisor)",
    )
    p.add_argument(
        "--no-compile",
        action="store_true",
        help="copy .py source instead of .mpy (for a MicroPython whose .mpy version differs)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="verify (or build), and print what would be done, without touching the target",
    )
    add_flash_bundle_options(p)


def build_supervisor(build_dir: Path, compile_mpy: bool = True) -> list[Path]:
    """Compile (or copy) the supervisor's files into ``build_dir``; return them, entry last."""
    build_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*build_dir.glob("*.mpy"), *build_dir.glob("*.py")]:
        stale.unlink()
    files: list[Path] = []
    for name in SUPERVISOR_MODULES:
        src = SUPERVISOR_SRC / f"{name}.py"
        if not compile_mpy:
            dst = build_dir / src.name
            dst.write_bytes(src.read_bytes())
            files.append(dst)
            continue
        dst = build_dir / f"{name}.mpy"
        cmd = [sys.executable, "-m", "mpy_cross", "-o", str(dst), str(src)]  # bytecode: any arch
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not dst.is_file():
            raise HardwareError(f"mpy-cross failed on {src.name}: {proc.stderr.strip()}")
        files.append(dst)
    entry = build_dir / SUPERVISOR_ENTRY
    entry.write_bytes((SUPERVISOR_SRC / SUPERVISOR_ENTRY).read_bytes())
    files.append(entry)
    return files


def mpremote_commands(port: str, files: list[Path]) -> list[list[str]]:
    """The mpremote runs that install ``files`` in the Pico's root and reset it."""
    base = [sys.executable, "-m", "mpremote", "connect", port]
    return [[*base, "fs", "cp", str(f), f":{f.name}"] for f in files] + [[*base, "reset"]]


def cmd_flash(args: argparse.Namespace) -> int:
    """``flash``."""
    if args.supervisor and args.bundle is not None:
        print("polewatch flash: give a bundle or --supervisor, not both", file=sys.stderr)
        return 2
    if args.bundle is not None:
        from polewatch.bundle import cmd_flash_bundle

        return cmd_flash_bundle(args)
    if not args.supervisor:
        print("polewatch flash: nothing to flash (give a BUNDLE, or --supervisor)", file=sys.stderr)
        return 2
    files = build_supervisor(args.build_dir, compile_mpy=not args.no_compile)
    for f in files:
        print(f"built {f} ({f.stat().st_size} bytes)")
    commands = mpremote_commands(args.port, files)
    for i, cmd in enumerate(commands, 1):
        shown = " ".join(["mpremote", *cmd[3:]])
        if args.dry_run:
            print(f"would run [{i}/{len(commands)}]: {shown}")
            continue
        print(f"[{i}/{len(commands)}] {shown}", flush=True)
        proc = subprocess.run(cmd, check=False)
        if proc.returncode != 0:
            raise HardwareError(f"mpremote failed ({proc.returncode}): {shown}")
    if not args.dry_run:
        print(f"supervisor installed on {args.port}")
    return 0
