"""Site config: one unit's identity, receiver, zones, detection, rules and deterrence limits."""

from __future__ import annotations

import logging
import zoneinfo
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from shapely.geometry import Polygon

from firmware.config.base import Strict
from firmware.config.board import Name

logger = logging.getLogger(__name__)

Point = Annotated[list[float], Field(min_length=2, max_length=2)]  # [u, v] in pixels
Seconds = Annotated[float, Field(gt=0, le=86400)]


class UnitInfo(Strict):
    """``[unit]``: who this unit is and where it stands."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    name: str = ""
    timezone: str = "Europe/Stockholm"
    latitude: Annotated[float, Field(ge=-90, le=90)] | None = None
    longitude: Annotated[float, Field(ge=-180, le=180)] | None = None

    @field_validator("timezone")
    @classmethod
    def verify_timezone(cls, value: str) -> str:
        """The time zone must be a known IANA name."""
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value


class ReceiverEndpoint(Strict):
    """``[receiver]``: where alarms go."""

    host: Annotated[str, Field(min_length=1)]
    port: Annotated[int, Field(ge=1, le=65535)] = 5683
    path: Annotated[str, Field(pattern=r"^[a-z]{1,8}$")] = "a"


class UplinkConfig(Strict):
    """``[uplink]``: delivery behaviour."""

    reporting_time_s: Annotated[float, Field(ge=30, le=86400)] = 180.0
    retry_initial_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    retry_max_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    request_timeout_s: Annotated[float, Field(gt=0, le=300)] = 20.0

    @model_validator(mode="after")
    def verify_retry(self) -> UplinkConfig:
        """The backoff ceiling cannot be below its start."""
        if self.retry_max_s < self.retry_initial_s:
            raise ValueError("retry_max_s: must be >= retry_initial_s")
        return self


class FireDetection(Strict):
    """``[detection.fire]``: the radiometric hot-spot detector."""

    enabled: bool = True
    threshold_c: Annotated[float, Field(ge=40, le=1000)] = 100.0
    min_area_px: Annotated[int, Field(ge=1, le=100000)] = 4
    persistence_frames: Annotated[int, Field(ge=1, le=1000)] = 5
    clear_after_s: Annotated[float, Field(gt=0, le=3600)] = 30.0


class DetectionConfig(Strict):
    """``[detection]``."""

    fire: FireDetection = FireDetection()


class Zone(Strict):
    """``[zones.NAME]``: a polygon in a sensor's pixel coordinates."""

    sensor: Literal["thermal", "visible"] = "thermal"
    polygon: Annotated[list[Point], Field(min_length=3, max_length=64)]
    armed: bool = True

    @field_validator("polygon")
    @classmethod
    def verify_polygon(cls, value: list[list[float]]) -> list[list[float]]:
        """The polygon must be simple and have an area."""
        poly = Polygon(value)
        if not poly.is_valid or poly.area <= 0:
            raise ValueError("polygon must be simple (not self-intersecting) and have an area")
        return value


class OutputLimits(Strict):
    """``[deterrence.limits.OUTPUT]``: what no rule or command may exceed for that output."""

    max_on_s: Seconds
    cooldown_s: Annotated[float, Field(ge=0, le=86400)] = 0.0


class ProfileStep(Strict):
    """One step of a deterrence profile."""

    output: Name
    at_s: Annotated[float, Field(ge=0, le=3600)] = 0.0
    for_s: Seconds | None = None  # None: until the output's max_on_s


class Profile(Strict):
    """``[deterrence.profiles.NAME]``: an escalation of output steps."""

    steps: Annotated[list[ProfileStep], Field(min_length=1, max_length=16)]


class DeterrenceConfig(Strict):
    """``[deterrence]``."""

    limits: dict[Name, OutputLimits] = Field(default_factory=dict)
    profiles: dict[Name, Profile] = Field(default_factory=dict)


class Rule(Strict):
    """``[[rules]]``: when an event happens in a zone, raise an alarm and maybe deter."""

    name: Name
    event: Literal["fire"]
    zones: Annotated[list[Name], Field(min_length=1)]
    priority: Annotated[int, Field(ge=1, le=9)]
    profile: Name | None = None


class SiteConfig(Strict):
    """A whole site config file."""

    unit: UnitInfo
    receiver: ReceiverEndpoint
    uplink: UplinkConfig = UplinkConfig()
    detection: DetectionConfig = DetectionConfig()
    zones: dict[Name, Zone] = Field(default_factory=dict)
    deterrence: DeterrenceConfig = DeterrenceConfig()
    rules: list[Rule] = Field(default_factory=list)

    @model_validator(mode="after")
    def verify_references(self) -> SiteConfig:
        """Rules name zones and profiles that exist; every output a profile uses has limits."""
        errors: list[str] = []
        names: set[str] = set()
        for i, rule in enumerate(self.rules):
            where = f"rules[{i}]"
            if rule.name in names:
                errors.append(f"{where}.name: rule name {rule.name!r} is used twice")
            names.add(rule.name)
            for j, zone in enumerate(rule.zones):
                if zone not in self.zones:
                    known = ", ".join(sorted(self.zones)) or "none"
                    errors.append(f"{where}.zones[{j}]: no zone {zone!r} (defined: {known})")
            if rule.profile is not None and rule.profile not in self.deterrence.profiles:
                known = ", ".join(sorted(self.deterrence.profiles)) or "none"
                errors.append(
                    f"{where}.profile: no deterrence profile {rule.profile!r} (defined: {known})"
                )
        for pname, profile in self.deterrence.profiles.items():
            for j, step in enumerate(profile.steps):
                where = f"deterrence.profiles.{pname}.steps[{j}]"
                limits = self.deterrence.limits.get(step.output)
                if limits is None:
                    errors.append(
                        f"{where}.output: output {step.output!r} has no "
                        f"[deterrence.limits.{step.output}]"
                    )
                elif step.for_s is not None and step.for_s > limits.max_on_s:
                    errors.append(
                        f"{where}.for_s: {step.for_s} s exceeds the output's "
                        f"max_on_s of {limits.max_on_s} s"
                    )
        if errors:
            raise ValueError("\n".join(errors))
        return self
