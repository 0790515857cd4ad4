"""Synthetic images with known masks: for the demo, the sample data and the tests.

Each image shows bright textured ellipses ("cells", class 1) on an unevenly lit, noisy
background (class 0) sprinkled with small bright specks that a plain threshold takes for
objects but that are background.
"""

from __future__ import annotations

import numpy as np


def make_image(
    shape: tuple[int, int] = (128, 128),
    *,
    seed: int = 0,
    n_objects: tuple[int, int] = (4, 9),
    radius: tuple[float, float] = (6.0, 14.0),
    rgb: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic image (uint8) and its mask (uint8, 0 background, 1 object)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    mask = np.zeros(shape, np.uint8)
    for _ in range(int(rng.integers(n_objects[0], n_objects[1] + 1))):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(*radius), rng.uniform(*radius)
        angle = rng.uniform(0, np.pi)
        c, s = np.cos(angle), np.sin(angle)
        u = ((yy - cy) * c + (xx - cx) * s) / ry
        v = (-(yy - cy) * s + (xx - cx) * c) / rx
        mask[u * u + v * v <= 1.0] = 1
    gy, gx = rng.uniform(-0.15, 0.15, size=2)
    background = 0.25 + gy * (yy / h - 0.5) + gx * (xx / w - 0.5)
    texture = gaussian_filter(rng.normal(0, 1, shape), 2.0).astype(np.float32)
    objects = gaussian_filter(mask.astype(np.float32), 1.0) * (0.35 + 0.08 * texture)
    specks = np.zeros(shape, np.float32)
    n_specks = int(rng.integers(5, 15))
    specks[rng.integers(0, h, n_specks), rng.integers(0, w, n_specks)] = 1.0
    specks = gaussian_filter(specks, 1.0) * 4.0
    image = background + objects + 0.6 * np.minimum(specks, 1.0) + rng.normal(0, 0.06, shape)
    image = np.clip(image * 255, 0, 255).astype(np.uint8)
    if rgb:
        tint = np.array([1.0, 0.8, 0.6], np.float32)
        image = np.clip(image[..., None] * tint, 0, 255).astype(np.uint8)
    return image, mask


def make_dataset(
    n: int, shape: tuple[int, int] = (128, 128), *, seed: int = 0, rgb: bool = False
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n`` synthetic images and masks with seeds ``seed, seed + 1, ...``."""
    pairs = [make_image(shape, seed=seed + i, rgb=rgb) for i in range(n)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def strokes_from_mask(mask: np.ndarray, *, fraction: float = 0.05, seed: int = 0) -> np.ndarray:
    """Sparse annotations as a person paints them: short strokes inside each class.

    Returns labels where 1 marks background strokes, 2 marks object strokes and 0 is
    not annotated; about ``fraction`` of the pixels end up annotated.
    """
    from scipy.ndimage import binary_dilation, binary_erosion

    rng = np.random.default_rng(seed)
    out = np.zeros(mask.shape, np.uint8)
    target = fraction * mask.size
    inside = {1: binary_erosion(mask == 0, iterations=3), 2: binary_erosion(mask == 1, iterations=2)}
    # Where each class may still start a stroke (inside it, not yet painted), kept up to
    # date stroke by stroke, so that each stroke costs one pass over a boolean array.
    free = {cls: inside[cls].copy() for cls in inside}
    painted = 0
    height, width = mask.shape
    while painted < target:
        cls = 1 + int(rng.integers(2))
        candidates = np.flatnonzero(free[cls])
        if not candidates.size:
            if not free[3 - cls].any():
                break
            continue
        y, x = divmod(int(candidates[rng.integers(candidates.size)]), width)
        length = int(rng.integers(5, 15))
        dy, dx = rng.normal(size=2)
        norm = np.hypot(dy, dx) or 1.0
        points = [(int(round(y + t * dy / norm)), int(round(x + t * dx / norm))) for t in range(length)]
        points = [(py, px) for py, px in points if 0 <= py < height and 0 <= px < width]
        # The stroke, one pixel wide, thickened by a cross: drawn in its bounding box only.
        top, left = max(min(p[0] for p in points) - 1, 0), max(min(p[1] for p in points) - 1, 0)
        bottom, right = min(max(p[0] for p in points) + 2, height), min(max(p[1] for p in points) + 2, width)
        box = np.zeros((bottom - top, right - left), bool)
        for py, px in points:
            box[py - top, px - left] = True
        region = (slice(top, bottom), slice(left, right))
        stroke = binary_dilation(box) & inside[cls][region]
        painted += int((stroke & (out[region] == 0)).sum())
        out[region][stroke] = cls
        free[cls][region][stroke] = False
    return out


def make_instance_image(
    shape: tuple[int, int] = (128, 128),
    *,
    seed: int = 0,
    n_objects: tuple[int, int] = (8, 14),
    radius: tuple[float, float] = (7.0, 12.0),
) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic image of touching cells (uint8) and its instance mask (uint16,
    0 background, one value per cell).

    Cells are ellipses of their own brightness, each brightest at its centre and dimmer
    towards its rim, placed so that many of them touch or overlap (a later cell covers an
    earlier one), as nuclei in a dense field do.
    """

    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    instances = np.zeros(shape, np.uint16)
    intensity = np.zeros(shape, np.float32)
    n = int(rng.integers(n_objects[0], n_objects[1] + 1))
    centres: list[tuple[float, float]] = []
    for value in range(1, n + 1):
        ry, rx = rng.uniform(*radius), rng.uniform(*radius)
        if centres and rng.random() < 0.6:
            # Next to an earlier cell, so that the two touch.
            py, px = centres[int(rng.integers(len(centres)))]
            angle = rng.uniform(0, 2 * np.pi)
            step = rng.uniform(0.9, 1.3) * (ry + rx)
            cy, cx = py + step * np.sin(angle), px + step * np.cos(angle)
        else:
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        centres.append((cy, cx))
        angle = rng.uniform(0, np.pi)
        c, s = np.cos(angle), np.sin(angle)
        u = ((yy - cy) * c + (xx - cx) * s) / ry
        v = (-(yy - cy) * s + (xx - cx) * c) / rx
        r2 = u * u + v * v
        inside = r2 <= 1.0
        instances[inside] = value
        intensity[inside] = rng.uniform(0.45, 0.9) * (1.0 - 0.45 * r2[inside])
    return _finish(rng, instances, intensity, n, background_sigma=8.0)


def make_volume(
    shape: tuple[int, int, int] = (24, 64, 64),
    *,
    seed: int = 0,
    n_objects: tuple[int, int] = (6, 10),
    radius: tuple[float, float] = (5.0, 9.0),
    z_step: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic z-stack of nuclei (uint8 ``(Z, Y, X)``) and its 3D instance mask
    (uint16, 0 background, one value per nucleus across its planes).

    Nuclei are ellipsoids of their own brightness, dimmer towards their rim, several of
    them touching. ``z_step`` is the spacing of the planes in units of the pixel size
    (2: Z twice as coarse as Y and X, as in most confocal stacks).
    """

    rng = np.random.default_rng(seed)
    zz, yy, xx = np.mgrid[0 : shape[0], 0 : shape[1], 0 : shape[2]].astype(np.float32)
    zz *= z_step
    instances = np.zeros(shape, np.uint16)
    intensity = np.zeros(shape, np.float32)
    n = int(rng.integers(n_objects[0], n_objects[1] + 1))
    centres: list[np.ndarray] = []
    extent = np.array([shape[0] * z_step, shape[1], shape[2]], np.float32)
    for value in range(1, n + 1):
        radii = rng.uniform(*radius, size=3).astype(np.float32)
        if centres and rng.random() < 0.5:
            direction = rng.normal(size=3)
            direction /= np.linalg.norm(direction)
            centre = centres[int(rng.integers(len(centres)))] + direction * rng.uniform(1.0, 1.3) * 2 * radii.mean()
        else:
            centre = rng.uniform(0, 1, 3) * extent
        centres.append(centre)
        r2 = sum(((axis - c) / r) ** 2 for axis, c, r in zip((zz, yy, xx), centre, radii))
        inside = r2 <= 1.0
        instances[inside] = value
        intensity[inside] = rng.uniform(0.45, 0.9) * (1.0 - 0.45 * r2[inside])
    return _finish(rng, instances, intensity, n, background_sigma=6.0)


def _finish(rng, instances: np.ndarray, intensity: np.ndarray, n: int, *, background_sigma: float):
    """The image of drawn objects (uint8: slightly blurred, over a smooth background,
    with noise) and their mask, numbered 1..N: objects wholly covered by later ones are gone."""
    from scipy.ndimage import gaussian_filter

    shape = instances.shape
    background = 0.12 + 0.05 * gaussian_filter(rng.normal(0, 1, shape), background_sigma)
    image = gaussian_filter(intensity, 0.8) + background + rng.normal(0, 0.03, shape)
    image = np.clip(image * 255, 0, 255).astype(np.uint8)
    present = np.unique(instances[instances > 0])
    table = np.zeros(n + 1, np.uint16)
    table[present] = np.arange(1, present.size + 1, dtype=np.uint16)
    return image, table[instances]
