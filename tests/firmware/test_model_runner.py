"""The TFLite model runner: loading, the model's own quantisation, invoking, and clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from firmware.detect.runner import ModelRunner, dequantize
from firmware.errors import ModelError, PolewatchError

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SSD = DATA / "models" / "ssd_mobilenet_v1_coco_quant" / "detect.tflite"

needs_model = pytest.mark.skipif(
    not SSD.is_file(), reason=f"reference model not found at {SSD} (../shared/data is absent)"
)


@pytest.fixture(scope="module")
def runner() -> ModelRunner:
    if not SSD.is_file():
        pytest.skip(f"reference model not found at {SSD}")
    return ModelRunner(SSD, threads=1)


@needs_model
def test_loads_the_reference_model_and_reads_its_quantisation(runner: ModelRunner) -> None:
    assert runner.backend in ("ai-edge-litert", "tflite-runtime")
    assert runner.input_shape == (1, 300, 300, 3)
    assert runner.input_dtype == np.uint8
    scale, zero_point = runner.input_quantization
    assert scale == pytest.approx(1 / 128)
    assert zero_point == 128
    assert [o.shape for o in runner.outputs] == [(1, 10, 4), (1, 10), (1, 10), (1,)]
    assert all(not o.quantized for o in runner.outputs)


@needs_model
def test_quantize_uses_the_model_scale_and_zero_point(runner: ModelRunner) -> None:
    q = runner.quantize(np.array([-1.0, 0.0, 0.5, 0.9921875, 5.0]))
    assert q.dtype == np.uint8
    assert q.tolist() == [0, 128, 192, 255, 255]  # 5.0 saturates


@needs_model
def test_invoke_returns_float_outputs_in_order_and_by_name(runner: ModelRunner) -> None:
    x = np.full(runner.input_shape, 128, dtype=np.uint8)
    outs = runner.invoke(x)
    assert len(outs) == 4
    assert all(o.dtype == np.float32 for o in outs)
    boxes, _, scores, count = outs
    assert boxes.shape == (1, 10, 4)
    assert 0 <= int(count[0]) <= 10
    assert np.all((scores >= 0) & (scores <= 1))
    named = runner.invoke_named(x)
    assert list(named) == runner.output_names
    np.testing.assert_array_equal(named[runner.output_names[0]], boxes)


@needs_model
def test_threads_are_the_callers(runner: ModelRunner) -> None:
    two = ModelRunner(SSD, threads=2)
    assert two.threads == 2
    x = np.zeros(two.input_shape, dtype=np.uint8)
    for a, b in zip(two.invoke(x), runner.invoke(x), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_missing_file_is_a_model_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.tflite"
    with pytest.raises(ModelError, match=r"absent\.tflite: no such model file") as info:
        ModelRunner(path)
    assert isinstance(info.value, PolewatchError) and isinstance(info.value, ValueError)


def test_random_bytes_are_not_a_model(tmp_path: Path) -> None:
    path = tmp_path / "random.tflite"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ModelError, match=r"random\.tflite: not a TFLite model"):
        ModelRunner(path)


def test_a_directory_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="is a directory"):
        ModelRunner(tmp_path)


@needs_model
def test_truncated_model_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "truncated.tflite"
    path.write_bytes(SSD.read_bytes()[:100_000])  # keeps the TFL3 identifier, loses the rest
    with pytest.raises(ModelError, match=r"truncated\.tflite: not a valid TFLite model"):
        ModelRunner(path)


@needs_model
def test_input_expectations_are_checked(runner: ModelRunner) -> None:
    runner.expect_input(rank=4, channels=3)
    with pytest.raises(ModelError, match=r"detect\.tflite: input has 3 channel\(s\).*expected 1"):
        runner.expect_input(channels=1)
    with pytest.raises(ModelError, match="input rank is 4"):
        runner.expect_input(rank=3)
    with pytest.raises(ModelError, match="input type is uint8"):
        runner.expect_input(dtypes=("float32",))


@needs_model
def test_wrong_input_array_is_refused_at_invoke(runner: ModelRunner) -> None:
    with pytest.raises(
        ModelError, match=r"detect\.tflite: input array has shape \(1, 224, 224, 3\)"
    ):
        runner.invoke(np.zeros((1, 224, 224, 3), dtype=np.uint8))
    with pytest.raises(ModelError, match="input array is float32"):
        runner.invoke(np.zeros(runner.input_shape, dtype=np.float32))


def test_threads_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="threads must be at least 1"):
        ModelRunner(tmp_path / "x.tflite", threads=0)


def test_dequantize() -> None:
    q = np.array([-128, 0, 127], dtype=np.int8)
    np.testing.assert_allclose(dequantize(q, 0.5, -28), [-50.0, 14.0, 77.5])
