"""OCR: the PP-OCR det/cls/rec models that rapidocr ships, run through our session factory.

rapidocr 3.10 ships the ONNX files (Apache-2.0, PaddleOCR weights); the pre- and
post-processing here follows rapidocr's own pipeline step for step (its
``main.py``, ``ch_ppocr_det``, ``ch_ppocr_cls``, ``ch_ppocr_rec`` and
``utils/process_img.py``), so the results match ``rapidocr.RapidOCR()`` on the
same image, while the execution provider, threads and the int8 variants are ours:

1. Bound the image: longer side at most 2000 px, shorter at least 30 (multiples of 32).
2. Pad very wide or very short images vertically (width/height > 8 or height <= 30).
3. Detection (DB): shorter side up to 736 (multiples of 32), (x/255 - 0.5)/0.5;
   probability map > 0.3, dilated 2x2, contours, minimum-area boxes scored by the
   mean probability inside (>= 0.5 kept), grown by area * 1.6 / perimeter
   (pyclipper, round joins), in the order found (reading order is the glasses' rule:
   glasses_agent.edge.perception.text.reading_order).
4. Each box is cut out with a perspective warp (tall crops turned 90 degrees).
5. Orientation (cls): 48x192 crops; "180" with score > 0.9 turns the crop round.
6. Recognition (rec): 48 px high crops, padded to the widest in a batch of 6,
   CTC greedy decode over the character list in the model's ONNX metadata.
7. Empty texts and texts scoring under 0.5 are dropped.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_models.opencv import cv2 as _cv2
from edge_models.recognition import as_bgr
from edge_models.registry import check, get_spec
from edge_models.sessions import ModelFileError, create_session

__all__ = [
    "DetOptions",
    "TextLine",
    "TextReader",
    "crop_quad",
    "det_preprocess",
    "rec_preprocess",
]

MIN_SIDE_PX = 30
MAX_SIDE_PX = 2000
PAD_MIN_HEIGHT_PX = 30
PAD_WIDTH_HEIGHT_RATIO = 8
CLS_SHAPE = (3, 48, 192)
CLS_THRESHOLD = 0.9
REC_SHAPE = (3, 48, 320)
BATCH = 6
TEXT_SCORE = 0.5
# The parts that run int8 when TextReader(int8=True): see TextReader.
INT8_PARTS = ("det",)

# (text, score, (x0, y0, x1, y1)) in the caller's image pixels.
TextLine = tuple[str, float, tuple[int, int, int, int]]


@dataclass(frozen=True, slots=True, kw_only=True)
class DetOptions:
    limit_side_px: int = 736
    threshold: float = 0.3
    box_threshold: float = 0.5
    max_candidates: int = 1000
    unclip_ratio: float = 1.6
    min_box_px: int = 3


def _resize32(image: np.ndarray, ratio: float) -> np.ndarray | None:
    h, w = image.shape[:2]
    resize_h = int(round(int(h * ratio) / 32) * 32)
    resize_w = int(round(int(w * ratio) / 32) * 32)
    if resize_w <= 0 or resize_h <= 0:
        return None
    resized: np.ndarray = _cv2().resize(image, (resize_w, resize_h))
    return resized


def _bound_image(image: np.ndarray) -> tuple[np.ndarray, float, float]:
    """rapidocr's resize_image_within_bounds: (image, ratio_h, ratio_w) back to the original."""
    h, w = image.shape[:2]
    ratio_h = ratio_w = 1.0
    if max(h, w) > MAX_SIDE_PX:
        resized = _resize32(image, MAX_SIDE_PX / max(h, w))
        if resized is not None:
            ratio_h, ratio_w = h / resized.shape[0], w / resized.shape[1]
            image = resized
    h2, w2 = image.shape[:2]
    if min(h2, w2) < MIN_SIDE_PX:
        resized = _resize32(image, MIN_SIDE_PX / min(h2, w2))
        if resized is not None:
            ratio_h, ratio_w = h2 / resized.shape[0], w2 / resized.shape[1]
            image = resized
    return image, ratio_h, ratio_w


def _vertical_padding(image: np.ndarray) -> tuple[np.ndarray, int]:
    h, w = image.shape[:2]
    if h <= PAD_MIN_HEIGHT_PX or w / h > PAD_WIDTH_HEIGHT_RATIO:
        new_h = max(int(w / PAD_WIDTH_HEIGHT_RATIO), PAD_MIN_HEIGHT_PX) * 2
        pad = int(abs(new_h - h) / 2)
        cv2 = _cv2()
        padded: np.ndarray = cv2.copyMakeBorder(image, pad, pad, 0, 0, cv2.BORDER_CONSTANT,
                                                value=(0, 0, 0))
        return padded, pad
    return image, 0


