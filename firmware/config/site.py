"""Site config: one unit's identity, receiver, zones, detection, rules and deterrence limits."""

from __future__ import annotations

import logging
import zoneinfo
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator
from shapely.geometry import Polygon

from firmware.config.base import Strict
from firmware.config.board import Name
from firmware.detect.base import ObjectClass
from firmware.detect.labels import DEFAULT_CLASS_MAP, LabelMap, load_labels
from firmware.detect.runner import check_tflite_file
from firmware.detect.thermal import ThermalModelDetection
from firmware.errors import ConfigError, ModelError
from firmware.hal.audio import clip_seconds
from firmware.rules.schedule import TimeSpec, parse_time_spec

logger = logging.getLogger(__name__)

Point = Annotated[list[float], Field(min_length=2, max_length=2)]  # [u, v] in pixels
Seconds = Annotated[float, Field(gt=0, le=86400)]
VOICE = "voice"  # the audio player's name in profiles' actions, limits and logs


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
    # The receiver serves the uplink at its root: an empty path costs no bytes on the wire.
    path: Annotated[str, Field(pattern=r"^[a-z]{0,8}$")] = ""


class UplinkConfig(Strict):
    """``[uplink]``: delivery behaviour."""

    reporting_time_s: Annotated[float, Field(ge=30, le=86400)] = 180.0
    retry_initial_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    retry_max_s: Annotated[float, Field(gt=0, le=3600)] = 60.0

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
    # Robustness: a spot is confirmed only if it grows (or appeared abruptly) or is far above the
    # threshold; large static surfaces, cooling objects and heat sources that drive away are not.
    growth_window_s: Annotated[float, Field(gt=0, le=600)] = 2.0
    growth_frac: Annotated[float, Field(gt=0, le=10)] = 0.3  # area growth over the window
    growth_k: Annotated[float, Field(gt=0, le=500)] = 5.0  # or peak rise over the window, K
    jump_k: Annotated[float, Field(gt=0, le=1000)] = 20.0  # appeared this far above its background
    far_above_k: Annotated[float, Field(ge=0, le=1000)] = 25.0  # small spots this hot: at once
    large_area_frac: Annotated[float, Field(gt=0, le=1)] = 0.01  # larger spots must grow
    cooling_k: Annotated[float, Field(gt=0, le=500)] = 0.5  # peak fall over the window: cooling
    background_tau_s: Annotated[float, Field(gt=0, le=86400)] = 60.0


class TrackerConfig(Strict):
    """``[detection.tracker]``: following detections across frames."""

    min_iou: Annotated[float, Field(ge=0, le=1)] = 0.1
    max_centre_dist: Annotated[float, Field(gt=0, le=20)] = 1.0  # in box diagonals, if IoU fails
    confirm_hits: Annotated[int, Field(ge=1, le=100)] = 3
    max_missed_s: Annotated[float, Field(gt=0, le=600)] = 2.0
    smoothing: Annotated[float, Field(gt=0, le=1)] = 0.5  # weight of the newest box and lying
    history_s: Annotated[float, Field(gt=0, le=86400)] = 600.0  # bottom-centre points kept


class LoiteringDetection(Strict):
    """``[detection.loitering]``: a person staying in one armed zone."""

    dwell_s: Annotated[float, Field(gt=0, le=86400)] = 60.0


class GatheringDetection(Strict):
    """``[detection.gathering]``: persons standing close together, for a while."""

    min_persons: Annotated[int, Field(ge=2, le=1000)] = 5
    hold_s: Annotated[float, Field(ge=0, le=86400)] = 10.0
    distance_heights: Annotated[float, Field(gt=0, le=50)] = 1.5  # closeness, in person heights


class PersonDownDetection(Strict):
    """``[detection.person_down]``: a person lying still, for a while."""

    after_s: Annotated[float, Field(gt=0, le=3600)] = 10.0
    lying_threshold: Annotated[float, Field(gt=0, le=1)] = 0.6
    aspect_ratio: Annotated[float, Field(gt=1, le=20)] = 1.4  # no lying score: width / height
    max_motion: Annotated[float, Field(gt=0, le=10)] = 0.5  # of the box's larger side


