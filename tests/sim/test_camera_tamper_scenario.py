"""Camera tamper through the whole unit: cover, turn, unplug and hang the simulated thermal camera.

The scenario's expectations say when each fault must reach the receiver: a tamper fault within
10 s (simulated) of the camera being covered and of it being turned away, a camera fault when
its cable is pulled and when its stream hangs without an error, each closed again when the
camera is back, and nothing else.
"""

from __future__ import annotations

from pathlib import Path

from host_tools.receiver.endpoint import Endpoint
from host_tools.receiver.server import Receiver
from polewatch.demo import play
from polewatch.netutil import free_port
from sim.scenario import load_scenario, resolve


async def test_covering_turning_and_unplugging_raise_faults_in_time(tmp_path: Path) -> None:
    path = resolve("camera_tamper")
    faults = {f.kind for f in load_scenario(path).camera_faults}
    assert faults == {"cover", "turn", "unplug", "hang"}
    receiver = Receiver(tmp_path / "r.sqlite", Endpoint("127.0.0.1", free_port()), None)
    await receiver.start()
    try:
        result = await play(path, tmp_path, 0.0, receiver, quiet=True)
    finally:
        await receiver.stop()
    assert result.problems == []
    events = sorted((a.event, a.unit_state, a.detail) for a in result.alarms)
    assert events == [
        ("fault:camera", "closed", "thermal no frames for 5 s"),
        ("fault:camera", "closed", "thermal sim thermal camera: no frames (unplugged)"),
        ("fault:tamper", "closed", "thermal covered"),
        ("fault:tamper", "closed", "thermal turned"),
    ]