def det_preprocess(image: np.ndarray, limit_side_px: int = 736) -> np.ndarray | None:
    """BGR -> float32 [1,3,H,W] for the detector: shorter side up to ``limit_side_px``."""
    h, w = image.shape[:2]
    ratio = limit_side_px / min(h, w) if min(h, w) < limit_side_px else 1.0
    resized = _resize32(image, ratio)
    if resized is None:
        return None
    x = (resized.astype(np.float32) / 255.0 - 0.5) / 0.5
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)


def _mini_box(contour: np.ndarray) -> tuple[np.ndarray, float]:
    cv2 = _cv2()
    rect = cv2.minAreaRect(contour)
    points = sorted(cv2.boxPoints(rect).tolist(), key=lambda p: p[0])
    i1, i4 = (0, 1) if points[1][1] > points[0][1] else (1, 0)
    i2, i3 = (2, 3) if points[3][1] > points[2][1] else (3, 2)
    box = np.array([points[i1], points[i2], points[i3], points[i4]], dtype=np.float32)
    return box, float(min(rect[1]))


def _box_score(prob: np.ndarray, box: np.ndarray) -> float:
    cv2 = _cv2()
    h, w = prob.shape
    xmin = int(np.clip(np.floor(box[:, 0].min()), 0, w - 1))
    xmax = int(np.clip(np.ceil(box[:, 0].max()), 0, w - 1))
    ymin = int(np.clip(np.floor(box[:, 1].min()), 0, h - 1))
    ymax = int(np.clip(np.ceil(box[:, 1].max()), 0, h - 1))
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), dtype=np.uint8)
    shifted = box - np.array([xmin, ymin], dtype=np.float32)
    cv2.fillPoly(mask, shifted.reshape(1, -1, 2).astype(np.int32), 1)
    return float(cv2.mean(prob[ymin:ymax + 1, xmin:xmax + 1], mask)[0])


