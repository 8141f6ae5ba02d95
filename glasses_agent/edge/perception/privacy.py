"""Privacy: every image that leaves the device has its faces blurred, and is checked.

``FaceRedactor.outgoing_jpeg`` makes the JPEG for the cloud or a log:

1. refuse while the privacy switch is on (``PrivacyOnError``: nothing leaves);
2. detect faces with the primary detector (or take the boxes perception found);
3. blur each face over an enlarged box (the detectors' boxes run from brow to
   chin; hair, ears and jaw identify people too): pixelate to a coarse grid,
   then a Gaussian blur as wide as the blocks, so neither the face nor the block
   edges are left for a detector to latch on to;
4. encode the JPEG (from pixels: no EXIF, no GPS, no camera serial), decode it,
   and run a *different* detector on what will actually leave (by default
   ``haar_check``, other OpenCV cascades than the primary ``haar``, frontal and
   profile: license-clear like it; ``mtcnn`` is opt-in), then the primary one
   again. A face found is blurred too and the check runs again; if a face
   survives ``max_passes``, the whole frame is blurred (fail closed) and the
   result says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from edge_models.opencv import cv2 as _cv2
from glasses_agent.edge.perception.steps import PerceptionPart
from glasses_agent.edge.sources.camera import PrivacySwitch
from glasses_agent.errors import BadInputError, GlassesError

if TYPE_CHECKING:
    from glasses_agent.config import Config

__all__ = [
    "FaceDetectorLike",
    "FaceRedactor",
    "FaceStep",
    "OutgoingImage",
    "PRIMARY_KINDS",
    "PrivacyOnError",
    "blur_regions",
    "create_face_step",
    "enlarge_box",
]

UInt8Array = npt.NDArray[np.uint8]
Box = tuple[int, int, int, int]
# ``[perception] faces``: the detectors that find the faces to blur. The verifier
# (``[perception] face_check``) is any ``edge_models.faces.FACE_KINDS`` but the primary.
PRIMARY_KINDS = ("haar", "mtcnn")


class PrivacyOnError(GlassesError):
    """The privacy switch is on: no image leaves the device."""


class FaceDetectorLike(Protocol):
    """``edge_models.faces.FaceDetector``'s shape: boxes (x0, y0, x1, y1, score)."""

    def detect(self, image_bgr: UInt8Array) -> list[tuple[int, int, int, int, float]]: ...


def enlarge_box(box: Sequence[int], size_px: tuple[int, int], *, margin: float = 0.35) -> Box:
    """``box`` grown by ``margin`` of its size on every side (more above, for hair),
    clipped to an image of ``size_px`` = (width, height)."""
    x0, y0, x1, y1 = (int(v) for v in box[:4])
    w, h = max(1, x1 - x0), max(1, y1 - y0)
    width, height = size_px
    return (
        max(0, int(x0 - margin * w)),
        max(0, int(y0 - 1.3 * margin * h)),
        min(width, int(x1 + margin * w + 0.999)),
        min(height, int(y1 + margin * h + 0.999)),
    )


def blur_regions(image_bgr: UInt8Array, boxes: Sequence[Sequence[int]], *,
                 margin: float = 0.35, blocks: int = 6) -> UInt8Array:
    """A copy of ``image_bgr`` with each box (enlarged by ``margin``) made unrecognisable:
    pixelated to about ``blocks`` x ``blocks`` cells, then Gaussian-blurred."""
    cv2 = _cv2()
    out = image_bgr.copy()
    height, width = out.shape[:2]
    for box in boxes:
        x0, y0, x1, y1 = enlarge_box(box, (width, height), margin=margin)
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        region = out[y0:y1, x0:x1]
        h, w = region.shape[:2]
        small = cv2.resize(region, (max(1, min(blocks, w)), max(1, min(blocks, h))),
                           interpolation=cv2.INTER_AREA)
        coarse = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
        sigma = max(w, h) / blocks
        out[y0:y1, x0:x1] = cv2.GaussianBlur(coarse, (0, 0), sigma)
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class OutgoingImage:
    """The JPEG that may leave the device, and what was done to it."""

    jpeg: bytes
    size_px: tuple[int, int]
    faces_blurred: int
    passes: int
    # True when the second detector found no face in the final JPEG.
    verified: bool
    # True when a face survived every pass and the whole frame was blurred instead.
    whole_frame_blurred: bool = False


