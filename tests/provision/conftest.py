"""Fixtures of the provisioning tests: the code's wheel (built once), a fleet key, configs, and
console users for the registration API."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from host_tools.provision import signing
from host_tools.provision.bundle import build_bundle, build_wheel, source_root
from tests.provision.provision_helpers import SIM_BOARD, MakeBundle, write_site


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The code's wheel, built once per session from this source tree."""
    src = source_root()
    assert src is not None
    return build_wheel(src, tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def fleet_key_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A fleet key pair on disk: (private, public)."""
    private = tmp_path_factory.mktemp("keys") / "fleet.key"
    public = signing.generate_key(private)
    return private, public


@pytest.fixture
def fleet_key(fleet_key_files: tuple[Path, Path]) -> Ed25519PrivateKey:
    """The fleet's private key."""
    return signing.load_private_key(fleet_key_files[0])


@pytest.fixture
def fleet_public(fleet_key_files: tuple[Path, Path]) -> Ed25519PublicKey:
    """The fleet's public key."""
    return signing.load_public_key(fleet_key_files[1])


@pytest.fixture
def make_bundle(tmp_path: Path, wheel: Path, fleet_key: Ed25519PrivateKey) -> MakeBundle:
    """Build a signed bundle: make_bundle(release="r1", unit_id=..., board=..., site=...)."""

    def make(
        release: str = "r1",
        unit_id: str = "pole-0042",
        board: Path = SIM_BOARD,
        site: Path | None = None,
        key: Ed25519PrivateKey | None = None,
    ) -> Path:
        if site is None:
            site = write_site(tmp_path / f"site-{unit_id}-{release}" / "site.toml", unit_id)
        out = tmp_path / "bundles" / f"{unit_id}-{release}.pwb"
        build_bundle(out, board, site, wheel, key or fleet_key, release)
        return out

    return make
