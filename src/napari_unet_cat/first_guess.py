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


#: Rows of features computed at once (with ``BAND_MARGIN`` rows of context each side):
#: the features of a whole large plane would take 20 floats per pixel and channel.
BAND_ROWS = 512
BAND_MARGIN = 32


def feature_bands(plane: np.ndarray, rows: int = BAND_ROWS):
    """``(top, bottom, features)`` of consecutive bands of rows of a ``(Y, X, C)`` plane:
    the same values as :func:`pixel_features` of the whole plane (each band is computed
    with a margin wider than the filters' reach, then cropped), in bounded memory."""
    h = plane.shape[0]
    for top in range(0, h, rows):
        bottom = min(h, top + rows)
        lo, hi = max(0, top - BAND_MARGIN), min(h, bottom + BAND_MARGIN)
        if lo == 0 and hi == h:
            yield top, bottom, pixel_features(plane)[top:bottom]
        else:
            yield top, bottom, pixel_features(plane[lo:hi])[top - lo : bottom - lo]


def features_at(plane: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """The features ``(n, F)`` of the pixels at sorted flat indices ``flat`` of a plane."""
    w = plane.shape[1]
    parts = []
    for top, bottom, feats in feature_bands(plane):
        inside = flat[(flat >= top * w) & (flat < bottom * w)] - top * w
        parts.append(feats.reshape(-1, feats.shape[-1])[inside])
    return np.concatenate(parts) if parts else np.zeros((0, 5 * len(SCALES) * plane.shape[-1]), np.float32)


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
            targets = p.targets.ravel()
            picked = []
            for k in range(n_classes):
                where = np.flatnonzero(targets == k)
                if where.size > per_class:
                    where = rng.choice(where, size=per_class, replace=False)
                picked.append(where)
            where = np.sort(np.concatenate(picked))
            xs.append(features_at(p.image, where))  # one pass over the plane for all classes
            ys.append(targets[where].astype(np.int16))
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
        h, w = plane.shape[:2]
        out = np.zeros((h, w, self.n_classes), np.float32)
        for top, bottom, feats in feature_bands(plane):
            known = self.forest.predict_proba(feats.reshape(-1, feats.shape[-1])).astype(np.float32)
            out[top:bottom, :, self.forest.classes_.astype(int)] = known.reshape(bottom - top, w, -1)
        return out