def _unclip(box: np.ndarray, ratio: float) -> np.ndarray:
    pyclipper: Any = importlib.import_module("pyclipper")  # untyped; a rapidocr dependency
    cv2 = _cv2()
    contour = box.reshape(-1, 1, 2).astype(np.float32)
    area = abs(float(cv2.contourArea(contour)))
    length = float(cv2.arcLength(contour, True))
    distance = area * ratio / length if length else 0.0
    offset = pyclipper.PyclipperOffset()
    offset.AddPath(box.tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    return np.array(offset.Execute(distance), dtype=np.float32).reshape(-1, 1, 2)


def _order_clockwise(points: np.ndarray) -> np.ndarray:
    by_x = points[np.argsort(points[:, 0]), :]
    left, right = by_x[:2], by_x[2:]
    tl, bl = left[np.argsort(left[:, 1]), :]
    tr, br = right[np.argsort(right[:, 1]), :]
    return np.array([tl, tr, br, bl], dtype=np.float32)


def db_boxes(prob_map: np.ndarray, height: int, width: int,
             options: DetOptions = DetOptions()) -> tuple[np.ndarray, list[float]]:
    """DB postprocess: probability map [H',W'] -> quads [N,4,2] in a height x width image."""
    cv2 = _cv2()
    bitmap = (prob_map > options.threshold).astype(np.uint8)
    mask = cv2.dilate(bitmap, np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(mask * 255, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    map_h, map_w = prob_map.shape
    boxes: list[np.ndarray] = []
    scores: list[float] = []
    for contour in contours[: options.max_candidates]:
        points, short_side = _mini_box(contour)
        if short_side < options.min_box_px:
            continue
        score = _box_score(prob_map, points)
        if score < options.box_threshold:
            continue
        grown = _unclip(points, options.unclip_ratio)
        if len(grown) == 0:
            continue
        box, short_side = _mini_box(grown)
        if short_side < options.min_box_px + 2:
            continue
        box[:, 0] = np.clip(np.round(box[:, 0] / map_w * width), 0, width)
        box[:, 1] = np.clip(np.round(box[:, 1] / map_h * height), 0, height)
        box = _order_clockwise(box.astype(np.int32).astype(np.float32))
        box[:, 0] = np.clip(box[:, 0], 0, width - 1).astype(np.int32)
        box[:, 1] = np.clip(box[:, 1], 0, height - 1).astype(np.int32)
        if (int(np.linalg.norm(box[0] - box[1])) <= 3
                or int(np.linalg.norm(box[0] - box[3])) <= 3):
            continue
        boxes.append(box)
        scores.append(score)
    if not boxes:
        return np.zeros((0, 4, 2), np.float32), []
    # In the detector's order: putting fragments in reading order is the glasses' one rule
    # (glasses_agent.edge.perception.text.reading_order), not the model's.
    return np.array(boxes, dtype=np.float32), scores


def crop_quad(image: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """The quadrilateral ``quad`` [4,2] (tl, tr, br, bl) warped to an upright rectangle."""
    cv2 = _cv2()
    width = int(max(np.linalg.norm(quad[0] - quad[1]), np.linalg.norm(quad[2] - quad[3])))
    height = int(max(np.linalg.norm(quad[0] - quad[3]), np.linalg.norm(quad[1] - quad[2])))
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(quad.astype(np.float32), target)
    crop: np.ndarray = cv2.warpPerspective(image, matrix, (width, height),
                                           borderMode=cv2.BORDER_REPLICATE,
                                           flags=cv2.INTER_CUBIC)
    if crop.shape[0] / crop.shape[1] >= 1.5:
        crop = np.rot90(crop)
    return crop


def _normalize_padded(image: np.ndarray, height: int, width: int, resized_w: int,
                      interpolation: int | None = None) -> np.ndarray:
    cv2 = _cv2()
    if interpolation is None:
        resized = cv2.resize(image, (resized_w, height))
    else:
        resized = cv2.resize(image, (resized_w, height), interpolation=interpolation)
    x = resized.astype(np.float32).transpose(2, 0, 1) / 255
    x -= 0.5
    x /= 0.5
    out = np.zeros((3, height, width), dtype=np.float32)
    out[:, :, :resized_w] = x
    return out


def cls_preprocess(crop: np.ndarray) -> np.ndarray:
    """One text crop -> float32 [3,48,192] for the orientation model."""
    _, height, width = CLS_SHAPE
    ratio = crop.shape[1] / float(crop.shape[0])
    resized_w = width if math.ceil(height * ratio) > width else int(math.ceil(height * ratio))
    return _normalize_padded(crop, height, width, resized_w, _cv2().INTER_LINEAR)


def rec_preprocess(crop: np.ndarray, max_wh_ratio: float) -> np.ndarray:
    """One text crop -> float32 [3,48,48*max_wh_ratio] for the recognizer."""
    _, height, _ = REC_SHAPE
    width = int(height * max_wh_ratio)
    ratio = crop.shape[1] / float(crop.shape[0])
    resized_w = width if math.ceil(height * ratio) > width else int(math.ceil(height * ratio))
    return _normalize_padded(crop, height, width, resized_w)


def ctc_greedy(probs: np.ndarray, characters: tuple[str, ...]) -> list[tuple[str, float]]:
    """CTC greedy decode of [N,T,C] probabilities; index 0 is the blank."""
    best = probs.argmax(axis=2)
    best_p = probs.max(axis=2)
    results = []
    for indices, confidences in zip(best, best_p, strict=True):
        keep = np.ones(len(indices), dtype=bool)
        keep[1:] = indices[1:] != indices[:-1]
        keep &= indices != 0
        text = "".join(characters[i] for i in indices[keep])
        conf = [round(float(c), 5) for c in confidences[keep]] or [0.0]
        results.append((text, round(float(np.mean(conf)), 5)))
    return results


class TextReader:
    """Reads text in a BGR image: fragments of (text, score, (x0, y0, x1, y1)).

    ``int8`` is ``False``/``"never"`` (fp32, the default), ``True``/``"always"`` (the
    int8 detector, unchecked) or ``"auto"`` (the int8 detector only where the self-check
    of ``edge_models.variants`` finds it agrees with fp32 and is faster on this CPU;
    ``choices["det"]`` says why). int8 is offered where it pays: the detector
    (``ppocr_det_int8``: 0.7x the time, the same boxes on rendered signs), which is
    half of the work. The recognizer and orientation model stay fp32: their int8
    variants (registered, so ``glasses-models bench`` compares them) changed 13-19%
    of text lines ("/" read as a full-width slash, a dropped letter) for a 0.8x
    gain, and made the tiny orientation model no faster.
    """

    def __init__(
        self,
        *,
        providers: tuple[str, ...] = (),
        intra_op_threads: int = 2,
        int8: bool | str = False,
        det_options: DetOptions = DetOptions(),
    ) -> None:
        from edge_models.variants import Choice, choose_variant

        mode = int8 if isinstance(int8, str) else ("always" if int8 else "never")
        self.models = {part: f"ppocr_{part}" for part in ("det", "cls", "rec")}
        self.choices: dict[str, Choice] = {}
        for part in INT8_PARTS:
            choice = choose_variant(f"ppocr_{part}", mode=mode, providers=providers,
                                    intra_op_threads=intra_op_threads)
            self.choices[part] = choice
            self.models[part] = choice.name
        self.sessions: dict[str, Any] = {}
        for part, name in self.models.items():
            path = check(get_spec(name))
            self.sessions[part] = create_session(path, name=name, providers=providers,
                                                 intra_op_threads=intra_op_threads)
        self.provider: str = self.sessions["det"].get_providers()[0]
        self.det_options = det_options
        self.characters = self._characters()

    def _characters(self) -> tuple[str, ...]:
        """The recognizer's characters: blank, the list in the ONNX metadata, then a space."""
        name = self.models["rec"]
        meta = self.sessions["rec"].get_modelmeta().custom_metadata_map
        if "character" not in meta:
            fp32 = get_spec(name).quantized_from
            if fp32:  # an int8 file made before the metadata was copied: read the fp32's
                meta = create_session(check(get_spec(fp32)), name=fp32).get_modelmeta() \
                    .custom_metadata_map
        if "character" not in meta:
            raise ModelFileError(f"model {name!r} has no 'character' list in its ONNX metadata")
        chars = meta["character"].splitlines()
        classes = self.sessions["rec"].get_outputs()[0].shape[-1]
        if isinstance(classes, int) and classes != len(chars) + 2:
            raise ModelFileError(f"model {name!r}: {len(chars)} characters for {classes} classes")
        return ("", *chars, " ")

    def _run(self, part: str, x: np.ndarray) -> np.ndarray:
        session = self.sessions[part]
        out: np.ndarray = session.run(None, {session.get_inputs()[0].name: x})[0]
        return out

    def detect(self, image_bgr: np.ndarray) -> np.ndarray:
        """Text quads [N,4,2] (tl, tr, br, bl) in the given image's pixels, detector's order."""
        x = det_preprocess(image_bgr, self.det_options.limit_side_px)
        if x is None:
            return np.zeros((0, 4, 2), np.float32)
        prob = self._run("det", x)[0, 0]
        boxes, _ = db_boxes(prob, image_bgr.shape[0], image_bgr.shape[1], self.det_options)
        return boxes

    def orient(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        """Turns crops that the orientation model finds upside down (score > 0.9)."""
        out = list(crops)
        order = np.argsort([c.shape[1] / float(c.shape[0]) for c in crops])
        for start in range(0, len(crops), BATCH):
            idx = order[start:start + BATCH]
            probs = self._run("cls", np.stack([cls_preprocess(crops[i]) for i in idx]))
            for i, p in zip(idx, probs, strict=True):
                if int(p.argmax()) == 1 and float(p[1]) > CLS_THRESHOLD:
                    out[i] = _cv2().rotate(out[i], _cv2().ROTATE_180)
        return out

    def recognize(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        """Text and mean character confidence for each upright text-line crop."""
        results: list[tuple[str, float]] = [("", 0.0)] * len(crops)
        ratios = [c.shape[1] / float(c.shape[0]) for c in crops]
        order = np.argsort(ratios)
        _, height, width = REC_SHAPE
        for start in range(0, len(crops), BATCH):
            idx = order[start:start + BATCH]
            max_ratio = max([width / height] + [ratios[i] for i in idx])
            batch = np.stack([rec_preprocess(crops[i], max_ratio) for i in idx])
            for i, result in zip(idx, ctc_greedy(self._run("rec", batch), self.characters),
                                 strict=True):
                results[i] = result
        return results

    def read_quads(self, image_bgr: np.ndarray) -> list[tuple[str, float, np.ndarray]]:
        """All text lines as (text, score, quad): the quad [4,2] (tl, tr, br, bl) in the
        given image's pixels, which keeps the line's slant; in the detector's order."""
        original = as_bgr(image_bgr)
        orig_h, orig_w = original.shape[:2]
        image, ratio_h, ratio_w = _bound_image(original)
        image, top = _vertical_padding(image)
        quads = self.detect(image)
        if len(quads) == 0:
            return []
        crops = self.orient([crop_quad(image, q.copy()) for q in quads])
        texts = self.recognize(crops)
        lines: list[tuple[str, float, np.ndarray]] = []
        for quad, (text, score) in zip(quads, texts, strict=True):
            if not text.strip() or score < TEXT_SCORE:
                continue
            q = quad.copy()
            q[:, 1] -= top
            q[:, 0] *= ratio_w
            q[:, 1] *= ratio_h
            q = np.maximum(q, 0)
            q[:, 0] = np.minimum(q[:, 0], orig_w)
            q[:, 1] = np.minimum(q[:, 1], orig_h)
            lines.append((text, float(score), q))
        return lines

    def read(self, image_bgr: np.ndarray) -> list[TextLine]:
        """All text fragments: (text, score, (x0, y0, x1, y1)), in the detector's order (see
        ``glasses_agent.edge.perception.text.reading_order`` for reading order)."""
        return [(text, score, (int(np.floor(q[:, 0].min())), int(np.floor(q[:, 1].min())),
                               int(np.ceil(q[:, 0].max())), int(np.ceil(q[:, 1].max()))))
                for text, score, q in self.read_quads(image_bgr)]
