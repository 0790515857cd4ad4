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

from .config import IGNORE

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


#: The forest guide is on by default for at most this many planes with strokes on less
#: than this share of their pixels: the napari strokes path, where it costs seconds.
GUIDE_MAX_PLANES = 16
GUIDE_MAX_SHARE = 0.25
#: The forest's guesses of at most this many training planes are kept for the preview.
KEEP_GUESSES = 4


def wants_forest_guide(planes, settings, value_map: dict) -> bool:
    """Whether sparse strokes on ``planes`` should be guided by the forest (see
    ``TrainingSettings.forest_guide``)."""
    if settings.label_mode != "sparse" or settings.forest_guide is False or settings.guide_weight == 0:
        return False
    if settings.forest_guide:
        return True
    if any(target == IGNORE for target in value_map.values()):
        return False  # pixels the user chose to ignore must stay ignored
    annotated = sum(int((p.targets >= 0).sum()) for p in planes)
    return len(planes) <= GUIDE_MAX_PLANES and annotated < GUIDE_MAX_SHARE * sum(p.targets.size for p in planes)


class ForestGuide:
    """Training planes whose unpainted pixels carry confident guesses: a forest's learnt
    from the strokes, or (``guess``) another source's, such as the trained network a
    model starts from (:func:`~napari_unet_cat.transfer.network_guess`).

    The forest learns from the training strokes only; pixels held out for validation
    stay out. Strokes weigh 1 in the loss, guessed pixels ``guide_weight``.

    Attributes:
        forest: The :class:`FirstGuess` learnt from the strokes (the preview's first
            guess too); None when ``guess`` is given.
        planes: The guided training planes.
        guessed: ``(image, probabilities)`` of the first planes guessed, for the preview.
        guided_pixels: Pixels the guesses labelled.
    """

    def __init__(
        self, train_planes, val_planes, n_classes: int, *, seed: int, confidence: float, weight: float, guess=None,
        source: str = "",
    ):  # fmt: skip
        from .dataset import TrainingPlane

        self.forest = None
        if guess is None:
            self.forest = FirstGuess(train_planes, n_classes, seed=seed, max_planes=len(train_planes))
            guess, source = self.forest.probabilities, "a random forest on the strokes' filter features"
        self.source = source or "the guesses"
        self.guessed: list[tuple[np.ndarray, np.ndarray]] = []
        self.guided_pixels = 0
        held_out = _held_out_pixels(val_planes)
        self.planes = []
        for p in train_planes:
            probabilities = guess(p.image)
            if len(self.guessed) < KEEP_GUESSES:
                self.guessed.append((p.image, probabilities))
            sure = (probabilities.max(axis=-1) >= confidence) & (p.targets < 0)
            if id(p.image) in held_out:
                sure &= ~held_out[id(p.image)]
            if p.unpadded is not None:
                sure[p.unpadded[0] :, :] = False  # not on the mirror padding of a small plane
                sure[:, p.unpadded[1] :] = False
            targets = np.where(sure, np.argmax(probabilities, axis=-1), p.targets).astype(p.targets.dtype)
            weights = np.where(p.targets >= 0, 1.0, np.where(sure, weight, 0.0)).astype(np.float32)
            plane = TrainingPlane(p.image, targets, p.source, p.image_index, weights=weights, unpadded=p.unpadded)
            plane.index_annotations(n_classes)
            self.guided_pixels += int(sure.sum())
            self.planes.append(plane)

    def note(self, weight: float) -> str:
        """What the guide did, for the log and the panel."""
        total = sum(int((p.weights > 0).sum()) for p in self.planes)
        return (
            f"{self.source} guesses {self.guided_pixels:,} unpainted pixels "
            f"({100 * self.guided_pixels / max(total, 1):.0f}% of those trained on), at {weight:g} of a stroke's weight"
        )


def _held_out_pixels(val_planes) -> dict[int, np.ndarray]:
    """Annotated pixels held out for validation, by the identity of their image."""
    held_out: dict[int, np.ndarray] = {}
    for p in val_planes:
        known = p.targets >= 0
        held_out[id(p.image)] = held_out[id(p.image)] | known if id(p.image) in held_out else known
    return held_out