class FaceRedactor:
    """Makes outgoing JPEGs: faces found by ``detector`` blurred, checked by ``verifier``.

    ``verifier`` should be a different kind of detector from ``detector`` (other
    cascades, or another model: they fail on different faces). ``privacy``: while
    on, nothing is made.
    """

    def __init__(
        self,
        *,
        detector: FaceDetectorLike,
        verifier: FaceDetectorLike,
        privacy: PrivacySwitch | None = None,
        jpeg_quality: int = 85,
        margin: float = 0.35,
        max_passes: int = 3,
    ) -> None:
        self.detector = detector
        self.verifier = verifier
        self.privacy = privacy
        self.jpeg_quality = jpeg_quality
        self.margin = margin
        self.max_passes = max_passes

    @classmethod
    def from_config(cls, config: Config, *, privacy: PrivacySwitch | None = None,
                    detector: FaceDetectorLike | None = None) -> FaceRedactor:
        """``[perception] faces`` as the primary detector (or ``detector``, e.g. the one
        perception already loaded) and ``[perception] face_check`` as the verifier,
        which must be a different kind."""
        from edge_models.faces import FACE_KINDS, FaceDetector

        kind, check = config.perception.faces, config.perception.face_check
        if kind not in PRIMARY_KINDS:
            raise BadInputError(f"[perception] faces must be one of {', '.join(PRIMARY_KINDS)}, "
                                f"not {kind!r}")
        if check not in FACE_KINDS:
            raise BadInputError(f"[perception] face_check must be one of "
                                f"{', '.join(FACE_KINDS)}, not {check!r}")
        if check == kind:
            others = ", ".join(k for k in FACE_KINDS if k != kind)
            raise BadInputError(f"[perception] face_check must differ from faces ({kind!r}): "
                                f"a detector cannot check its own work (use one of {others})")
        m = config.models
        if detector is None:
            detector = FaceDetector(kind=kind, providers=m.providers,
                                    intra_op_threads=m.intra_op_threads)
        verifier = FaceDetector(kind=check, providers=m.providers,
                                intra_op_threads=m.intra_op_threads)
        return cls(detector=detector, verifier=verifier, privacy=privacy)

    def _encode(self, image_bgr: UInt8Array) -> bytes:
        cv2 = _cv2()
        ok, data = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise GlassesError("JPEG encoding failed")
        return bytes(data.tobytes())

    def _faces_left(self, image_bgr: UInt8Array) -> list[Box]:
        """Faces either detector still finds: the verifier, and the primary as well (it
        may see a face it missed before, now that the others are blurred)."""
        left = [(f[0], f[1], f[2], f[3]) for f in self.verifier.detect(image_bgr)]
        return left or [(f[0], f[1], f[2], f[3]) for f in self.detector.detect(image_bgr)]

    def outgoing_jpeg(self, image_bgr: UInt8Array, *,
                      faces: Sequence[Sequence[int]] | None = None) -> OutgoingImage:
        """The JPEG of ``image_bgr`` with every face blurred and checked.

        ``faces``: boxes already found in this very image (perception's), to
        save the primary detection; the verification runs regardless.
        """
        if self.privacy is not None and self.privacy.on:
            raise PrivacyOnError("the privacy switch is on: no image leaves the device")
        cv2 = _cv2()
        boxes = [tuple(f[:4]) for f in (faces if faces is not None
                                        else self.detector.detect(image_bgr))]
        blurred = blur_regions(image_bgr, boxes, margin=self.margin)
        total = len(boxes)
        for passes in range(1, self.max_passes + 1):
            jpeg = self._encode(blurred)
            sent = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            left = self._faces_left(sent)
            if not left:
                return OutgoingImage(jpeg=jpeg, size_px=(sent.shape[1], sent.shape[0]),
                                     faces_blurred=total, passes=passes, verified=True)
            total += len(left)
            blurred = blur_regions(blurred, left, margin=self.margin)
        # A face survived every pass: blur everything rather than let it leave.
        height, width = image_bgr.shape[:2]
        whole = cv2.GaussianBlur(cv2.resize(cv2.resize(image_bgr, (16, 12),
                                                       interpolation=cv2.INTER_AREA),
                                            (width, height), interpolation=cv2.INTER_NEAREST),
                                 (0, 0), max(width, height) / 16)
        jpeg = self._encode(whole)
        sent = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        verified = not self._faces_left(sent)
        return OutgoingImage(jpeg=jpeg, size_px=(width, height), faces_blurred=total,
                             passes=self.max_passes, verified=verified,
                             whole_frame_blurred=True)


class FaceStep:
    """The perception step: where the faces are (to count people and to blur them; a face
    is never recognised)."""

    name = "faces"

    def __init__(self, detector: FaceDetectorLike, *, kind: str = "") -> None:
        self.detector = detector
        self.models = (kind,) if kind else ()

    def run(self, image_bgr: UInt8Array) -> PerceptionPart:
        return PerceptionPart(faces=tuple((f[0], f[1], f[2], f[3])
                                          for f in self.detector.detect(image_bgr)))


def create_face_step(config: Config) -> FaceStep:
    """``[perception] faces`` (Haar by default; MTCNN opt-in)."""
    from edge_models.faces import FaceDetector

    m = config.models
    kind = config.perception.faces
    return FaceStep(FaceDetector(kind=kind, providers=m.providers,
                                 intra_op_threads=m.intra_op_threads), kind=kind)
