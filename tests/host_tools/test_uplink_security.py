"""The receiver rejects, counts and logs every kind of bad datagram, and keeps working."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiocoap
import pytest

from firmware.config.site import ReceiverEndpoint
from firmware.uplink import protocol
from firmware.uplink.client import UplinkClient, UplinkError
from firmware.uplink.security import write_context
from host_tools.provision.oscore import provision_oscore
from host_tools.receiver import rejects as R
from host_tools.receiver.endpoint import Endpoint
from host_tools.receiver.server import Receiver
from polewatch.netutil import free_port
from sim.link import UdpRelay


@dataclass
class Rig:
    receiver: Receiver
    relay: UdpRelay
    unit_dir: Path
    captured: list[bytes]
    tmp: Path

    def client(self, security: Path | None = None, via_relay: bool = True) -> UplinkClient:
        port = self.relay.listen[1] if via_relay else self.receiver.coap.port
        # CoAP's timers 20 times faster than the standard's: loopback needs no more, and a refused
        # request (which aiocoap answers by timing out) then fails in 5 s rather than 93.
        endpoint = ReceiverEndpoint(host="127.0.0.1", port=port)
        return UplinkClient(endpoint, security or self.unit_dir, speed=20.0)

    def counts(self) -> dict[str, int]:
        return dict(self.receiver.rejects.counts)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    unit_dir = tmp_path / "unit" / "oscore"
    provision_oscore("pole-0001", unit_dir, tmp_path / "rx")
    receiver = Receiver(tmp_path / "rx" / "r.sqlite", Endpoint("127.0.0.1", free_port()), None)
    await receiver.start()
    captured: list[bytes] = []
    relay = UdpRelay(("127.0.0.1", 0), ("127.0.0.1", receiver.coap.port),
                     tap=lambda data, _addr: captured.append(data))  # fmt: skip
    await relay.start()
    yield Rig(receiver, relay, unit_dir, captured, tmp_path)
    await relay.stop()
    await receiver.stop()


def alarm(msg_id: int, alarm_id: int = 1) -> bytes:
    return protocol.encode(protocol.Alarm(msg_id=msg_id, time_s=int(time.time()),
                                          alarm_id=alarm_id, zone="lot"))  # fmt: skip


def with_new_mid(datagram: bytes, mid: int) -> bytes:
    """The same CoAP message under another message id: not a CoAP-layer duplicate any more."""
    return datagram[:2] + mid.to_bytes(2, "big") + datagram[4:]


def _queued_bytes(port: int) -> int:
    """Bytes waiting in the receive queue of the UDP socket on ``port`` (Linux), 0 if unknown.
    aiocoap listens on an IPv6 socket that also takes IPv4, so both tables are read."""
    lines: list[str] = []
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError):
            lines += Path(table).read_text().splitlines()[1:]
    for line in lines:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port:
            return int(fields[4].rsplit(":", 1)[1], 16)  # tx_queue:rx_queue
    return 0


async def _drained(port: int, limit_s: float = 5.0) -> None:
    """Wait (at most ``limit_s``) until the receiver has read what was sent to it: on a loaded
    machine a fixed pause lets the kernel drop datagrams once the socket's buffer is full."""
    await asyncio.sleep(0.01)
    deadline = time.monotonic() + limit_s
    while _queued_bytes(port) and time.monotonic() < deadline:
        await asyncio.sleep(0.005)


