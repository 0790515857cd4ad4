"""A fast first guess from a few strokes: a random forest on filter features.

The U-Net needs a full epoch (often a minute on a laptop CPU, start-up included) before
its first preview. A random forest on smoothed intensities, edges and blob and ridge
filters at a few scales, as ilastik and napari-APOC use, learns from the same strokes in
a second or two; the napari widget shows its guess until the network's first epoch.

NumPy, SciPy and scikit-learn only: nothing here imports Keras.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Gaussian scales (pixels) of the features.
SCALES = (0.7, 1.6, 3.5, 5.0)
#: Annotated pixels the forest learns from at most (drawn evenly from each class).
MAX_SAMPLES = 40_000


def pixel_features(plane: np.ndarray, scales: Sequence[float] = SCALES) -> np.ndarray:
    """Per-pixel features of a normalized ``(Y, X, C)`` plane: for each channel and
    scale, the smoothed intensity, gradient magnitude, Laplacian of Gaussian and the two
    eigenvalues of the Hessian; ``(Y, X, F)`` float32."""
    from scipy import ndimage as ndi

    plane = np.asarray(plane, np.float32)
    features = []
    for c in range(plane.shape[-1]):
        channel = plane[..., c]
        for sigma in scales:
            smooth = ndi.gaussian_filter(channel, sigma)
            features.append(smooth)
            features.append(ndi.gaussian_gradient_magnitude(channel, sigma))
            hyy = ndi.gaussian_filter(channel, sigma, order=(2, 0))
            hxx = ndi.gaussian_filter(channel, sigma, order=(0, 2))
            hxy = ndi.gaussian_filter(channel, sigma, order=(1, 1))
            features.append(hyy + hxx)  # the Laplacian of Gaussian
            root = np.sqrt(((hyy - hxx) / 2) ** 2 + hxy**2)
            features.append((hyy + hxx) / 2 + root)
            features.append((hyy + hxx) / 2 - root)
    return np.stack(features, axis=-1).astype(np.float32, copy=False)


class FirstGuess:
    """A random forest trained on the annotated pixels of prepared training planes.

    Args:
        planes: Planes with ``image`` ``(Y, X, C)`` and ``targets`` (class indices, -1
            not annotated), as :func:`~napari_unet_cat.dataset.prepare_planes` makes.
            At most ``max_planes`` of them are used (the first), to stay fast.
        n_classes: Number of classes.
        seed: Random seed (the pixels drawn and the forest).
    """

    def __init__(self, planes, n_classes: int, *, seed: int = 0, max_planes: int = 4):
        from sklearn.ensemble import RandomForestClassifier

        rng = np.random.default_rng(seed)
        per_class = MAX_SAMPLES // max(1, n_classes)
        xs, ys = [], []
        for p in list(planes)[:max_planes]:
            features = pixel_features(p.image).reshape(-1, 5 * len(SCALES) * p.image.shape[-1])
            targets = p.targets.ravel()
            for k in range(n_classes):
                where = np.flatnonzero(targets == k)
                if where.size > per_class:
                    where = rng.choice(where, size=per_class, replace=False)
                xs.append(features[where])
                ys.append(np.full(where.size, k, np.int16))
        x, y = np.concatenate(xs), np.concatenate(ys)
        if not y.size:
            raise ValueError("no annotated pixels to learn a first guess from")
        self.forest = RandomForestClassifier(
            n_estimators=40, max_depth=16, min_samples_leaf=2, n_jobs=-1, random_state=seed
        )
        self.forest.fit(x, y)
        self.n_classes = n_classes

    def probabilities(self, plane: np.ndarray) -> np.ndarray:
        """Class probabilities ``(Y, X, n_classes)`` of a normalized ``(Y, X, C)`` plane."""
        feats = pixel_features(plane)
        h, w, f = feats.shape
        known = self.forest.predict_proba(feats.reshape(-1, f)).astype(np.float32)
        out = np.zeros((h * w, self.n_classes), np.float32)
        out[:, self.forest.classes_.astype(int)] = known
        return out.reshape(h, w, self.n_classes)
