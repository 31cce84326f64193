"""Every example in docs/protocol.md decodes and re-encodes to the same bytes."""

from __future__ import annotations

import re
from pathlib import Path

import cbor_diag

from firmware.uplink import protocol

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def examples() -> list[tuple[str, str]]:
    text = DOC.read_text()
    diags = re.findall(r"```cbor-diag\n(.*?)\n```", text, re.S)
    hexes = re.findall(r"```cbor-hex\n(.*?)\n```", text, re.S)
    assert len(diags) == len(hexes)
    return list(zip(diags, hexes, strict=True))


def test_every_message_kind_has_an_example() -> None:
    kinds = {protocol.decode(bytes.fromhex(h)).KIND for _, h in examples()}
    assert kinds == set(protocol.Kind)


def test_examples_decode_and_re_encode_to_the_same_bytes() -> None:
    for diag, hexed in examples():
        raw = bytes.fromhex(hexed.replace("\n", ""))
        assert cbor_diag.diag2cbor(diag) == raw, diag
        assert protocol.encode(protocol.decode(raw)) == raw, diag
