"""Real photos that ship inside installed packages, for calibration, benchmarks and tests.

scikit-image ships ``skimage/data/*.png|jpg`` (astronaut, coffee, chelsea, ...)
and matplotlib ships ``mpl-data/sample_data/grace_hopper.jpg``. Both are in the
``dev`` extra; nothing here downloads. Images come back as BGR uint8 (OpenCV's
order, the runtime's camera order).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from edge_models.errors import BadInputError
from edge_models.opencv import cv2 as _cv2

__all__ = [
    "CALIBRATION_PHOTOS",
    "FACE_PHOTOS",
    "NO_FACE_PHOTOS",
    "OBJECT_PHOTOS",
    "lfw_faces",
    "load_image",
    "photo",
    "photo_path",
]

# name -> (package, path inside the package)
_PHOTOS = {
    "astronaut": ("skimage", "data/astronaut.png"),
    "brick": ("skimage", "data/brick.png"),
    "camera": ("skimage", "data/camera.png"),
    "chelsea": ("skimage", "data/chelsea.png"),
    "coffee": ("skimage", "data/coffee.png"),
    "coins": ("skimage", "data/coins.png"),
    "color": ("skimage", "data/color.png"),
    "grass": ("skimage", "data/grass.png"),
    "gravel": ("skimage", "data/gravel.png"),
    "horse": ("skimage", "data/horse.png"),
    "hubble_deep_field": ("skimage", "data/hubble_deep_field.jpg"),
    "ihc": ("skimage", "data/ihc.png"),
    "logo": ("skimage", "data/logo.png"),
    "moon": ("skimage", "data/moon.png"),
    "motorcycle_left": ("skimage", "data/motorcycle_left.png"),
    "motorcycle_right": ("skimage", "data/motorcycle_right.png"),
    "page": ("skimage", "data/page.png"),
    "retina": ("skimage", "data/retina.jpg"),
    "rocket": ("skimage", "data/rocket.jpg"),
    "text": ("skimage", "data/text.png"),
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    "minduka": ("matplotlib", "mpl-data/sample_data/Minduka_Present_Blue_Pack.png"),
}
# Photos of things (ImageNet-like scenes): recognition agreement is measured on these.
OBJECT_PHOTOS = (
    "coffee", "chelsea", "astronaut", "camera", "rocket", "motorcycle_left",
    "motorcycle_right", "grace_hopper", "horse", "coins", "moon", "hubble_deep_field",
    "retina", "brick", "minduka",
)
# Calibration for int8: every photo (crops and flips of them are made by the caller).
CALIBRATION_PHOTOS = tuple(_PHOTOS)
FACE_PHOTOS = ("astronaut", "grace_hopper", "camera")
NO_FACE_PHOTOS = (
    "coffee", "chelsea", "rocket", "motorcycle_left", "horse", "coins", "moon",
    "hubble_deep_field", "brick", "grass", "gravel", "retina", "page", "text", "ihc",
)


def photo_path(name: str) -> Path:
    if name not in _PHOTOS:
        raise BadInputError(f"unknown sample photo {name!r} (known: {', '.join(_PHOTOS)})")
    package, relative = _PHOTOS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BadInputError(
            f"sample photo {name!r} ships with {package}, which is not installed "
            "(pip install -e '.[dev]')"
        )
    return Path(next(iter(spec.submodule_search_locations))) / relative


def load_image(path: str | Path) -> np.ndarray:
    """An image file as BGR uint8; a clear ``BadInputError`` when it cannot be read."""
    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"image not found: {p}")
    image = _cv2().imread(str(p), _cv2().IMREAD_COLOR)
    if image is None:
        raise BadInputError(f"{p} is not an image OpenCV can read (empty, truncated or "
                            "another format)")
    return np.ascontiguousarray(image)


def photo(name: str) -> np.ndarray:
    """The sample photo ``name`` as BGR uint8 (grey photos are made 3-channel)."""
    return load_image(photo_path(name))


def lfw_faces(*, faces: bool = True) -> np.ndarray:
    """skimage's LFW subset: 100 face crops (or 100 non-face crops), 25x25 grey uint8."""
    path = photo_path("astronaut").with_name("lfw_subset.npy")
    data = np.load(path)
    images: np.ndarray = data[:100] if faces else data[100:]
    if images.dtype != np.uint8:
        images = (np.clip(images, 0, 1) * 255).astype(np.uint8)
    return images
