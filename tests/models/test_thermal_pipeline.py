"""The thermal training pipeline's own pieces, without TensorFlow: targets, metrics, card."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from firmware.detect.thermal import CLASSES, DEFAULT_MODEL, Heads, decode
from models.thermal import dataset, evaluate, metrics
from models.thermal.metrics import ClassResult, GroundTruth, Scored, match_image
from models.thermal.targets import OUT_HW, STRIDE, encode
from sim import world

MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "thermal"


def _heads_from_targets(truths: list[GroundTruth], frame_hw: tuple[int, int]) -> Heads:
    heat, reg, lying, _ = encode(truths, frame_hw)
    return Heads(heat, reg[..., :4], lying[..., :1])


@pytest.mark.parametrize("frame_hw", [(120, 160), (24, 32)])
def test_targets_decode_back_to_the_boxes(frame_hw: tuple[int, int]) -> None:
    sy, sx = frame_hw[0] / 120, frame_hw[1] / 160
    truths = [
        GroundTruth("person", (20.3 * sx, 30.1 * sy, 28.9 * sx, 62.7 * sy), lying=False),
        GroundTruth("person", (90.0 * sx, 80.0 * sy, 121.5 * sx, 91.0 * sy), lying=True),
        GroundTruth("vehicle", (40.0 * sx, 5.0 * sy, 110.0 * sx, 50.0 * sy)),
        GroundTruth("animal", (140.2 * sx, 100.4 * sy, 149.0 * sx, 106.0 * sy)),
    ]
    found = decode(_heads_from_targets(truths, frame_hw), frame_hw, score_threshold=0.99)
    assert sorted(d.cls for d in found) == sorted(t.cls for t in truths)
    for gt in truths:
        det = max((d for d in found if d.cls == gt.cls), key=lambda d: metrics.iou(d.box, gt.box))
        assert det.box == pytest.approx(gt.box, abs=1e-3)
        if gt.cls == "person":
            assert det.lying == (1.0 if gt.lying else 0.0)
        else:
            assert det.lying is None


def test_ignored_objects_are_left_out_of_the_heatmap_loss() -> None:
    kept = GroundTruth("person", (20.0, 20.0, 28.0, 50.0))
    ignored = GroundTruth("person", (100.0, 60.0, 101.0, 62.0), ignore=True)
    heat, reg, _, weight = encode([kept, ignored], (120, 160))
    assert heat.shape == (*OUT_HW, len(CLASSES))
    ignored_cell = (60 // STRIDE, 100 // STRIDE)
    assert weight[(*ignored_cell, 0)] == 0.0  # the ignored person's cell
    assert weight[35 // STRIDE, 24 // STRIDE, 0] == 1.0  # the kept person's centre cell
    assert heat[..., 0].max() == 1.0 and heat[(*ignored_cell, 0)] < 0.01
    assert reg[..., 4].sum() == 1.0  # only the kept one is a regression target


def test_decode_keeps_only_local_peaks_above_threshold_and_suppresses_overlaps() -> None:
    heat = np.zeros((*OUT_HW, 3), dtype=np.float32)
    heat[10, 10, 0] = 0.9
    heat[10, 11, 0] = 0.8  # a neighbour of a stronger peak: not a peak
    heat[20, 30, 1] = 0.3  # below the threshold
    heat[10, 10, 2] = 0.6  # another class on the same spot and size: NMS keeps the person
    reg = np.zeros((*OUT_HW, 4), dtype=np.float32)
    reg[..., 2:] = math.log(4.0)
    lying = np.full((*OUT_HW, 1), 0.25, dtype=np.float32)
    found = decode(Heads(heat, reg, lying), (120, 160), score_threshold=0.5, nms_iou=0.6)
    assert len(found) == 1
    assert found[0].cls == "person" and found[0].score == pytest.approx(0.9)
    # Centre at cell (10, 10), 4 cells wide and tall, in frame pixels.
    assert found[0].box == pytest.approx((8.0 * STRIDE, 8.0 * STRIDE, 12.0 * STRIDE, 12.0 * STRIDE))
    assert found[0].lying == pytest.approx(0.25)
    both = decode(Heads(heat, reg, lying), (120, 160), score_threshold=0.5, nms_iou=1.0)
    assert sorted(d.cls for d in both) == ["animal", "person"]


def _result(dets: list[tuple[float, bool]], positives: int) -> ClassResult:
    res = ClassResult(positives=positives)
    for score, hit in dets:
        res.scores.append(score)
        res.hits.append(hit)
    return res


def test_average_precision_on_hand_made_cases() -> None:
    assert metrics.average_precision(_result([(0.9, True), (0.8, True)], 2)) == 1.0
    # hit, miss, hit over 2 objects: precision 1 up to recall 0.5, then 2/3 up to recall 1.
    assert metrics.average_precision(
        _result([(0.9, True), (0.8, False), (0.7, True)], 2)
    ) == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)
    # The envelope: a later higher precision lifts the earlier points.
    assert metrics.average_precision(
        _result([(0.9, False), (0.8, True), (0.7, True)], 2)
    ) == pytest.approx(2 / 3)
    assert metrics.average_precision(_result([(0.9, True)], 4)) == pytest.approx(0.25)
    assert metrics.average_precision(_result([], 3)) == 0.0
    assert math.isnan(metrics.average_precision(_result([(0.5, False)], 0)))


def test_matching_counts_duplicates_as_false_and_ignores_ignored_objects() -> None:
    truths = [
        GroundTruth("person", (0, 0, 10, 20)),
        GroundTruth("person", (50, 50, 52, 53), ignore=True),
        GroundTruth("animal", (80, 80, 90, 85)),
    ]
    dets = [
        Scored("person", 0.9, (1, 0, 10, 20)),
        Scored("person", 0.8, (0, 1, 10, 21)),  # a duplicate of the same person
        Scored("person", 0.7, (50, 50, 52, 53)),  # on the ignored one: not counted
        Scored("person", 0.6, (80, 80, 90, 85)),  # the cat called a person: false
    ]
    res = ClassResult()
    match_image(res, "person", truths, dets)
    assert res.positives == 1
    assert res.scores == [0.9, 0.8, 0.6]
    assert res.hits == [True, False, False]
    assert metrics.precision_recall(res, 0.85) == (1.0, 1.0)
    assert metrics.precision_recall(res, 0.5) == pytest.approx((1 / 3, 1.0))


def test_a_detection_mostly_inside_an_ignored_object_is_not_counted() -> None:
    """Caltech's rule for ignore regions: the detection's share inside the box, not the IoU."""
    truths = [GroundTruth("person", (40, 40, 46, 60), ignore=True)]
    dets = [
        Scored("person", 0.9, (41, 44, 44, 52)),  # inside it, IoU 0.2: not counted
        Scored("person", 0.8, (43, 40, 50, 60)),  # more than half outside: false
    ]
    assert metrics.iou(dets[0].box, truths[0].box) < 0.5
    res = ClassResult()
    match_image(res, "person", truths, dets)
    assert res.positives == 0
    assert res.scores == [0.8] and res.hits == [False]


def test_lying_accuracy_counts_matched_persons_only() -> None:
    truths = [
        GroundTruth("person", (0, 0, 20, 8), lying=True),
        GroundTruth("person", (40, 0, 48, 20), lying=False),
    ]
    dets = [
        Scored("person", 0.9, (0, 0, 20, 8), lying=0.8),
        Scored("person", 0.9, (40, 0, 48, 20), lying=0.7),  # standing called lying
        Scored("person", 0.9, (100, 100, 110, 120), lying=0.9),  # matches nobody
    ]
    res = ClassResult()
    match_image(res, "person", truths, dets)
    assert metrics.lying_accuracy(res, 0.5) == (0.5, 2)


def test_card_reports_the_committed_metrics() -> None:
    path = MODEL_DIR / "metrics.json"
    result = evaluate.read_json(path)
    card = (MODEL_DIR / "MODEL_CARD.md").read_text()
    for row in evaluate.table_rows(result) + evaluate.lying_rows(result):
        assert row in card
    person = result["sensors"]["lepton35"]["classes"]["person"]
    assert f"{person['precision']:.3f}" in card
    assert (MODEL_DIR / "labels.txt").read_text().split() == list(CLASSES)
    assert result["model_bytes"] == (MODEL_DIR / DEFAULT_MODEL.name).stat().st_size


def test_the_committed_model_meets_the_lepton35_person_target() -> None:
    result = evaluate.read_json(MODEL_DIR / "metrics.json")
    person = result["sensors"]["lepton35"]["classes"]["person"]
    assert person["precision"] >= 0.90 and person["recall"] >= 0.90


def test_training_worlds_add_animals_near_the_camera_and_keep_the_rest() -> None:
    """Near animals are drawn last, so a world's persons, cars and other animals stay as they
    were; they stand in the lower part of the image; validation and test worlds get none."""
    added = 0
    for i in range(24):
        if i % dataset.WILDLIFE_EVERY == dataset.WILDLIFE_EVERY - 1:
            continue  # a wildlife world (next test)
        near, seed, _ = dataset.split_world(7, "train", i)
        plain = dataset.random_spec(np.random.default_rng(seed))
        assert near.persons == plain.persons and near.cars == plain.cars
        assert near.animals[: len(plain.animals)] == plain.animals
        extra = {a.name for a in near.animals[len(plain.animals) :]}
        added += bool(extra)
        for obj in world.ParkingLotWorld(near, 160, 120, seed).truth(0.0):
            if obj.name in extra and obj.visible > 0:
                assert obj.box[3] >= 0.5, f"world {i}: {obj.name} is not near the camera"
    assert 4 <= added <= 18  # about half of them
    for split in ("val", "test"):
        for i in range(8):
            spec, seed, _ = dataset.split_world(7, split, i)
            assert spec == dataset.random_spec(np.random.default_rng(seed))


def test_some_training_worlds_are_a_low_camera_close_to_animals() -> None:
    """Every WILDLIFE_EVERY-th training world: a trail camera's view of animals and nothing else,
    where an animal is larger than it ever is from a pole; validation and test get none."""
    every = dataset.WILDLIFE_EVERY
    largest = 0.0
    for i in range(every - 1, 6 * every, every):
        spec, seed, _ = dataset.split_world(7, "train", i)
        assert spec.camera.height_m <= 1.5
        assert spec.animals and not spec.persons and not spec.cars and not spec.groups
        for obj in world.ParkingLotWorld(spec, 160, 120, seed).truth(0.0):
            assert obj.cls == "animal"
            largest = max(largest, (obj.box[2] - obj.box[0]) * 160)
    assert largest >= 12  # pixels: a pole never sees an animal this wide (about 8 at most)
    for split in ("val", "test"):
        spec, _, _ = dataset.split_world(7, split, every - 1)
        assert spec.camera.height_m >= 4.0


class _Var:
    """A variable as Keras keeps one: its value as numpy, and assign."""

    def __init__(self, value: np.ndarray) -> None:
        self.value = value

    def numpy(self) -> np.ndarray:
        return self.value

    def assign(self, value: np.ndarray) -> None:
        self.value = np.array(value)


class _Model:
    def __init__(self, weights: list[np.ndarray]) -> None:
        self.weights = weights
        self.trainable_variables = weights[:1]

    def get_weights(self) -> list[np.ndarray]:
        return self.weights

    def set_weights(self, weights: list[np.ndarray]) -> None:
        self.weights = [np.array(w) for w in weights]


class _Optimizer:
    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.variables: list[_Var] = []

    def build(self, variables: list[np.ndarray]) -> None:
        self.variables = [_Var(np.zeros(3)) for _ in range(self.slots)]


def test_a_training_checkpoint_resumes_where_it_was_saved(tmp_path: Path) -> None:
    """Weights, optimizer state, the shuffling generator and the history come back; a checkpoint
    of other settings, or a cleared one, starts the run afresh and changes nothing."""
    from models.thermal.train import Checkpoint, clear_checkpoint

    settings = {"seed": 5, "epochs": 4}
    model = _Model([np.arange(4.0), np.full((2, 2), 7.0)])
    opt = _Optimizer(2)
    opt.build(model.trainable_variables)
    opt.variables[0].assign(np.array([1.0, 2.0, 3.0]))
    rng = np.random.default_rng(1)
    rng.random(10)
    history = [{"epoch": 1, "loss": 2.5}, {"epoch": 2, "loss": 2.0}]
    Checkpoint(tmp_path, settings).save(model, opt, rng, history)
    expected_next = rng.random(3)

    fresh, fresh_opt = _Model([np.zeros(4), np.zeros((2, 2))]), _Optimizer(2)
    fresh_rng = np.random.default_rng(99)
    assert Checkpoint(tmp_path, settings).restore(fresh, fresh_opt, fresh_rng) == history
    assert all(np.array_equal(a, b) for a, b in zip(fresh.weights, model.weights, strict=True))
    assert np.array_equal(fresh_opt.variables[0].numpy(), [1.0, 2.0, 3.0])
    assert np.array_equal(fresh_rng.random(3), expected_next)

    other, other_opt = _Model([np.zeros(4), np.zeros((2, 2))]), _Optimizer(2)
    assert Checkpoint(tmp_path, {**settings, "epochs": 5}).restore(other, other_opt, rng) == []
    assert not other.weights[0].any() and other_opt.variables == []
    clear_checkpoint(tmp_path)
    assert Checkpoint(tmp_path, settings).restore(other, other_opt, rng) == []


def test_the_tuning_sweep_gives_the_evaluations_precision_and_recall() -> None:
    """At the operating score the sweep agrees with the card's evaluation; recall only falls
    as the score rises; frames of two sensors are refused."""
    frames = dataset.generate("test", 3, 7, ["lepton35"], workers=1)
    operating = evaluate.ThermalModelDetection().score_threshold
    scores = [0.2, operating, 0.6]
    sweep = evaluate.person_sweep(DEFAULT_MODEL, frames, scores)
    person = evaluate.evaluate(DEFAULT_MODEL, frames)["sensors"]["lepton35"]["classes"]["person"]
    assert person["objects"] > 0
    assert sweep[1] == (operating, person["precision"], person["recall"])
    recalls = [r for _, _, r in sweep]
    assert recalls == sorted(recalls, reverse=True)
    two = [*frames, dataclasses.replace(frames[0], sensor="lepton3")]
    with pytest.raises(ValueError, match="one sensor"):
        evaluate.person_sweep(DEFAULT_MODEL, two, scores)
