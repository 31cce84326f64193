"""Scenario files: a world, a timeline and the expected outcome: one file is a demo and a test."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from firmware.config.base import Strict
from firmware.config.load import read_toml, validate_model
from firmware.config.site import EventName
from sim.camera_faults import CameraFault
from sim.world import WorldSpec

logger = logging.getLogger(__name__)

SCENARIO_DIR = Path(__file__).parent / "scenarios"
BOARD_DIR = Path(__file__).resolve().parent.parent / "board_configs"


class ScenarioInfo(Strict):
    """``[scenario]``."""

    name: str
    description: str = ""
    duration_s: Annotated[float, Field(gt=0, le=86400)]
    seed: Annotated[int, Field(ge=0)] = 0
    start: dt.datetime  # simulated wall-clock start, with its UTC offset
    site: str  # site config, relative to the scenario file
    board: str = "sim"  # a name in board_configs/, or a path relative to the scenario file

    @model_validator(mode="after")
    def verify_start(self) -> ScenarioInfo:
        """The start must say its UTC offset, or "22:30" would mean different things."""
        if self.start.tzinfo is None:
            raise ValueError("start: give a UTC offset, e.g. 2026-11-24T22:30:00+01:00")
        return self


# Faults reach the receiver's queue as "fault:<code>" entries in zone "-".
FaultEvent = Literal["fault:camera", "fault:tamper", "fault:actuator", "fault:modem"]


class ExpectedAlarm(Strict):
    """``[[expect.alarms]]``: an alarm (or a fault) that must be raised (and acknowledged)."""

    event: EventName | FaultEvent
    zone: str = "-"
    priority: Annotated[int, Field(ge=1, le=9)]
    earliest_s: Annotated[float, Field(ge=0)] = 0.0
    latest_s: Annotated[float, Field(gt=0)]


class ExpectedOutput(Strict):
    """``[[expect.outputs]]``: an output that must go on in a window and stay on for a time."""

    output: str
    on_earliest_s: Annotated[float, Field(ge=0)] = 0.0
    on_latest_s: Annotated[float, Field(gt=0)]
    on_for_s: Annotated[float, Field(gt=0)]
    tolerance_s: Annotated[float, Field(ge=0)] = 0.5


class Expect(Strict):
    """``[expect]``: everything that must happen; anything else is a failure."""

    alarms: list[ExpectedAlarm] = Field(default_factory=list)
    outputs: list[ExpectedOutput] = Field(default_factory=list)


class Scenario(Strict):
    """A whole scenario file."""

    scenario: ScenarioInfo
    world: WorldSpec = WorldSpec()
    camera_faults: list[CameraFault] = Field(default_factory=list)  # [[camera_faults]]
    expect: Expect = Expect()


def resolve(name_or_path: str) -> Path:
    """A scenario by name (``car_fire``) or path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        return path
    candidate = SCENARIO_DIR / f"{name_or_path}.toml"
    if not candidate.exists():
        known = ", ".join(sorted(p.stem for p in SCENARIO_DIR.glob("*.toml")))
        raise FileNotFoundError(f"no scenario {name_or_path!r} (shipped: {known})")
    return candidate


def load_scenario(path: Path) -> Scenario:
    """Load and validate a scenario file."""
    return validate_model(Scenario, read_toml(path), path)


def board_path(scenario: Scenario, scenario_path: Path) -> Path:
    """Where the scenario's board config is."""
    ref = scenario.scenario.board
    if "/" in ref or ref.endswith(".toml"):
        return (scenario_path.parent / ref).resolve()
    return BOARD_DIR / f"{ref}.toml"


def site_path(scenario: Scenario, scenario_path: Path) -> Path:
    """Where the scenario's site config is."""
    return (scenario_path.parent / scenario.scenario.site).resolve()
