"""Runs a TFLite model: ai-edge-litert's interpreter, or tflite-runtime's where LiteRT is absent.

Both use XNNPACK on the CPU by default. Quantised outputs come back dequantised to float32 (or, for
a decoder that reads a few cells of them, as the integers), with the scale and zero point the model
itself states; nothing about a model is assumed that it says.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from firmware.errors import ModelError

logger = logging.getLogger(__name__)

TFLITE_IDENTIFIER = b"TFL3"  # the flatbuffer file identifier, bytes 4..8 of every .tflite file


@dataclass(frozen=True)
class TensorInfo:
    """One input or output tensor as the model declares it."""

    name: str
    index: int
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    scale: float  # 0.0 when the tensor is not quantised
    zero_point: int

    @property
    def quantized(self) -> bool:
        """Whether values are integers standing for ``scale * (q - zero_point)``."""
        return self.scale != 0.0 and self.dtype.kind in "iu"


def _interpreter_class() -> tuple[Any, str]:
    """The interpreter class and the library it comes from, LiteRT first."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter as TfliteInterpreter

        return TfliteInterpreter, "tflite-runtime"
    except ImportError:
        raise ModelError(
            "no TFLite interpreter is installed: install ai-edge-litert (or tflite-runtime)"
        ) from None


def check_tflite_file(path: Path) -> None:
    """Raise :class:`ModelError` unless ``path`` is a readable file with the TFLite identifier."""
    try:
        with path.open("rb") as f:
            head = f.read(8)
    except FileNotFoundError:
        raise ModelError(f"{path}: no such model file") from None
    except IsADirectoryError:
        raise ModelError(f"{path}: is a directory, not a model file") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the model: {exc.strerror}") from exc
    if len(head) < 8 or head[4:8] != TFLITE_IDENTIFIER:
        raise ModelError(f"{path}: not a TFLite model (no {TFLITE_IDENTIFIER!r} identifier)")


def dequantize(q: npt.NDArray[Any], scale: float, zero_point: int) -> npt.NDArray[np.float32]:
    """Integer tensor values to the real values they stand for."""
    return (q.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)


def _tensor_info(detail: dict[str, Any]) -> TensorInfo:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return TensorInfo(
        name=str(detail["name"]),
        index=int(detail["index"]),
        shape=tuple(int(d) for d in detail["shape"]),
        dtype=np.dtype(detail["dtype"]),
        scale=float(scale),
        zero_point=int(zero_point),
    )


