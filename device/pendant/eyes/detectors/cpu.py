"""The CPU detector: onnxruntime, with the detector model from the manifest.

The model is PicoDet-LCNet trained on document layout (text, title, figure, table, ...), the
only detector we found shipped inside a PyPI wheel; a COCO PicoDet export with the same heads
runs here unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pendant.eyes.detectors import Detection, Detector
from pendant.eyes.faces import nms
from pendant.models import model_path

if TYPE_CHECKING:
    from pendant.config import Config

MODEL = "picodet-layout"
STRIDES = (8, 16, 32, 64)
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
NMS_IOU = 0.5


class CpuDetector(Detector):
    type = "cpu"

    @classmethod
    def present(cls) -> bool:
        return True

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        from pendant.onnx import session

        path = model_path(config, MODEL)
        self.session = session(path, str(path))
        meta = self.session.get_modelmeta().custom_metadata_map
        self.labels = tuple(meta.get("character", "").splitlines())
        shape = self.session.get_inputs()[0].shape
        self.height, self.width = int(shape[2]), int(shape[3])

    def detect(self, frame: np.ndarray) -> list[Detection]:
        import cv2

        image = cv2.resize(frame[:, :, ::-1], (self.width, self.height))
        x = ((image.astype(np.float32) / 255.0 - MEAN) / STD).transpose(2, 0, 1)[None]
        outputs = self.session.run(None, {self.session.get_inputs()[0].name: x})
        levels = len(outputs) // 2
        boxes, scores = [], []
        for stride, cls_scores, dist in zip(
            STRIDES, outputs[:levels], outputs[levels:], strict=True
        ):
            cls_scores, dist = cls_scores[0], dist[0]
            ny, nx = -(-self.height // stride), -(-self.width // stride)
            yy, xx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
            centre = (np.stack([xx.ravel(), yy.ravel()], axis=1) + 0.5) * stride
            # GFL: each side's distance is the expectation over reg_max + 1 bins.
            bins = dist.shape[-1] // 4
            p = np.exp(dist.reshape(-1, 4, bins) - dist.reshape(-1, 4, bins).max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            d = (p * np.arange(bins)).sum(-1) * stride
            boxes.append(np.hstack([centre - d[:, :2], centre + d[:, 2:]]))
            scores.append(cls_scores)
        all_boxes, all_scores = np.concatenate(boxes), np.concatenate(scores)
        found = []
        for k in range(all_scores.shape[1]):
            hit = all_scores[:, k] >= self.min_score
            if not hit.any():
                continue
            for i in nms(all_boxes[hit], all_scores[hit, k], NMS_IOU):
                label = self.labels[k] if k < len(self.labels) else f"class_{k}"
                found.append(Detection(label, float(all_scores[hit, k][i])))
        return sorted(found, key=lambda d: -d.score)
