"""The CPU detector: any YOLO, YOLOX, SSD or PicoDet .onnx, through onnxruntime.

`eyes.detector.model` names a manifest model or an .onnx file; by default it is the manifest's
document layout PicoDet, and "yolox-nano" (COCO's 80 everyday objects) lets "what is this" say
"cup". `eyes.detector.format` ("auto" by default) picks the output parser: yolo.py, yolox.py,
ssd.py or picodet.py, told apart by the outputs' shapes and names. Labels:
`eyes.detector.labels`, else the model's own metadata, else COCO.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pendant.core.errors import ModelError
from pendant.core.model_cache import load_manifest, model_path
from pendant.eyes import model_threads, prepared_models
from pendant.eyes.detectors import (
    COCO,
    Detection,
    Detector,
    picodet,
    read_labels,
    ssd,
    yolo,
    yolox,
)
from pendant.eyes.detectors.boxes import Geometry, InputSpec, Raw, select

if TYPE_CHECKING:
    from pendant.core.config import Config

# The layout model stays the default; the COCO one (`eyes.detector.model = "yolox-nano"`,
# everyday objects: cup, person, cat) is as small (3.7 MB, YOLOX-Nano at 416 x 416).
DEFAULT_MODEL = "picodet-layout"
COCO_MODEL = "yolox-nano"
NMS_IOU = 0.45
DEFAULT_SIZE = {"yolo": 640, "yolox": 416, "ssd": 300, "picodet": 608}


class CpuDetector(Detector):
    """A YOLO, YOLOX, SSD or PicoDet .onnx on the CPU, through onnxruntime: the fallback every
    machine has."""

    type = "cpu"

    @classmethod
    def present(cls) -> bool:
        """Always: every machine has a CPU."""
        return True

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        det = config.eyes.detector
        self.path = model_file(config)
        self.model = _Onnx(self.path)
        shapes, names = self.model.output_shapes, self.model.output_names
        if det.format != "auto":
            self.format = det.format
        else:
            # The input's own size where it has one: YOLOX is told apart by its grid rows.
            probe = self.model.input_spec(DEFAULT_SIZE["yolox"])
            self.format = guess_format(shapes, names, self.path, probe)
        self.spec = self.model.input_spec(DEFAULT_SIZE[self.format])
        own: tuple[str, ...] | None = None
        if det.labels:
            own = read_labels(det.labels)
        elif self.format == "yolo":
            own = yolo.names(self.model.meta)
        elif self.format == "picodet":
            own = picodet.names(self.model.meta)
        self.classes_known = own is not None
        if own is not None:
            self.labels = own
        elif self.format == "ssd":
            self.labels = ssd.default_labels(shapes, names)
        else:
            self.labels = COCO

    def raw(self, frame: np.ndarray) -> tuple[Raw, Geometry]:
        """The parsed outputs before thresholds and NMS, with the geometry back to the frame."""
        if self.format == "yolo":
            x, geometry = yolo.prepare(frame, self.spec)
            out = self.model.run(x)
            return yolo.decode(
                out, self.spec, len(self.labels) if self.classes_known else None
            ), geometry
        if self.format == "yolox":
            x, geometry = yolox.prepare(frame, self.spec)
            return yolox.decode(self.model.run(x), self.spec), geometry
        if self.format == "picodet":
            x, geometry = picodet.prepare(frame, self.spec)
            return picodet.decode(self.model.run(x), self.spec), geometry
        x, geometry = ssd.prepare(frame, self.spec)
        out = self.model.run(x)
        return ssd.decode(out, self.model.output_names, self.spec, self.labels), geometry

    def detect(self, frame: np.ndarray) -> list[Detection]:
        """What is in an RGB frame, best first: at or above `min_score`, after NMS within each
        class, with boxes in the frame's pixels and no background. ModelError when the outputs do
        not read as `format`. Blocking."""
        try:
            raw, geometry = self.raw(frame)
        except (ValueError, IndexError) as exc:
            raise ModelError(
                f"{self.path.name}: cannot read its outputs as {self.format}: {exc}"
            ) from None
        keep = select(raw, self.min_score, NMS_IOU)
        boxes = geometry.to_frame(raw.boxes[keep], frame.shape[1], frame.shape[0])
        found = []
        for box, i in zip(boxes, keep, strict=True):
            k = int(raw.classes[i])
            label = self.labels[k] if 0 <= k < len(self.labels) else f"class_{k}"
            if label != "background":
                x1, y1, x2, y2 = (float(v) for v in box)
                found.append(Detection(label, float(raw.scores[i]), (x1, y1, x2, y2)))
        return sorted(found, key=lambda d: -d.score)


def model_file(config: Config) -> Path:
    """The model the CPU runs: a manifest model by name, a file by path, or the default.

    A file meant for an accelerator (.hef, .tflite, .rpk) is left to it: when that accelerator
    is missing, the CPU falls back to the default model rather than fail.
    """
    det = config.eyes.detector
    name = det.model
    if name and name in load_manifest():
        return model_path(config, name)
    if name and Path(name).suffix.lower() == ".onnx":
        path = Path(name).expanduser()
        if not path.is_file():
            raise ModelError(
                f"eyes.detector.model: no such file {path}: give an .onnx file or a model "
                f"named in the manifest (`python -m pendant.setup.fetch_models list`)"
            )
        return path
    if name and det.type == "cpu":
        raise ModelError(
            f"eyes.detector.model {name!r}: the cpu detector runs an .onnx file or a model "
            f"named in the manifest (`python -m pendant.setup.fetch_models list`)"
        )
    return model_path(config, DEFAULT_MODEL)


def guess_format(
    shapes: list[tuple[int, ...]], names: list[str], path: Path, spec: InputSpec
) -> str:
    """The output parser for these outputs; `spec` (the input) tells YOLOX from YOLOv5."""
    if ssd.layout(shapes, names):
        return "ssd"
    if picodet.matches(shapes):
        return "picodet"
    if yolox.matches(shapes, spec):
        return "yolox"
    if len(shapes) == 1 and len(shapes[0]) == 3:
        return "yolo"
    raise ModelError(
        f"{path.name}: cannot tell its output format from outputs "
        f"{[list(s) for s in shapes]}: set eyes.detector.format (yolo, yolox, ssd or picodet)"
    )


def _dim(value: Any) -> int:
    return int(value) if isinstance(value, int) and value > 0 else -1


class _Onnx:
    def __init__(self, path: Path) -> None:
        from pendant.core.onnx_session import session

        self.session = session(path, str(path), model_threads(), prepared=prepared_models())
        self.meta: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self.input = self.session.get_inputs()[0]
        outputs = self.session.get_outputs()
        self.output_names = [o.name for o in outputs]
        self.output_shapes = [tuple(_dim(d) for d in o.shape) for o in outputs]

    def input_spec(self, default: int) -> InputSpec:
        shape = [_dim(d) for d in self.input.shape]
        if len(shape) != 4:
            raise ModelError(
                f"{self.input.name}: a detector takes one image [1, 3, H, W] or [1, H, W, 3]"
            )
        nchw = shape[1] == 3 or shape[3] != 3
        h, w = (shape[2], shape[3]) if nchw else (shape[1], shape[2])
        dtype = "uint8" if self.input.type == "tensor(uint8)" else "float32"
        return InputSpec(w if w > 0 else default, h if h > 0 else default, nchw, dtype)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input.name: x})