class MotionDetection(Strict):
    """``[detection.motion]``: thermal motion against a running background (any units)."""

    enabled: bool = True
    learn_s: Annotated[float, Field(gt=0, le=3600)] = 20.0  # background time constant
    sigma: Annotated[float, Field(gt=0, le=100)] = 6.0  # times the frame-to-frame noise
    min_contrast: Annotated[float, Field(ge=0, le=1)] = 0.03  # of the scene's value range
    min_area_frac: Annotated[float, Field(gt=0, le=1)] = 0.0005
    persist_frames: Annotated[int, Field(ge=1, le=1000)] = 3


class TamperDetection(Strict):
    """``[detection.tamper]``: covered, blinded, turned away or defocused camera."""

    enabled: bool = True
    learn_s: Annotated[float, Field(gt=0, le=3600)] = 5.0
    hold_s: Annotated[float, Field(gt=0, le=600)] = 3.0
    update_tau_s: Annotated[float, Field(gt=0, le=86400)] = 600.0  # reference drift, untampered
    covered_contrast: Annotated[float, Field(gt=0, lt=1)] = 0.15  # of the reference's contrast
    blinded_frac: Annotated[float, Field(gt=0, le=1)] = 0.3  # of pixels near the top of range
    turned_corr: Annotated[float, Field(ge=-1, lt=1)] = 0.2  # layout correlation below this
    defocus_ratio: Annotated[float, Field(gt=0, lt=1)] = 0.25  # of the reference's sharpness


class SensorWatchConfig(Strict):
    """``[detection.sensor]``: thermal sensor faults (no frames, frozen, out of range)."""

    no_frames_s: Annotated[float, Field(gt=0, le=3600)] = 5.0
    frozen_s: Annotated[float, Field(ge=2, le=3600)] = 5.0  # longer than a flat-field pause
    out_of_range_frac: Annotated[float, Field(gt=0, le=1)] = 0.25


def _resolve_path(value: str, info: ValidationInfo | None) -> Path:
    """A path from a config, relative to the config file's folder when it is not absolute."""
    path = Path(value).expanduser()
    base = (info.context or {}).get("config_dir") if info else None
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    return path.resolve()


class VisibleDetection(Strict):
    """``[detection.visible]``: a TFLite detection model on the visible camera."""

    enabled: bool = True
    model: str  # a .tflite file, relative to the site config's folder
    labels: str  # its label map: one label a line, or "id label" lines
    kind: Literal["auto", "ssd", "yolo"] = "auto"
    threads: Annotated[int, Field(ge=1, le=16)] | None = None  # None: the board's default
    score_threshold: Annotated[float, Field(gt=0, le=1)] = 0.5
    iou_threshold: Annotated[float, Field(gt=0, le=1)] = 0.45  # YOLO's NMS
    max_detections: Annotated[int, Field(ge=1, le=1000)] = 100
    resize: Literal["auto", "stretch", "letterbox"] = "auto"  # auto: ssd stretch, yolo letterbox
    # Model class c is label c + label_offset; None: 1 when the first line is "???"/background.
    label_offset: Annotated[int, Field(ge=0, le=1000)] | None = None
    class_map: dict[str, ObjectClass] = Field(default_factory=lambda: dict(DEFAULT_CLASS_MAP))
    _label_map: LabelMap = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def verify_files(self, info: ValidationInfo) -> VisibleDetection:
        """The model is a TFLite file, the label map parses, mapped labels exist in it."""
        errors: list[str] = []
        model = _resolve_path(self.model, info)
        labels = _resolve_path(self.labels, info)
        if not self.enabled:  # a unit without the model may carry it switched off
            object.__setattr__(self, "model", str(model))
            object.__setattr__(self, "labels", str(labels))
            return self
        try:
            check_tflite_file(model)
        except ModelError as exc:
            errors.append(f"model: {exc}")
        object.__setattr__(self, "model", str(model))
        try:
            self._label_map = load_labels(labels, self.label_offset)
        except ModelError as exc:
            errors.append(f"labels: {exc}")
        else:
            if "class_map" in self.model_fields_set:
                known = set(self._label_map.values())
                for label in self.class_map:
                    if label not in known:
                        errors.append(f"class_map.{label}: no such label in {labels}")
        object.__setattr__(self, "labels", str(labels))
        if errors:
            raise ValueError("\n".join(errors))
        return self

    @property
    def label_map(self) -> LabelMap:
        """Model class index to label, as read from the labels file."""
        return self._label_map


