"""Detection through the whole unit: simulated scenes, the thermal model, tracker, rules, receiver.

Each scenario's expectations (``[[expect.alarms]]``) say which alarms must reach the receiver and
when, in simulated seconds; any other alarm is a failure. So "a cat never raises a person" is the
cat scenario expecting nothing on a site that alarms on any person, and "two people are not a
gathering" is the gathering scenario expecting one gathering alarm, only after the six arrive.
"""

from __future__ import annotations

from pathlib import Path

from host_tools.receiver.endpoint import Endpoint
from host_tools.receiver.server import Receiver
from polewatch.demo import DemoResult, play
from polewatch.netutil import free_port
from sim.scenario import load_scenario, resolve


async def run(name: str, tmp_path: Path) -> DemoResult:
    receiver = Receiver(tmp_path / "r.sqlite", Endpoint("127.0.0.1", free_port()), None)
    await receiver.start()
    try:
        return await play(resolve(name), tmp_path, 0.0, receiver, quiet=True)
    finally:
        await receiver.stop()


def opened_s(result: DemoResult, name: str, event: str) -> list[float]:
    """When each alarm of an event opened, in seconds after the scenario's start."""
    start = load_scenario(resolve(name)).scenario.start.timestamp()
    return [a.opened_at - start for a in result.alarms if a.event == event]


async def test_a_car_fire_is_raised_within_3_s_of_ignition(tmp_path: Path) -> None:
    scenario = load_scenario(resolve("car_fire"))
    ignition = scenario.world.fires[0].ignite_at_s
    result = await run("car_fire", tmp_path)
    assert result.problems == []
    (fire,) = opened_s(result, "car_fire", "fire")
    assert ignition <= fire <= ignition + 3.0


async def test_a_hot_engine_and_sun_heated_asphalt_never_raise_a_fire(tmp_path: Path) -> None:
    scenario = load_scenario(resolve("hot_day"))
    assert scenario.world.sun is not None
    engines = [c.engine_c for c in scenario.world.cars if c.engine_c is not None]
    assert engines and max(engines) > 100.0  # hotter than the site's fire threshold
    result = await run("hot_day", tmp_path)
    assert result.problems == []
    assert result.alarms == []


async def test_a_person_lying_still_is_down_and_one_sitting_is_not(tmp_path: Path) -> None:
    result = await run("person_down", tmp_path)
    assert result.problems == []
    (down,) = opened_s(result, "person_down", "person_down")
    lies_down_at = 12.0  # the scenario's posture change
    after_s = 15.0  # the site's [detection.person_down] after_s
    assert down >= lies_down_at + after_s


async def test_six_people_gathering_raise_a_gathering_and_two_do_not(tmp_path: Path) -> None:
    result = await run("gathering", tmp_path)
    assert result.problems == []
    (gathering,) = opened_s(result, "gathering", "gathering")
    crowd = next(g for g in load_scenario(resolve("gathering")).world.groups if g.count == 6)
    assert gathering >= crowd.arrive_at_s


async def test_loitering_is_raised_after_the_dwell_time(tmp_path: Path) -> None:
    result = await run("loitering", tmp_path)
    assert result.problems == []
    (loitering,) = opened_s(result, "loitering", "loitering")
    assert loitering >= 28.0 + 45.0  # the loiterer's arrival plus the site's dwell_s


async def test_a_cat_and_a_dog_crossing_never_raise_a_person(tmp_path: Path) -> None:
    species = {a.species for a in load_scenario(resolve("cat_crossing")).world.animals}
    assert species == {"cat", "dog"}
    result = await run("cat_crossing", tmp_path)
    assert result.problems == []
    assert [a.event for a in result.alarms] == []
