"""Reading images and label images from disk, pairing them, and writing results safely."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .errors import InputError

TIFF_SUFFIXES = (".tif", ".tiff")
#: Folders with this suffix are zarr arrays (or groups whose first array is the image).
ZARR_SUFFIX = ".zarr"
IMAGE_SUFFIXES = (*TIFF_SUFFIXES, ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".npy", ZARR_SUFFIX)
#: Suffixes a mask's stem may add to its image's stem (``cat.png`` <- ``cat_mask.png``).
MASK_STEM_SUFFIXES = ("", "_mask", "_masks", "_label", "_labels")
#: TIFF files larger than this are read lazily: memory-mapped when their layout allows
#: it (uncompressed, contiguous), else through tifffile's zarr store, tile by tile.
MEMMAP_THRESHOLD = 256 << 20


#: Double suffixes that name one format: ``cells.ome.tif`` has the stem ``cells``.
DOUBLE_SUFFIXES = (".ome.tif", ".ome.tiff", ".ome.zarr")


def file_stem(path: str | os.PathLike) -> str:
    """The name without its format's suffix, which may be double (``.ome.tif``)."""
    name = Path(path).name
    lower = name.lower()
    for suffix in DOUBLE_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def list_images(folder: str | os.PathLike, suffixes: Iterable[str] = IMAGE_SUFFIXES) -> list[Path]:
    """Image files directly in ``folder`` (not hidden, not temporary), and ``.zarr``
    folders when ``suffixes`` includes it, sorted by name."""
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"folder {folder} does not exist")
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder")
    suffixes = tuple(suffixes)

    def wanted(p: Path) -> bool:
        if p.name.startswith(".") or p.suffix.lower() not in suffixes:
            return False
        return p.is_dir() if p.suffix.lower() == ZARR_SUFFIX else p.is_file()

    return sorted(p for p in folder.iterdir() if wanted(p))


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as an array (TIFF via tifffile, others via Pillow, ``.npy``).

    Palette PNGs (as many mask tools write) give their indices, not colours. Large TIFFs
    (plain, tiled, compressed, BigTIFF) and ``.zarr`` folders are opened lazily: only
    what is indexed is read, so prediction reads them tile by tile.

    Raises:
        InputError: The file is missing, empty or not a readable image; the message
            names the file.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist")
    if path.is_dir() and path.suffix.lower() == ZARR_SUFFIX:
        return _check_array(path, open_zarr(path))
    if path.is_dir():
        raise InputError(f"{path} is a folder, not an image file")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path} is empty (0 bytes)")
    suffix = path.suffix.lower()
    try:
        if suffix in TIFF_SUFFIXES:
            import tifffile

            if size > MEMMAP_THRESHOLD:
                try:
                    return tifffile.memmap(path, mode="r")
                except (ValueError, OSError):
                    return _check_array(path, _open_tiff_lazily(path))
            array = tifffile.imread(path)
        elif suffix == ".npy":
            array = np.load(path, mmap_mode="r" if size > MEMMAP_THRESHOLD else None, allow_pickle=False)
        else:
            from PIL import Image

            with Image.open(path) as img:
                img.load()
                if img.mode in ("LA", "PA", "CMYK", "YCbCr", "HSV"):
                    img = img.convert("RGBA" if img.mode.endswith("A") else "RGB")
                elif img.mode == "I;16B":
                    img = img.convert("I;16")
                array = np.asarray(img)
    except InputError:
        raise
    except Exception as err:  # each image library raises its own kinds of error
        raise InputError(f"cannot read {path} as an image ({type(err).__name__}: {err})") from None
    array = np.asarray(array) if not isinstance(array, np.memmap) else array
    if array.dtype == bool:
        array = array.astype(np.uint8)
    return _check_array(path, array)