class SizeCheckConfig(Strict):
    """``[detection.size]``: objects measured in metres where their camera is calibrated."""

    # A person's larger side is never shorter: lying along the line of sight of a pole camera,
    # an adult measures 0.65 m or more (the foreshortened body), a child of 1.1 m about 0.42 m.
    person_min_m: Annotated[float, Field(gt=0, le=3)] = 0.4


class DetectionConfig(Strict):
    """``[detection]``."""

    fire: FireDetection = FireDetection()
    thermal_model: ThermalModelDetection = ThermalModelDetection()
    visible: VisibleDetection | None = None  # a TFLite model on the visible camera
    tracker: TrackerConfig = TrackerConfig()
    loitering: LoiteringDetection = LoiteringDetection()
    gathering: GatheringDetection = GatheringDetection()
    person_down: PersonDownDetection = PersonDownDetection()
    motion: MotionDetection = MotionDetection()
    tamper: TamperDetection = TamperDetection()
    sensor: SensorWatchConfig = SensorWatchConfig()
    size: SizeCheckConfig = SizeCheckConfig()


class CameraCalibration(Strict):
    """``[calibration.thermal]``, ``[calibration.visible]``: how a camera is mounted."""

    height_m: Annotated[float, Field(gt=0, le=100)]  # the lens above the ground
    pitch_deg: Annotated[float, Field(gt=0, lt=90)]  # the optical axis below the horizontal
    hfov_deg: Annotated[float, Field(gt=1, lt=170)] = 57.0  # Lepton 3 and 3.5: 57 degrees


class Calibration(Strict):
    """``[calibration]``: the cameras whose mounting is known (objects then have a size)."""

    thermal: CameraCalibration | None = None
    visible: CameraCalibration | None = None


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


class Mask(Strict):
    """``[masks.NAME]``: a privacy mask, blanked in a sensor's frames before detection."""

    sensor: Literal["thermal", "visible"]
    polygon: Annotated[list[Point], Field(min_length=3, max_length=64)]

    @field_validator("polygon")
    @classmethod
    def verify_polygon(cls, value: list[list[float]]) -> list[list[float]]:
        """The polygon must be simple and have an area."""
        poly = Polygon(value)
        if not poly.is_valid or poly.area <= 0:
            raise ValueError("polygon must be simple (not self-intersecting) and have an area")
        return value


Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ALL_DAYS: list[Day] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class Window(Strict):
    """One weekly window: starts on each of ``days`` at ``start``, ends at the next ``end``."""

    days: Annotated[list[Day], Field(min_length=1, max_length=7)] = Field(
        default_factory=lambda: list(ALL_DAYS)
    )
    start: str  # "22:00", or relative to the sun: "sunset+30min"
    end: str  # "05:00", "sunrise-15min"; at or before start means the next day

    @model_validator(mode="after")
    def verify_times(self) -> Window:
        """Both ends parse; a clock window is not empty; no day twice."""
        errors: list[str] = []
        specs: list[TimeSpec] = []
        for key in ("start", "end"):
            try:
                specs.append(parse_time_spec(getattr(self, key)))
            except ValueError as exc:
                errors.append(f"{key}: {exc}")
        if len(specs) == 2 and specs[0] == specs[1]:
            errors.append("end: the window would be empty (end equals start)")
        if len(set(self.days)) != len(self.days):
            errors.append("days: a day is listed twice")
        if errors:
            raise ValueError("\n".join(errors))
        return self

    @property
    def sun_relative(self) -> bool:
        """Whether either end is a sun event (needs the unit's coordinates)."""
        return any(parse_time_spec(t).event is not None for t in (self.start, self.end))


