"""Build tooling: the firmware type-checks against the RP2040 stubs, mpy-cross compiles it, and
``polewatch flash --supervisor --dry-run`` shows the install."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from firmware.hal.supervisor_sim import FIRMWARE, find_micropython, micropython_env
from firmware.supervisor import framing
from polewatch.cli import main
from polewatch.flash import SUPERVISOR_MODULES, build_supervisor

STUB_DISTS = ("micropython-rp2-rpi-pico-stubs", "micropython-stdlib-stubs")
MYPY_INI = """[mypy]
strict = True
python_version = 3.11
no_site_packages = True
follow_imports = silent
cache_dir = {cache}
# Errors inside the stubs themselves are theirs, not ours.
[mypy-machine,vfs,_mpy_shed,_mpy_shed.*,rp2,rp2.*]
ignore_errors = True
"""


def stubs_dir(tmp_path: Path) -> Path:
    """The stub packages' files gathered into one typeshed-like folder."""
    typings = tmp_path / "typings"
    for name in STUB_DISTS:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")
        for f in dist.files or []:
            if f.suffix == ".pyi" or f.name == "VERSIONS":
                dst = typings / f
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(Path(str(dist.locate_file(f))), dst)
    return typings


def mypy_on_stubs(tmp_path: Path, sources: list[Path]) -> subprocess.CompletedProcess[str]:
    """Run mypy --strict on ``sources`` as MicroPython for the Pico sees them."""
    typings = stubs_dir(tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    for f in sources:
        shutil.copyfile(f, src / f.name)
    ini = tmp_path / "mypy.ini"
    ini.write_text(MYPY_INI.format(cache=tmp_path / "cache"))
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(ini)]
    cmd += ["--custom-typeshed-dir", str(typings), *sorted(str(p) for p in src.iterdir())]
    env = {**os.environ, "MYPYPATH": str(typings)}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=src, env=env, check=False)


def firmware_sources() -> list[Path]:
    return [FIRMWARE / f"{name}.py" for name in (*SUPERVISOR_MODULES, "main")]


def test_firmware_type_checks_against_the_rp2040_stubs(tmp_path: Path) -> None:
    result = mypy_on_stubs(tmp_path, firmware_sources())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues found in 6 source files" in result.stdout


def test_the_stub_check_catches_a_misuse_of_machine(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("import machine\n\nlevel: str = machine.ADC(26).read_u16()\n")
    result = mypy_on_stubs(tmp_path, [probe])
    assert result.returncode == 1
    assert 'probe.py:3: error: Incompatible types in assignment (expression has type "int"' in (
        result.stdout
    )


def test_mpy_cross_compiles_the_firmware_and_the_unix_port_runs_it(tmp_path: Path) -> None:
    files = build_supervisor(tmp_path / "build")
    assert [f.name for f in files] == [*(f"{n}.mpy" for n in SUPERVISOR_MODULES), "main.py"]
    for f in files[:-1]:
        assert f.read_bytes()[:2] == b"M\x06"  # .mpy magic and major version 6
    micropython = find_micropython()
    if micropython is None:
        pytest.skip("the MicroPython unix port is not installed")
    # The compiled framing module, loaded by MicroPython, frames exactly as CPython does.
    run = subprocess.run(
        [
            micropython,
            "-c",
            "import framing; print(framing.__file__, framing.encode(3, 9, b'\\x00\\x01').hex())",
        ],
        capture_output=True,
        text=True,
        env={**micropython_env(), "MICROPYPATH": str(tmp_path / "build")},
        check=False,
    )
    assert run.returncode == 0, run.stderr
    where, frame = run.stdout.split()
    assert where.endswith("framing.mpy")
    assert frame == framing.encode(3, 9, b"\x00\x01").hex()


def test_flash_dry_run_builds_and_shows_the_copies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build = tmp_path / "b"
    code = main(
        ["flash", "--supervisor", "--dry-run", "--port", "/dev/ttyACM7", "--build-dir", str(build)]
    )
    out = capsys.readouterr().out
    assert code == 0
    for name in [*(f"{n}.mpy" for n in SUPERVISOR_MODULES), "main.py"]:
        assert (build / name).is_file()
        assert f"mpremote connect /dev/ttyACM7 fs cp {build / name} :{name}" in out
    assert out.rstrip().endswith("mpremote connect /dev/ttyACM7 reset")
    assert "would run [7/7]" in out


def test_flash_source_copies_and_nothing_to_flash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build = tmp_path / "b"
    main(["flash", "--supervisor", "--no-compile", "--dry-run", "--build-dir", str(build)])
    assert sorted(p.name for p in build.iterdir()) == sorted(
        [*(f"{n}.py" for n in SUPERVISOR_MODULES), "main.py"]
    )
    assert main(["flash"]) == 2
    assert "nothing to flash" in capsys.readouterr().err