def read_axes(path: str | os.PathLike) -> str | None:
    """The axes a file states, upper case (``CYX``, ``TZCYX``, ``YXS``...), or None.

    TIFF: tifffile's reading of its first series (ImageJ hyperstacks and OME-TIFF name
    their axes; for other TIFFs tifffile tells RGB samples ``S`` from pages ``I``/``Q``).
    OME-Zarr: the multiscales metadata's axes. Other formats say nothing.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in TIFF_SUFFIXES and path.is_file():
            import tifffile

            with tifffile.TiffFile(path) as tif:
                return str(tif.series[0].axes).upper() or None
        if suffix == ZARR_SUFFIX and path.is_dir():
            return _ome_zarr_axes(path)
    except Exception:  # unreadable metadata: read_image reports the file itself
        return None
    return None


#: Units as files write them, and as the measurement columns name them.
UNIT_NAMES = {
    "\u00b5m": "um",
    "\u03bcm": "um",
    "\\u00B5m": "um",
    "micron": "um",
    "micrometer": "um",
    "nanometer": "nm",
    "millimeter": "mm",
    "microns": "um",
    "um": "um",
    "nm": "nm",
    "mm": "mm",
}


def read_pixel_size(path: str | os.PathLike) -> tuple[dict[str, float], str] | None:
    """The physical size of a pixel along each spatial axis a file states, and its unit:
    ``({"z": 2.0, "y": 0.5, "x": 0.5}, "um")``, or None.

    OME-TIFF: ``PhysicalSizeX/Y/Z`` and their units. ImageJ TIFF: the X and Y
    resolution tags (pixels per unit), ``spacing`` for Z and ``unit``.
    """
    path = Path(path)
    if path.suffix.lower() not in TIFF_SUFFIXES or not path.is_file():
        return None
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            if tif.is_ome:
                return _ome_pixel_size(tif.ome_metadata)
            if tif.is_imagej:
                return _imagej_pixel_size(tif.pages.first, tif.imagej_metadata or {})
    except Exception:  # unreadable metadata: no size, rather than no image
        return None
    return None


def read_spatial_size(path: str | os.PathLike, spatial: int) -> tuple[tuple[float, ...], str] | None:
    """The pixel size a file states along its last ``spatial`` axes of Z, Y, X (``(Y, X)``
    or ``(Z, Y, X)``) and its unit, or None where it does not state all of them."""
    found = read_pixel_size(path)
    names = "zyx"[-spatial:]
    if found is None or not all(n in found[0] for n in names):
        return None
    return tuple(found[0][n] for n in names), found[1]


def _ome_pixel_size(xml: str) -> tuple[dict[str, float], str] | None:
    import xml.etree.ElementTree as ET

    root = ET.fromstring(xml)
    pixels = next((e for e in root.iter() if e.tag.endswith("}Pixels") or e.tag == "Pixels"), None)
    if pixels is None:
        return None
    sizes, unit = {}, "um"
    for axis in "zyx":
        value = pixels.get(f"PhysicalSize{axis.upper()}")
        if value is not None:
            sizes[axis] = float(value)
            unit = UNIT_NAMES.get(pixels.get(f"PhysicalSize{axis.upper()}Unit", "µm"), unit)
    return (sizes, unit) if "x" in sizes and "y" in sizes else None


def _imagej_pixel_size(page, metadata: dict) -> tuple[dict[str, float], str] | None:
    tags = page.tags
    if "XResolution" not in tags or "YResolution" not in tags:
        return None
    sizes = {}
    for axis, tag in (("x", "XResolution"), ("y", "YResolution")):
        numerator, denominator = tags[tag].value
        if not numerator:
            return None
        sizes[axis] = denominator / numerator
    if metadata.get("spacing"):
        sizes["z"] = float(metadata["spacing"])
    unit = UNIT_NAMES.get(str(metadata.get("unit", "")).strip())
    if unit is None:
        return None  # a resolution without a unit is a print resolution (dpi), not a pixel size
    return sizes, unit


def _ome_zarr_axes(path: Path) -> str | None:
    import zarr

    node = zarr.open(str(path), mode="r")
    multiscales = dict(node.attrs).get("multiscales") if not hasattr(node, "shape") else None
    if not multiscales:
        return None
    axes = multiscales[0].get("axes")
    if not axes:
        return None
    letters = []
    for axis in axes:
        name = axis.get("name", "") if isinstance(axis, dict) else str(axis)
        letters.append(name[:1].upper() or "Q")
    text = "".join(letters)
    return text if len(set(text)) == len(text) else None


def read_image_with_axes(path: str | os.PathLike, axes: str | None = None):
    """``(array in the package's axis order, its axes or None)`` of an image file.

    ``axes`` (any order: ``CYX``, ``TZCYX``...) overrules what the file says; without
    either the axes are guessed later (a last axis of at most 4 is channels). The
    array is reordered lazily (:class:`~napari_unet_cat.arrays.AxesView`), so a lazily
    read file stays lazy.
    """
    from .arrays import to_canonical

    array = read_image(path)
    return to_canonical(array, axes or read_axes(path), name=str(path))


def _check_array(path: Path, array):
    """``array`` if it can be an image, else an :class:`InputError` naming ``path``."""
    shape, dtype = tuple(array.shape), np.dtype(array.dtype)
    if len(shape) < 2 or min(shape) == 0:
        raise InputError(f"{path} holds an array of shape {shape}, not an image")
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise InputError(f"{path} has pixel type {dtype}, which is not a number type")
    return array


def _open_tiff_lazily(path: Path):
    """A TIFF's first series at full resolution as a read-only zarr array (tile by tile)."""
    import tifffile
    import zarr

    store = tifffile.imread(path, aszarr=True, level=0)
    return zarr.open(store, mode="r")


def open_zarr(path: str | os.PathLike):
    """A ``.zarr`` folder as a read-only, lazily read array: the array itself, or in a
    group (OME-Zarr, for example) its full-resolution array ``0`` or else its first.

    Raises:
        InputError: Not a zarr array or group, or a group holding no array.
    """
    import zarr

    path = Path(path)
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as err:
        raise InputError(f"cannot read {path} as a zarr array ({type(err).__name__}: {err})") from None
    if hasattr(node, "shape") and hasattr(node, "dtype"):
        return node
    arrays = dict(node.arrays())
    if not arrays:
        raise InputError(f"{path} is a zarr group without any array")
    return arrays["0"] if "0" in arrays else arrays[sorted(arrays)[0]]


def read_labels(path: str | os.PathLike, labelme_values: dict[str, int] | None = None) -> np.ndarray:
    """Read a label image: integer values, one channel.

    Colour masks whose channels are equal are reduced to one channel; float masks with
    whole-number values are accepted; a labelme ``.json`` file is rasterised (its label
    names numbered by ``labelme_values``).
    """
    from .labelme import read_labelme

    path = Path(path)
    if path.suffix.lower() == ".json":
        return read_labelme(path, labelme_values, read_image=read_image).labels
    labels = np.asarray(read_image(path))
    if labels.ndim == 3 and labels.shape[-1] in (3, 4):
        colour = labels[..., :3]
        if (colour == colour[..., :1]).all():
            labels = colour[..., 0]
        else:
            raise InputError(
                f"{path} is a colour image, not a label image: save masks with one channel, each "
                "pixel holding its class value (0, 1, 2...)"
            )
    if np.issubdtype(labels.dtype, np.floating):
        if not np.isfinite(labels).all() or (labels != np.round(labels)).any():
            raise InputError(f"{path} holds fractional or non-finite values; label images need whole numbers")
        labels = labels.astype(np.int64)
    if labels.min() < 0:
        raise InputError(f"{path} holds negative values; label values must be 0 or more")
    return labels


def pair_by_stem(
    image_dir: str | os.PathLike,
    mask_dir: str | os.PathLike,
    *,
    mask_suffixes: Iterable[str] = (*IMAGE_SUFFIXES, ".json"),
) -> tuple[list[tuple[Path, Path]], list[Path], list[Path]]:
    """Match images to masks by file stem (a mask may add ``_mask`` or ``_labels``;
    ``.ome.tif`` and ``.ome.tiff`` count as one suffix).

    Returns:
        ``(pairs, images_without_mask, masks_without_image)``.
    """
    images = list_images(image_dir)
    masks = list_images(mask_dir, mask_suffixes)
    by_stem: dict[str, Path] = {}
    for mask in masks:
        stem = file_stem(mask)
        if stem in by_stem:
            raise InputError(f"two masks share the stem {stem!r}: {by_stem[stem]} and {mask}")
        by_stem[stem] = mask
    seen: dict[str, Path] = {}
    pairs, lonely = [], []
    used: set[Path] = set()
    for image in images:
        stem = file_stem(image)
        if stem in seen:
            raise InputError(f"two images share the stem {stem!r}: {seen[stem]} and {image}")
        seen[stem] = image
        match = next((by_stem[stem + s] for s in MASK_STEM_SUFFIXES if stem + s in by_stem), None)
        if match is None or match in used:
            lonely.append(image)
        else:
            pairs.append((image, match))
            used.add(match)
    orphans = [m for m in masks if m not in used]
    return pairs, lonely, orphans


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Call ``write(temporary_path)`` then rename the result onto ``path``.

    ``path`` is therefore either absent, its old self, or complete: never half-written.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_tiff(path: str | os.PathLike, array: np.ndarray, *, compression: str = "zlib") -> Path:
    """Write ``array`` as a compressed TIFF, atomically."""
    import tifffile

    def write(tmp: Path) -> None:
        tifffile.imwrite(tmp, array, compression=compression)

    return atomic_write(path, write)


def load_training_pairs(
    image_dir: str | os.PathLike,
    mask_dir: str | os.PathLike,
    *,
    axes: str | None = None,
    known_classes: dict[str, int] | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray], list[str], dict[int, str], list[str], list[str | None]]:
    """Read every (image, mask) pair of two folders for training.

    Masks may be label images or labelme ``.json`` files (label names numbered
    consistently across files; a name in ``known_classes``, a trained model's, gets that
    model's value). Unmatched files are reported, not fatal, as long as
    one pair remains. Images come in the package's axis order (channels last), from
    ``axes`` or what each file says (see :func:`read_image_with_axes`); masks have the
    image's axes without the channels.

    Returns:
        ``(images, labels, names, class_names, warnings, image_axes)``.
    """
    from .labelme import label_names

    pairs, lonely, orphans = pair_by_stem(image_dir, mask_dir)
    warnings = [f"{p} has no mask in {mask_dir}: skipped" for p in lonely]
    warnings += [f"{m} has no image in {image_dir}: skipped" for m in orphans]
    if not pairs:
        raise InputError(f"no image in {image_dir} has a mask of the same name in {mask_dir}")
    json_masks = [m for _, m in pairs if m.suffix.lower() == ".json"]
    values = label_names(json_masks, known_classes) if json_masks else None
    images, labels, names, image_axes = [], [], [], []
    for image_path, mask_path in pairs:
        image, image_axis_names = read_image_with_axes(image_path, axes)
        image = np.asarray(image)
        mask = read_labels(mask_path, values)
        if mask.shape != image.shape[: mask.ndim] or mask.ndim > image.ndim:
            shown = f" (axes {image_axis_names})" if image_axis_names else ""
            raise InputError(
                f"mask {mask_path} has shape {mask.shape} but image {image_path} has shape {image.shape}{shown}"
            )
        images.append(image)
        labels.append(mask)
        names.append(image_path.name)
        image_axes.append(image_axis_names)
    class_names = {v: k for k, v in values.items() if v} if values else {}
    return images, labels, names, class_names, warnings, image_axes


def read_label_folder(folder: str | os.PathLike) -> tuple[list[Path], list[np.ndarray]]:
    """The label images of ``folder`` (see :func:`list_images`) and their paths, in order."""
    paths = list_images(folder)
    return paths, [read_labels(p) for p in paths]