class Schedule(Strict):
    """``[schedules.NAME]``: weekly windows in the site's time zone."""

    windows: Annotated[list[Window], Field(min_length=1, max_length=16)]


class OutputLimits(Strict):
    """``[deterrence.limits.OUTPUT]``: what no rule or command may exceed for that output."""

    max_on_s: Seconds
    cooldown_s: Annotated[float, Field(ge=0, le=86400)] = 0.0
    # At most this many seconds on in any rolling hour (None: no duty-cycle limit).
    max_s_per_hour: Annotated[float, Field(gt=0, le=3600)] | None = None
    # Whether quiet hours silence it; None: sirens are audible, other kinds are not.
    audible: bool | None = None


class VoiceLimits(OutputLimits):
    """``[deterrence.voice]``: the same limits for voice clips (always audible)."""

    max_on_s: Seconds = 60.0

    @model_validator(mode="after")
    def verify_audible(self) -> VoiceLimits:
        """Quiet hours always hold voice clips back."""
        if self.audible is False:
            raise ValueError("audible: voice clips are always audible")
        return self


class StrobePattern(Strict):
    """A flashing pattern: ``on_s`` on, ``off_s`` off, repeated for the step's duration."""

    on_s: Annotated[float, Field(ge=0.05, le=60)]
    off_s: Annotated[float, Field(ge=0.05, le=60)]


class ProfileStep(Strict):
    """One step of a deterrence profile: an output (steady or flashing), or a voice clip."""

    output: Name | None = None
    voice: str | None = None  # a WAV clip, relative to the site config's folder
    at_s: Annotated[float, Field(ge=0, le=3600)] = 0.0
    for_s: Seconds | None = None  # None: until the output's max_on_s
    pattern: StrobePattern | None = None  # flash instead of steady light
    repeat: Annotated[int, Field(ge=1, le=10)] = 1  # voice: times the clip is played
    gap_s: Annotated[float, Field(ge=0, le=60)] = 1.0  # voice: silence between repeats
    _clip_s: float = PrivateAttr(default=0.0)

    @model_validator(mode="after")
    def verify_kind(self, info: ValidationInfo) -> ProfileStep:
        """Exactly one of output and voice; a clip exists and is a WAV aplay can play."""
        errors: list[str] = []
        if (self.output is None) == (self.voice is None):
            errors.append("output: a step has exactly one of output or voice")
        if self.output is not None:
            for key in ("repeat", "gap_s"):
                if key in self.model_fields_set:
                    errors.append(f"{key}: only for voice steps")
        if self.voice is not None:
            for key in ("for_s", "pattern"):
                if key in self.model_fields_set:
                    errors.append(f"{key}: a voice step lasts as long as its clip (see repeat)")
            base = (info.context or {}).get("config_dir") if info else None
            path = Path(self.voice).expanduser()
            if not path.is_absolute() and base is not None:
                path = Path(base) / path
            try:
                self._clip_s = clip_seconds(path)
            except ConfigError as exc:
                errors.append(f"voice: {exc}")
            else:
                object.__setattr__(self, "voice", str(path.resolve()))
        if errors:
            raise ValueError("\n".join(errors))
        return self

    @property
    def channel(self) -> str:
        """The output name, or ``voice`` for a clip."""
        return self.output if self.output is not None else VOICE

    @property
    def clip_s(self) -> float:
        """A voice clip's length in seconds (0 for output steps)."""
        return self._clip_s

    @property
    def voice_s(self) -> float:
        """How long a voice step plays, repeats and gaps included."""
        return self.repeat * self._clip_s + (self.repeat - 1) * self.gap_s


class Profile(Strict):
    """``[deterrence.profiles.NAME]``: an escalation of output steps."""

    steps: Annotated[list[ProfileStep], Field(min_length=1, max_length=16)]


class DeterrenceConfig(Strict):
    """``[deterrence]``."""

    limits: dict[Name, OutputLimits] = Field(default_factory=dict)
    profiles: dict[Name, Profile] = Field(default_factory=dict)
    voice: VoiceLimits = VoiceLimits()
    quiet_hours: Name | None = None  # a schedule: no siren or voice clip inside it


