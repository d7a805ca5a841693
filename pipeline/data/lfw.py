"""The `lfw` source: scikit-image's `lfw_subset`, 100 face and 100 non-face crops of real photos.

The crops come from Labeled Faces in the Wild (faces) and from the same photos' backgrounds
(non-faces), 25x25 grayscale; scikit-image ships them, so nothing is downloaded.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

CLASSES = ["not_face", "face"]  # the positive class last, as in the other binary tasks
NATIVE_SIZE = 25


def load(image_size: int = NATIVE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (200, size, size, 1) and labels (1 = face: the file's first 100 rows)."""
    from skimage import data

    crops = np.asarray(data.lfw_subset(), dtype=np.float64)
    images = (np.clip(crops, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if image_size != NATIVE_SIZE:
        images = np.stack(
            [
                np.asarray(Image.fromarray(img).resize((image_size, image_size), Image.Resampling.BILINEAR))
                for img in images
            ]
        )
    labels = np.zeros(len(images), dtype=np.int64)
    labels[: len(images) // 2] = 1
    return images[..., None], labels