async def send_raw(port: int, datagrams: list[bytes], pace: int = 100, sources: int = 1) -> None:
    """Send from ``sources`` sockets in turn (CoAP deduplicates by sender and message id)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(sources)]
    try:
        for i, d in enumerate(datagrams):
            socks[i % sources].sendto(d, ("127.0.0.1", port))
            if i % pace == pace - 1:
                await _drained(port)  # let the receiver keep up: seen, not lost in a buffer
        await asyncio.sleep(0.5)
    finally:
        for s in socks:
            s.close()


async def test_valid_message_is_stored_and_each_bad_kind_is_rejected(rig: Rig) -> None:
    client = rig.client()
    ack = await client.send(alarm(1))
    assert ack.status == protocol.AckStatus.STORED
    await client.close()
    store = rig.receiver.require_store()
    assert [a.ref for a in store.alarms()] == ["pole-0001/1"]
    valid = rig.captured[-1]

    # Unprotected: plain CoAP, no OSCORE.
    plain = await aiocoap.Context.create_client_context()
    resp = await plain.request(aiocoap.Message(code=aiocoap.POST, payload=alarm(2),
                                               uri=f"coap://127.0.0.1:{rig.receiver.coap.port}/a")
                               ).response  # fmt: skip
    assert resp.code == aiocoap.UNAUTHORIZED
    await plain.shutdown()

    # Replayed: the captured request again, under a new CoAP message id.
    await send_raw(rig.receiver.coap.port, [with_new_mid(valid, 4242)])
    # Tampered: one bit of the ciphertext flipped.
    flipped = bytearray(with_new_mid(valid, 4243))
    flipped[-3] ^= 0x01
    await send_raw(rig.receiver.coap.port, [bytes(flipped)])
    # Unparsable: not CoAP at all.
    await send_raw(rig.receiver.coap.port, [b"\x00\x01garbage"])

    # Forged: the unit's key id with a key that is not the unit's.
    forged_dir = rig.tmp / "forged"
    write_context(forged_dir, sender_id=bytes.fromhex("0001"), recipient_id=b"",
                  secret=b"\x55" * 32, salt=b"\x66" * 8)  # fmt: skip
    # Unknown unit: a key id nobody provisioned.
    stranger_dir = rig.tmp / "stranger"
    write_context(stranger_dir, sender_id=b"\x7f\x7f", recipient_id=b"",
                  secret=b"\x55" * 32, salt=b"\x66" * 8)  # fmt: skip
    for directory in (forged_dir, stranger_dir):
        bad = rig.client(directory, via_relay=False)
        with pytest.raises(UplinkError):
            await bad.send(alarm(3))
        await bad.close()

    # Malformed and oversized payloads from the genuine unit.
    client = rig.client(via_relay=False)
    with pytest.raises(UplinkError, match=r"4\.00"):
        await client.send(b"\xa1\x00\x02")
    with pytest.raises(UplinkError):
        await client.send(b"\x00" * (protocol.MAX_MESSAGE_BYTES + 100))
    ack = await client.send(alarm(4, alarm_id=2))  # and it still works
    assert ack.status == protocol.AckStatus.STORED
    await client.close()

    counts = rig.counts()
    for reason in (R.UNPROTECTED, R.REPLAYED, R.FORGED, R.UNPARSABLE, R.UNKNOWN_UNIT,
                   R.MALFORMED, R.OVERSIZED):  # fmt: skip
        assert counts.get(reason, 0) >= 1, f"{reason} not counted: {counts}"
    assert [a.ref for a in store.alarms()] == ["pole-0001/1", "pole-0001/2"]
    assert store.message_count() == 2


def mutate(rng: random.Random, datagram: bytes) -> bytes:
    data = bytearray(datagram)
    choice = rng.randrange(5)
    if choice == 0:  # flip bits
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
    elif choice == 1:  # truncate
        data = data[: rng.randrange(len(data))]
    elif choice == 2:  # insert junk
        i = rng.randrange(len(data) + 1)
        data[i:i] = rng.randbytes(rng.randint(1, 16))
    elif choice == 3:  # a new message id: reaches OSCORE, which must see a replay
        data[2:4] = rng.randbytes(2)
    else:  # oversize
        data += rng.randbytes(rng.randint(1100, 1400))
    return bytes(data)


async def test_100k_random_and_mutated_datagrams_never_break_the_receiver(rig: Rig) -> None:
    client = rig.client()
    for i in range(1, 6):
        await client.send(alarm(i, alarm_id=i))
    seeds = list(rig.captured)
    rng = random.Random(20261124)
    datagrams = [
        rng.randbytes(rng.randint(0, 120)) if i % 2 else mutate(rng, rng.choice(seeds))
        for i in range(100_000)
    ]
    await send_raw(rig.receiver.coap.port, datagrams, sources=64)
    # Still serving the genuine unit, and nothing stored twice or made up.
    ack = await client.send(alarm(6, alarm_id=6))
    assert ack.status == protocol.AckStatus.STORED
    await client.close()
    store = rig.receiver.require_store()
    assert sorted(a.alarm_id for a in store.alarms()) == [1, 2, 3, 4, 5, 6]
    assert store.message_count() == 6
    counts = rig.counts()
    # Everything that reached the application was refused and counted by reason. Stray CoAP
    # traffic (responses, ACK/RST, pings, duplicate message ids) is settled inside aiocoap's
    # message layer as RFC 7252 says, and never reaches it.
    for reason in (R.UNPARSABLE, R.UNPROTECTED, R.FORGED, R.REPLAYED):
        assert counts.get(reason, 0) > 0, counts
    assert rig.receiver.rejects.total >= 60_000, counts