EventName = Literal[
    "fire", "person", "vehicle", "loitering", "gathering", "person_down", "motion_night", "tamper"
]
ClassName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_ -]{0,31}$")]


class Rule(Strict):
    """``[[rules]]``: when an event happens in a zone, raise an alarm and maybe deter."""

    name: Name
    event: EventName
    classes: Annotated[list[ClassName], Field(max_length=16)] = Field(default_factory=list)
    zones: Annotated[list[Name], Field(min_length=1)]
    schedule: Name | None = None  # only inside this schedule's windows
    min_duration_s: Annotated[float, Field(ge=0, le=3600)] = 0.0
    min_count: Annotated[int, Field(ge=1, le=1000)] = 1
    priority: Annotated[int, Field(ge=1, le=9)]
    profile: Name | None = None


class SiteConfig(Strict):
    """A whole site config file."""

    unit: UnitInfo
    receiver: ReceiverEndpoint
    uplink: UplinkConfig = UplinkConfig()
    detection: DetectionConfig = DetectionConfig()
    calibration: Calibration = Calibration()
    zones: dict[Name, Zone] = Field(default_factory=dict)
    masks: dict[Name, Mask] = Field(default_factory=dict)
    schedules: dict[Name, Schedule] = Field(default_factory=dict)
    deterrence: DeterrenceConfig = DeterrenceConfig()
    rules: list[Rule] = Field(default_factory=list)

    @model_validator(mode="after")
    def verify_references(self) -> SiteConfig:
        """Rules name zones, schedules and profiles that exist; profiles keep within limits."""
        errors: list[str] = []
        names: set[str] = set()
        schedules = ", ".join(sorted(self.schedules)) or "none"
        has_place = self.unit.latitude is not None and self.unit.longitude is not None
        for sname, sched in self.schedules.items():
            for j, window in enumerate(sched.windows):
                if window.sun_relative and not has_place:
                    errors.append(
                        f"schedules.{sname}.windows[{j}]: times relative to the sun need "
                        "unit.latitude and unit.longitude"
                    )
        if VOICE in self.deterrence.limits:
            errors.append(
                f"deterrence.limits.{VOICE}: voice clips have their limits in [deterrence.voice]"
            )
        quiet = self.deterrence.quiet_hours
        if quiet is not None and quiet not in self.schedules:
            errors.append(f"deterrence.quiet_hours: no schedule {quiet!r} (defined: {schedules})")
        for i, rule in enumerate(self.rules):
            where = f"rules[{i}]"
            if rule.name in names:
                errors.append(f"{where}.name: rule name {rule.name!r} is used twice")
            names.add(rule.name)
            if rule.schedule is not None and rule.schedule not in self.schedules:
                errors.append(
                    f"{where}.schedule: no schedule {rule.schedule!r} (defined: {schedules})"
                )
            if rule.event == "fire" and rule.classes:
                errors.append(f"{where}.classes: fire events have no classes")
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
            spans: dict[str, list[tuple[float, float, int]]] = {}
            for j, step in enumerate(profile.steps):
                where = f"deterrence.profiles.{pname}.steps[{j}]"
                limits_of = self.deterrence.limits.get(step.channel)
                length = step.voice_s if step.output is None else step.for_s
                if length is None:
                    length = limits_of.max_on_s if limits_of is not None else 0.0
                for start, end, k in spans.get(step.channel, []):
                    if step.at_s < end and start < step.at_s + length:
                        errors.append(f"{where}.at_s: overlaps steps[{k}] on {step.channel}")
                        break
                spans.setdefault(step.channel, []).append((step.at_s, step.at_s + length, j))
                if step.output is None:
                    voice_max = self.deterrence.voice.max_on_s
                    if step.voice_s > voice_max:
                        errors.append(
                            f"{where}.voice: plays {step.voice_s:g} s (repeats included), more "
                            f"than deterrence.voice.max_on_s of {voice_max:g} s"
                        )
                    continue
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
