"""The demo's data: scikit-learn's 8x8 handwritten digits (1797 images, shipped
inside the scikit-learn package), upsampled to 16x16, and a classifier trained
on the real digits that tells which digit a generated image shows."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .model import IMAGE_SIZE


def load_digits_arrays():
    from sklearn.datasets import load_digits
    d = load_digits()
    return d.images.astype(np.float32), d.target.astype(np.int64)  # (1797, 8, 8) in 0..16


def digits_to_images(images8: np.ndarray) -> torch.Tensor:
    """8x8 digits in 0..16 -> (n, 1, 16, 16) images in [-1, 1] (bilinear upsampling)."""
    x = torch.from_numpy(np.asarray(images8, dtype=np.float32))[:, None] / 16.0
    x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    return (x * 2 - 1).clamp(-1, 1)


def images_to_features(images: torch.Tensor) -> np.ndarray:
    """(n, 1, 16, 16) images in [-1, 1] -> (n, 64) features in the 0..16 scale of the 8x8 digits."""
    x = (images.float().clamp(-1, 1) + 1) / 2
    x = F.adaptive_avg_pool2d(x, 8)
    return (x.reshape(x.shape[0], -1) * 16.0).numpy()


class DigitClassifier:
    """An RBF support vector machine on the real 8x8 digits (deterministic, ~1 s to train).

    held_out_accuracy: accuracy on a 25 % split of real digits, upsampled and pooled
    back the same way generated images are (the classifier's own ceiling)."""

    def __init__(self):
        from sklearn.svm import SVC
        images8, labels = load_digits_arrays()
        feats = images_to_features(digits_to_images(images8))
        rng = np.random.RandomState(0)
        order = rng.permutation(len(labels))
        cut = len(labels) * 3 // 4
        tr, te = order[:cut], order[cut:]
        check = SVC(gamma="scale", C=10.0).fit(feats[tr], labels[tr])
        self.held_out_accuracy = float((check.predict(feats[te]) == labels[te]).mean())
        self.svc = SVC(gamma="scale", C=10.0).fit(feats, labels)

    def predict(self, images: torch.Tensor) -> np.ndarray:
        return self.svc.predict(images_to_features(images))

    def accuracy(self, images: torch.Tensor, labels) -> float:
        labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
        return float((self.predict(images) == labels).mean())