class ModelRunner:
    """A loaded model with one input: set it, invoke, read dequantised outputs."""

    def __init__(self, path: Path | str, threads: int = 1) -> None:
        self.path = Path(path)
        if threads < 1:
            raise ModelError(f"{self.path}: threads must be at least 1 (got {threads})")
        self.threads = threads
        check_tflite_file(self.path)
        interpreter_cls, self.backend = _interpreter_class()
        try:
            self._interp = interpreter_cls(model_path=str(self.path), num_threads=threads)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            detail = " ".join(str(exc).split())
            raise ModelError(f"{self.path}: not a valid TFLite model ({detail})") from exc
        self.inputs = [_tensor_info(d) for d in self._interp.get_input_details()]
        self.outputs = [_tensor_info(d) for d in self._interp.get_output_details()]
        if len(self.inputs) != 1:
            raise ModelError(
                f"{self.path}: the model has {len(self.inputs)} inputs; only one-input models "
                "are supported"
            )
        self.input = self.inputs[0]
        self.output_names = [o.name for o in self.outputs]
        logger.info(
            "loaded %s with %s (%d thread(s)): input %s %s, %d output(s)",
            self.path,
            self.backend,
            threads,
            self.input.shape,
            self.input.dtype,
            len(self.outputs),
        )

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The input tensor's shape, as the model declares it."""
        return self.input.shape

    @property
    def input_dtype(self) -> np.dtype[Any]:
        """The input tensor's element type."""
        return self.input.dtype

    @property
    def input_quantization(self) -> tuple[float, int]:
        """The input's (scale, zero point); (0.0, 0) for a float input."""
        return self.input.scale, self.input.zero_point

    def expect_input(
        self,
        *,
        rank: int = 4,
        channels: int | None = None,
        dtypes: Sequence[str] = ("uint8", "int8", "float32"),
    ) -> None:
        """Raise :class:`ModelError` unless the input is what the caller feeds (NHWC, batch 1)."""
        shape, problems = self.input.shape, []
        if len(shape) != rank:
            problems.append(f"input rank is {len(shape)} {shape}, expected {rank}")
        else:
            if rank == 4 and shape[0] != 1:
                problems.append(f"input batch is {shape[0]}, expected 1")
            if channels is not None and shape[-1] != channels:
                problems.append(
                    f"input has {shape[-1]} channel(s) in its last axis {shape}, expected "
                    f"{channels} (an NHWC image input)"
                )
        if self.input.dtype.name not in dtypes:
            problems.append(
                f"input type is {self.input.dtype.name}, expected one of {list(dtypes)}"
            )
        if problems:
            raise ModelError(f"{self.path}: " + "; ".join(problems))

    def quantize(self, x: npt.ArrayLike) -> npt.NDArray[Any]:
        """Real values to the input's integer type with the model's scale and zero point."""
        arr = np.asarray(x, dtype=np.float32)
        if not self.input.quantized:
            return arr.astype(self.input.dtype)
        info = np.iinfo(self.input.dtype)
        # One new buffer, then in place: this runs on every frame.
        q = np.divide(arr, np.float32(self.input.scale))
        np.rint(q, out=q)
        q += np.float32(self.input.zero_point)
        np.clip(q, info.min, info.max, out=q)
        return q.astype(self.input.dtype)

    def _check_input(self, x: npt.NDArray[Any]) -> None:
        if x.shape != self.input.shape:
            raise ModelError(
                f"{self.path}: input array has shape {x.shape}, the model takes {self.input.shape}"
            )
        if x.dtype != self.input.dtype:
            raise ModelError(
                f"{self.path}: input array is {x.dtype}, the model takes {self.input.dtype} "
                "(use quantize() for real values)"
            )

    def set_input(self, x: npt.NDArray[Any]) -> None:
        """Copy an input array (exact shape and type) into the model."""
        self._check_input(x)
        self._interp.set_tensor(self.input.index, x)

    def input_buffer(self) -> npt.NDArray[Any]:
        """A view of the model's input tensor, to write into without a copy.

        Drop the view before calling :meth:`run`: the interpreter refuses to run while one is held.
        """
        view: npt.NDArray[Any] = self._interp.tensor(self.input.index)()
        return view

    def run_raw(self) -> list[npt.NDArray[Any]]:
        """Invoke on the input already set; outputs in the model's order as the model gives them
        (quantised ones as integers, their scale and zero point in ``outputs``). A decoder that
        reads a few cells of a large output dequantises those alone."""
        try:
            self._interp.invoke()
        except RuntimeError as exc:
            raise ModelError(f"{self.path}: invoke failed: {exc}") from exc
        return [self._interp.get_tensor(out.index) for out in self.outputs]

    def run(self) -> list[npt.NDArray[np.float32]]:
        """Invoke on the input already set; outputs in the model's order, dequantised."""
        return [
            dequantize(value, out.scale, out.zero_point)
            if out.quantized
            else np.asarray(value, dtype=np.float32)
            for value, out in zip(self.run_raw(), self.outputs, strict=True)
        ]

    def invoke(self, x: npt.NDArray[Any]) -> list[npt.NDArray[np.float32]]:
        """Set the input and run; outputs in the model's order, dequantised to float32."""
        self.set_input(x)
        return self.run()

    def invoke_named(self, x: npt.NDArray[Any]) -> dict[str, npt.NDArray[np.float32]]:
        """As :meth:`invoke`, keyed by output tensor name."""
        return dict(zip(self.output_names, self.invoke(x), strict=True))
