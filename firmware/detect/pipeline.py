"""The detection pipelines: one frame in, the rule events and the camera's health out.

thermal frame -> privacy mask -> sensor watch, tamper -> fire (radiometric) + object model +
motion -> size check -> tracker -> events. visible frame -> privacy mask -> visible model -> size
check -> tracker -> events. The size check runs for a camera the site has calibrated.
A detector whose events no rule asks for is not run at all: a unit that only watches for fire
does not pay for the object model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from firmware.config.site import SiteConfig
from firmware.detect.base import Detection
from firmware.detect.events import EventDeriver
from firmware.detect.fire import FireDetector, HotSpot
from firmware.detect.geometry import size_check
from firmware.detect.masks import PrivacyMask
from firmware.detect.motion import MotionDetector
from firmware.detect.tamper import SensorFault, SensorWatch, TamperDetector, TamperKind
from firmware.detect.thermal import ThermalDetector
from firmware.detect.tracker import Track, Tracker
from firmware.detect.visible import VisibleDetector
from firmware.hal.base import ThermalFrame, VisibleFrame
from firmware.rules.engine import Event, fire_events

logger = logging.getLogger(__name__)

# Rule events that need objects (tracks) from a model, and the one that needs motion blobs.
OBJECT_EVENTS = frozenset({"person", "vehicle", "loitering", "gathering", "person_down"})
MOTION_EVENTS = frozenset({"motion_night"})


@dataclass
class FrameResult:
    """What one frame gave."""

    events: list[Event] = field(default_factory=list)
    spots: list[HotSpot] = field(default_factory=list)
    detections: list[Detection] = field(default_factory=list)
    tracks: list[Track] = field(default_factory=list)
    tamper: TamperKind | None = None
    sensor_fault: SensorFault | None = None


def _wanted(site: SiteConfig, sensor: str) -> set[str]:
    """The rule events on zones of this sensor."""
    return {
        rule.event
        for rule in site.rules
        for zone in rule.zones
        if zone in site.zones and site.zones[zone].sensor == sensor
    }


class ThermalPipeline:
    """Everything the unit does with one thermal frame."""

    def __init__(
        self,
        site: SiteConfig,
        width: int,
        height: int,
        radiometric: bool,
        detector: ThermalDetector | None = None,
    ) -> None:
        det = site.detection
        wanted = _wanted(site, "thermal")
        self.mask = PrivacyMask.for_sensor(site, "thermal", width, height)
        self.fire = FireDetector(det.fire) if det.fire.enabled and radiometric else None
        if det.fire.enabled and not radiometric:
            logger.warning("fire detection is off: the thermal camera is not radiometric")
        self.detector: ThermalDetector | None = None
        if wanted & OBJECT_EVENTS and det.thermal_model.enabled:
            self.detector = detector or ThermalDetector(det.thermal_model)
        self.motion = MotionDetector(det.motion) if wanted & MOTION_EVENTS else None
        self.size = size_check(site.calibration.thermal, det.size.person_min_m, width, height)
        self.tracker = Tracker(det.tracker)
        self.events = EventDeriver(site)
        self.tamper = TamperDetector(det.tamper) if det.tamper.enabled else None
        self.watch = SensorWatch(det.sensor)
        logger.info(
            "thermal pipeline %dx%d: fire %s, object model %s, size check %s, motion %s, tamper %s",
            width,
            height,
            "on" if self.fire else "off",
            self.detector.path.name if self.detector else "off",
            "on" if self.size else "off (not calibrated)",
            "on" if self.motion else "off",
            "on" if self.tamper else "off",
        )

    def process(self, frame: ThermalFrame) -> FrameResult:
        """One frame through every stage; blocking (run it in a thread)."""
        result = FrameResult(sensor_fault=self.watch.on_frame(frame))
        frame = self.mask.apply_frame(frame)
        # The object model runs on its own thread while tamper, fire and motion look at the frame.
        running = self.detector.start(frame) if self.detector is not None else None
        if self.tamper is not None:
            result.tamper = self.tamper.process(frame)
        if self.fire is not None:
            result.spots = self.fire.process(frame)
            result.events += fire_events(frame, result.spots)
        blobs = self.motion.process(frame) if self.motion is not None else []
        if self.detector is not None and running is not None:
            result.detections = self.detector.finish(frame, running.result())
            if self.size is not None:
                result.detections = self.size.apply(result.detections)
            result.tracks = self.tracker.update(frame.t, result.detections)
        if self.detector is not None or blobs:
            result.events += self.events.derive(frame.t, frame.index, result.tracks, blobs)
        return result


class VisiblePipeline:
    """Everything the unit does with one visible frame (nothing is stored or sent)."""

    def __init__(
        self, site: SiteConfig, width: int, height: int, detector: VisibleDetector
    ) -> None:
        self.mask = PrivacyMask.for_sensor(site, "visible", width, height)
        self.detector = detector
        self.size = size_check(
            site.calibration.visible, site.detection.size.person_min_m, width, height
        )
        self.tracker = Tracker(site.detection.tracker)
        self.events = EventDeriver(site)

    def process(self, frame: VisibleFrame) -> FrameResult:
        """One frame through mask, model, tracker and events; blocking (run it in a thread)."""
        masked = self.mask.apply_frame(frame)
        detections = self.detector.detect(masked)
        if self.size is not None:
            detections = self.size.apply(detections)
        tracks = self.tracker.update(frame.t, detections)
        events = self.events.derive(frame.t, frame.index, tracks, motion_sensor="visible")
        return FrameResult(events=events, detections=detections, tracks=tracks)
