"""The ``napari-unet-cat`` command: train, predict, evaluate, info, export, demo."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from . import __version__
from .config import (
    LABEL_MODES,
    PRESET_CHOICES,
    PRESET_LEARNING_RATES,
    TrainingSettings,
    parse_class_weights,
    parse_value_map,
)
from .errors import InputError, UNetCatError
from .resources import PRECISIONS, resolve_preset
from .volume_modes import DEFAULT_VOLUME_MODE, VOLUME_MODES


def _checked(convert, ok, expected: str):
    """An argparse type: ``convert`` the text, then require ``ok(value)``."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value

    return parse


_positive_int = _checked(int, lambda v: v >= 1, "a whole number of at least 1")
_positive_float = _checked(float, lambda v: 0 < v < float("inf"), "a positive number")
_fraction = _checked(float, lambda v: 0 <= v < 1, "a fraction in [0, 1)")


def _scale_or_auto(text: str) -> float | str:
    """``auto``, or a positive number."""
    return "auto" if text.strip().lower() == "auto" else _positive_float(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-unet-cat",
        description="Train a U-Net from annotated images and segment new images with it.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _add_train(sub)
    _add_predict(sub)
    _add_other_commands(sub)
    return parser


def _add_train(sub) -> None:
    """The ``train`` command: data and network."""
    t = sub.add_parser("train", help="train a model from folders of images and masks")
    t.add_argument("--images", required=True, type=Path, help="folder of training images")
    t.add_argument(
        "--masks",
        required=True,
        type=Path,
        help="folder of masks (label images or labelme .json) with the images' file stems",
    )
    t.add_argument("--out", required=True, type=Path, help="model file to write (e.g. model.keras)")
    t.add_argument(
        "--epochs", type=_positive_int, default=50, help="epochs (an upper bound with --time-budget; default 50)"
    )
    t.add_argument(
        "--time-budget",
        type=_positive_float,
        metavar="MINUTES",
        help="stop after this many minutes and keep the best model; the learning rate "
        "falls along a cosine over the budget unless --constant-learning-rate",
    )
    t.add_argument(
        "--preset",
        choices=PRESET_CHOICES,
        default="auto",
        help="network size: classic (the tutorial's, 31 M weights), light (16x fewer), or auto (default: classic "
        "on a GPU, light on a CPU)",
    )
    t.add_argument("--base-filters", type=_positive_int, help="override the preset's filters at the first level")
    t.add_argument("--depth", type=_positive_int, help="override the preset's number of poolings")
    t.add_argument(
        "--patch-size", type=_positive_int, help="training patch side, Y and X (default 128; 64 with --ndim 3)"
    )
    t.add_argument(
        "--ndim",
        type=int,
        choices=(2, 3),
        default=2,
        help="2 (default): a network of planes, which segments z-stacks in 3D too (see predict --volume); 3: a 3D "
        "U-Net of volumes (z-stacks with a Z axis, from the file or --axes ZYX), trained on 3D patches",
    )
    t.add_argument(
        "--patch-depth",
        type=_positive_int,
        help="with --ndim 3: the Z side of a training patch (default: the Y-X side, less where Z is coarser)",
    )
    _add_voxel_size(t, "the images' voxel size, Z Y X, in um (default: the first image file's own, if it states one)")
    t.add_argument(
        "--batch-size", type=_positive_int, help="patches per step (default 20; 8 with --sparse, for short runs)"
    )
    t.add_argument(
        "--learning-rate",
        type=_positive_float,
        help="Adam learning rate (default: the preset's, 1e-4 for classic, 1e-3 for light)",
    )
    t.add_argument(
        "--constant-learning-rate",
        action="store_true",
        help="keep the learning rate fixed (by default it falls along a cosine over the budget or the epochs)",
    )
    t.add_argument("--val-fraction", type=_fraction, default=0.1, help="share held out for validation (default 0.1)")
    t.add_argument("--steps-per-epoch", type=_positive_int, help="steps per epoch (default: one pass over the images)")
    _add_train_labels(t)
    _add_train_run(t)


def _add_train_labels(t: argparse.ArgumentParser) -> None:
    """``train``: what the labels mean, and the instance targets."""
    t.add_argument(
        "--labels",
        choices=LABEL_MODES,
        help="what mask values mean: dense (every value a class, 0 = background; the default), sparse "
        "(0 = not annotated: painted strokes) or instances (every nonzero value one object, 0 = background)",
    )
    t.add_argument("--sparse", action="store_true", help="the same as --labels sparse")
    t.add_argument(
        "--map",
        nargs="+",
        action="extend",
        default=[],
        metavar="VALUE=CLASS",
        help="relabel mask values, e.g. 255=1, VALUE=ignore, or nonzero=1 (every nonzero value); may be repeated",
    )
    t.add_argument(
        "--class-weight",
        nargs="+",
        action="extend",
        default=[],
        metavar="VALUE=WEIGHT",
        help="weight the loss of a class, e.g. 1=5 for a rare class (default 1 each); may be repeated",
    )
    t.add_argument(
        "--many-classes",
        action="store_true",
        help="train dense or sparse masks even when they look like object ids (many values, one blob each)",
    )
    t.add_argument(
        "--border-width",
        type=_positive_int,
        default=2,
        help="instances: width in pixels of the object border class, at the training scale (default 2)",
    )
    t.add_argument(
        "--w0",
        type=_checked(float, lambda v: 0 <= v < float("inf"), "a number of at least 0"),
        default=10.0,
        help="instances: weight of the gaps between objects in the loss (the U-Net paper's w0; default 10)",
    )
    t.add_argument(
        "--class-balance",
        type=_checked(float, lambda v: 0 <= v <= 1, "a number in [0, 1]"),
        default=0.5,
        help="instances: weight each class by its pixel share to this power, negated (1: the paper's inverse "
        "frequency, 0: none; default 0.5); prediction undoes the weights' shift of the probabilities",
    )
    t.add_argument(
        "--sigma",
        type=_positive_float,
        default=5.0,
        help="instances: distance scale in pixels of that weight (the paper's sigma; default 5)",
    )


def _add_train_run(t: argparse.ArgumentParser) -> None:
    """``train``: resolution, augmentation, the model to continue and the devices."""
    t.add_argument(
        "--scale", type=_positive_float, default=1.0, help="train and predict at this fraction of full resolution"
    )
    t.add_argument("--target-size", type=_positive_int, help="scale so the median longer side becomes N pixels")
    t.add_argument(
        "--long-side",
        type=_positive_int,
        help="photos: resize each image so its longer side is N pixels, in training and in prediction "
        "(whatever the camera's resolution; masks come back at the photo's own size)",
    )
    t.add_argument("--no-augment", action="store_true", help="no flips, rotations, deformation or jitter")
    t.add_argument(
        "--forest-guide",
        choices=("auto", "on", "off"),
        default="auto",
        help="sparse strokes: also learn from a random forest's confident guesses of the unpainted pixels "
        "(default auto: when strokes cover under a quarter of at most 16 images)",
    )
    t.add_argument(
        "--resume",
        type=Path,
        metavar="MODEL",
        help="continue training this model file, or fine-tune a built-in model (e.g. nuclei, pets) on masks of "
        "its own classes (labelme names it knows keep its values); the learning rate then defaults to a tenth of "
        "the model's",
    )
    t.add_argument(
        "--start-from",
        metavar="MODEL",
        help="a new model of your masks' classes that starts from this model's network (a built-in model such as "
        "pets or nuclei, or a file) instead of from nothing: its layers, how it reads images, and a new output "
        "layer initialized from its own (the lowest class is the background); learning rate as with --resume",
    )
    t.add_argument(
        "--keep",
        type=float,
        default=1.0,
        metavar="SHARE",
        help="with --resume: keep this share (0 to 1) of the training's change to the weights, a weight-space "
        "average with the resumed model; below 1 holds on to more of what it knew, such as a built-in model's "
        "breadth when fine-tuning on a few images (default 1: the trained weights)",
    )
    t.add_argument(
        "--gray",
        action="store_true",
        help="train a one-channel model that also reads RGB images (as the mean of their colour channels)",
    )
    _add_axes(t)
    t.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the initial weights, the validation split and the patches (default 0)",
    )
    _add_precision(t)
    t.add_argument(
        "--xla",
        choices=("auto", "on", "off"),
        default="auto",
        help="XLA compilation (default auto: on for GPUs, off on CPUs)",
    )
    t.add_argument(
        "--data-parallel",
        choices=("auto", "on", "off"),
        default="auto",
        help="split each batch across GPUs (default auto: when there are several)",
    )


def _add_predict(sub) -> None:
    """The ``predict`` command."""
    p = sub.add_parser("predict", help="segment every image of a folder")
    p.add_argument(
        "--model",
        required=True,
        type=Path,
        help="model file, a built-in model's name (nuclei), or a bioimage.io package (.zip or folder) of any tool",
    )
    p.add_argument(
        "--measure",
        action="store_true",
        help="also write <stem>_objects.csv (a row per object: size, place, shape, intensities) and objects.csv "
        "(a row per image)",
    )
    _add_voxel_size(
        p,
        "pixel size in um, Y X (or Z Y X), for the measurements and the three-axes volume mode (default: the "
        "file's own, if it states one)",
    )
    p.add_argument(
        "--volume",
        choices=VOLUME_MODES,
        help="how a 2D model answers a z-stack: planes (each on its own, as a time series), stitch (plane objects "
        "linked by overlap), xy (3D objects from the planes' probabilities) or three-axes (the XY, XZ and YZ planes' "
        f"probabilities averaged, 3D objects); default: {DEFAULT_VOLUME_MODE} where the file's axes (or --axes) "
        "name a Z, else planes. A 3D model's answer is 3D whatever this says",
    )
    p.add_argument(
        "--trust-package-code",
        action="store_true",
        help="let a bioimage.io package's pytorch_state_dict or keras_hdf5 weights run the Python code it carries",
    )
    p.add_argument("--input", required=True, type=Path, help="folder of images")
    p.add_argument("--output", required=True, type=Path, help="folder for the masks (<stem>.tif)")
    p.add_argument("--tile-size", type=_positive_int, help="tile side (default: from available memory)")
    p.add_argument(
        "--scale",
        type=_scale_or_auto,
        help="predict at this fraction of full resolution instead of the model's own, for objects of another "
        "size than it was trained on (e.g. 0.5 for objects twice as large); 'auto' (instance models): estimate it "
        "for each image from the objects it finds (the scale used is in the output folder's log)",
    )
    p.add_argument("--probabilities", action="store_true", help="also write <stem>_probabilities.tif")
    p.add_argument(
        "--tta",
        action="store_true",
        help="test-time augmentation: average over flips and 90-degree rotations (8x slower)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="redo images whose mask exists (also needed to redo a folder that another model segmented)",
    )
    p.add_argument(
        "--instances",
        choices=("watershed", "components"),
        help="write objects (one label each): watershed (the default of a model trained on instances) or "
        "components (connected parts of the object classes: the weaker fallback for other models)",
    )
    p.add_argument(
        "--min-size",
        type=_checked(int, lambda v: v >= 0, "a whole number of at least 0"),
        help="remove objects smaller than this many pixels (default: the model's, the 5th percentile of its "
        "training objects' areas; 0 keeps all)",
    )
    p.add_argument("--split", action="store_true", help="with --instances components: split touching blobs")
    p.add_argument(
        "--classes", action="store_true", help="when writing objects, also write the class map as <stem>_classes.tif"
    )
    p.add_argument(
        "--workers",
        type=_positive_int,
        help="run on a local Dask cluster of this many worker processes (needs the 'distributed' package)",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run on the Dask cluster at this scheduler address (tcp://host:8786); workers must see the files",
    )
    _add_axes(p)
    _add_precision(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_other_commands(sub) -> None:
    """The ``evaluate``, ``info``, ``export`` and ``demo`` commands."""
    e = sub.add_parser("evaluate", help="score predicted masks against true masks")
    e.add_argument("--pred", required=True, type=Path, help="folder of predicted masks")
    e.add_argument("--truth", required=True, type=Path, help="folder of true masks (same stems)")
    e.add_argument(
        "--map",
        nargs="+",
        action="extend",
        default=[],
        metavar="VALUE=CLASS",
        help="relabel truth values, e.g. 255=1; may be repeated",
    )
    e.add_argument(
        "--instances",
        action="store_true",
        help="score objects (instance masks) matched by IoU: AP and F1 at 0.5, 0.75, 0.9 and mean AP",
    )
    e.add_argument("--json", action="store_true", help="print one JSON object")

    i = sub.add_parser("info", help="describe a model file or a built-in model")
    i.add_argument("model", type=Path, help="model file, or a built-in model's name (nuclei)")

    x = sub.add_parser("export", help="write a model as a bioimage.io model package")
    x.add_argument("model", type=Path, help="the model file")
    x.add_argument("--bioimageio", type=Path, required=True, metavar="OUT.zip", help="the package to write")
    x.add_argument(
        "--sample",
        type=Path,
        required=True,
        help="a real image of what the model segments: the package's test input is cut from it",
    )
    x.add_argument("--name", help="the model's name (default: U-Net (napari-unet-cat))")
    x.add_argument("--description", help="one or two sentences on what it segments (default: its classes)")
    x.add_argument(
        "--author", action="append", dest="authors", metavar="NAME", help="an author's name (repeat for several)"
    )
    x.add_argument("--license", default="CC-BY-4.0", help="SPDX license of the weights (default CC-BY-4.0)")
    x.add_argument(
        "--weights",
        nargs="+",
        default=["keras_v3"],
        metavar="FORMAT",
        help="keras_v3 (default), tensorflow_saved_model_bundle, or all",
    )

    d = sub.add_parser("demo", help="make synthetic data, train a small model, segment and score")
    d.add_argument(
        "--out", type=Path, default=Path("unet-cat-demo"), help="folder for everything (default ./unet-cat-demo)"
    )
    d.add_argument("--epochs", type=_positive_int, default=12, help="epochs (default 12)")


def _add_axes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--axes",
        metavar="AXES",
        help="the images' axes in any order, e.g. YX, YXC, CYX, ZYX, TCZYX (C channels, other letters stacks); "
        "overrules what the files say (ImageJ, OME-TIFF, OME-Zarr); default: read from the file or guessed",
    )


def _add_voxel_size(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument(
        "--voxel-size", "--pixel-size", dest="pixel_size", nargs="+", type=_positive_float, metavar="SIZE",
        help=help_text,
    )  # fmt: skip


def _add_precision(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="compute precision (default auto: mixed_float16 on a GPU, float32 on a CPU)",
    )


def _on_off_auto(value: str) -> bool | None:
    return {"on": True, "off": False}.get(value)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        commands = {"train": _train, "predict": _predict, "evaluate": _evaluate, "info": _info, "export": _export}
        return {**commands, "demo": _demo}[args.command](args)
    except UNetCatError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _train(args) -> int:
    from .history import write_history
    from .io import load_training_pairs
    from .loading import load_model
    from .training import Trainer

    _check_train_args(args)
    resume = load_model(args.resume) if args.resume else None
    pretrained = load_model(args.start_from) if args.start_from else None
    known = {c.name: c.value for c in resume.config.classes if c.name} if resume is not None else None
    images, labels, names, class_names, warnings, image_axes = load_training_pairs(
        args.images, args.masks, axes=args.axes, known_classes=known
    )
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    start = resume or pretrained
    ndim = start.config.ndim if start is not None else args.ndim
    own_voxel = _training_voxel_size(args)  # the stacks' own size: given, or their files'
    sources = None  # each image its own source, unless planes of volumes
    if ndim == 2 and any(a is not None and "Z" in a for a in image_axes):
        images, labels, names, image_axes, sources = _stacks_as_planes(
            args, images, labels, names, image_axes, own_voxel, resume
        )
    # Resolved once, so that the network and its learning rate agree.
    preset, preset_note = resolve_preset(args.preset)
    settings = _training_settings(args, ndim, _learning_rate(args, start, preset))
    trainer = Trainer(
        images,
        labels,
        settings=settings,
        preset=preset,
        base_filters=args.base_filters,
        depth=args.depth,
        scale=args.scale,
        target_size=args.target_size,
        long_side=args.long_side,
        value_map=parse_value_map(args.map) or None,
        class_names=class_names,
        names=names,
        model=resume,
        pretrained=pretrained,
        checkpoint=args.out,
        allow_many_classes=args.many_classes,
        axes=image_axes,
        gray=args.gray,
        sources=sources,
        **(own_voxel if resume is None else {}),
    )
    _report_start(trainer, len(images), preset_note if start is None else "", args.start_from)
    model = trainer.run(lambda r: print(r.summary(), flush=True))
    if args.keep != 1.0:
        _keep_share(model, resume, args.keep, str(args.resume))
    model.save(args.out)
    csv_path, plot_path = write_history(args.out, model.config.history)
    print(f"model written to {args.out}; history in {csv_path} and {plot_path}")
    if trainer.stopped:
        print(f"training ended early ({trainer.stopped})")
    return 0


def _check_train_args(args) -> None:
    """The ``train`` arguments that cannot go together, or name a wrong output, before any loading."""
    if args.out.is_dir():
        raise InputError(f"--out {args.out} is a folder; give a model file name such as {args.out / 'model.keras'}")
    if not args.out.parent.exists():
        raise InputError(f"the folder of --out ({args.out.parent}) does not exist")
    if args.resume and args.start_from:
        raise InputError("give --resume (the same classes, trained further) or --start-from (new classes), not both")
    if args.keep != 1.0:
        from .corrections import check_keep

        check_keep(args.keep)
        if not args.resume:
            raise InputError(f"--keep {args.keep:g} keeps a share of the change from a resumed model: give --resume")


def _stacks_as_planes(args, images, labels, names, image_axes, own_voxel: dict, resume):
    """A 2D network's training planes of z-stacks (their XY planes, and their side views
    stretched by each stack's voxel size); prints what was made. Returns ``(images,
    labels, names, axes, sources)`` as :func:`~napari_unet_cat.volume_training.stack_training_planes`."""
    from .volume_training import stack_training_planes

    # The stacks' own voxel sizes (given, or each file's), even when a model is resumed.
    size = own_voxel.get("voxel_size") or (resume.config.trained_voxel_size if resume else None)
    own = None if args.pixel_size else [_file_voxel_size(Path(args.images) / n).get("voxel_size") for n in names]
    *planes, note = stack_training_planes(images, labels, names, image_axes, voxel_size=size, voxel_sizes=own)
    print(note, flush=True)
    return tuple(planes)


def _learning_rate(args, start, preset: str) -> float:
    """The rate given, else a tenth of a started-from model's own (fine-tuning), else the preset's."""
    if args.learning_rate:
        return args.learning_rate
    if start is not None:
        return start.config.training.learning_rate / 10
    return PRESET_LEARNING_RATES[preset]


def _keep_share(model, resume, keep: float, source: str) -> None:
    """``model``'s weights ``keep`` of the way from ``resume``'s, said in its last history row."""
    from .corrections import blend_weights

    blend_weights(model.keras_model, resume.keras_model, keep)
    if model.config.history:
        model.config.history[-1]["kept_share"] = keep
    print(f"kept {keep:g} of the change to the weights of {source}", flush=True)


def _training_settings(args, ndim: int, learning_rate: float) -> TrainingSettings:
    """The training settings the ``train`` arguments ask for."""
    return TrainingSettings(
        epochs=args.epochs,
        batch_size=args.batch_size,
        patch_size=args.patch_size,
        ndim=ndim,
        patch_depth=args.patch_depth,
        learning_rate=learning_rate,
        val_fraction=args.val_fraction,
        label_mode=_label_mode(args),
        steps_per_epoch=args.steps_per_epoch,
        time_budget_s=args.time_budget * 60 if args.time_budget else None,
        anneal=not args.constant_learning_rate,
        augment=not args.no_augment,
        elastic=not args.no_augment,
        class_weights=parse_class_weights(args.class_weight),
        seed=args.seed,
        precision=args.precision,
        xla=_on_off_auto(args.xla),
        data_parallel=_on_off_auto(args.data_parallel),
        forest_guide=_on_off_auto(args.forest_guide),
        border_width=args.border_width,
        w0=args.w0,
        sigma=args.sigma,
        class_balance=args.class_balance,
    )


def _report_start(trainer, n_images: int, preset_note: str, started_from: str | None) -> None:
    """What ``train`` is about to do: the data, the network and the notes of the setup."""
    arch = trainer.config.architecture
    samples = "volumes" if arch.ndim == 3 else "planes"
    print(
        f"training on {n_images} image(s) ({trainer.data.n_train_planes} {samples} for training, "
        f"{trainer.data.n_val_planes} for validation), classes {trainer.config.class_values}, "
        f"{arch.preset} {'3D ' if arch.ndim == 3 else ''}U-Net ({arch.base_filters} base filters, depth {arch.depth}, "
        f"{trainer.keras_model.count_params():,} parameters), {trainer.steps_per_epoch} steps per epoch",
        flush=True,
    )
    notes = [f"network: {preset_note}"] if preset_note else []
    if started_from:
        classes = trainer.config.class_values
        notes.append(f"network: started from {started_from}, a new output layer for classes {classes}")
    notes += [f"note: {n}" for n in (trainer.validation_note, trainer.guide_note, trainer.batch_norm_note) if n]
    for note in notes:
        print(note, flush=True)


def _training_voxel_size(args) -> dict:
    """``{"voxel_size", "voxel_unit"}`` for a new model: given, else the first image's own."""
    from .io import list_images

    if args.pixel_size is not None:
        if len(args.pixel_size) != 3:
            raise InputError(f"--voxel-size takes three sizes, Z Y X (received {len(args.pixel_size)})")
        return {"voxel_size": list(args.pixel_size), "voxel_unit": "um"}
    return next((_file_voxel_size(path) for path in list_images(args.images)[:1]), {})


def _file_voxel_size(path: Path) -> dict:
    """``{"voxel_size": [Z, Y, X], "voxel_unit": ...}`` as an image file states it, or ``{}``."""
    from .io import read_spatial_size

    found = read_spatial_size(path, 3)
    return {} if found is None else {"voxel_size": list(found[0]), "voxel_unit": found[1]}


def _label_mode(args) -> str:
    if args.sparse and args.labels not in (None, "sparse"):
        raise InputError(f"--sparse and --labels {args.labels} disagree: give one of them")
    return "sparse" if args.sparse else (args.labels or "dense")


def _predict(args) -> int:
    from .batch import segment_folder
    from .loading import load_model

    model = load_model(args.model, precision=args.precision, trust_package_code=args.trust_package_code)
    if args.scale is not None and args.scale != "auto":
        if not hasattr(model, "at_scale"):
            raise InputError(f"--scale applies to this plugin's models; {args.model} is a bioimage.io package")
        model = model.at_scale(args.scale)
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(unit="image", desc="segmenting")

    def progress(i: int, n: int, path: Path, status: str) -> None:
        if bar is not None:
            bar.total = n
            bar.set_postfix_str(f"{path.name}: {status}", refresh=False)
            bar.update(1)

    try:
        report = segment_folder(
            model,
            args.input,
            args.output,
            tile_size=args.tile_size,
            probabilities=args.probabilities,
            test_time_augmentation=args.tta,
            overwrite=args.overwrite,
            scheduler=args.scheduler or ("local" if args.workers else None),
            workers=args.workers,
            progress=progress,
            instances=args.instances,
            min_size=args.min_size,
            split=args.split,
            classes=args.classes,
            axes=args.axes,
            auto_scale=args.scale == "auto",
            trust_package_code=args.trust_package_code,
            measure=args.measure,
            pixel_size=args.pixel_size,
            volume=args.volume,
        )
    finally:
        if bar is not None:
            bar.close()
    print(report.summary())
    return 0 if report.ok else 1


def _evaluate(args) -> int:
    from .evaluation import evaluate_folders, evaluate_instance_folders, format_instance_scores, format_scores

    if args.instances:
        if args.map:
            raise InputError("--map relabels classes; it does not apply to --instances (objects are matched by IoU)")
        result = evaluate_instance_folders(args.pred, args.truth)
    else:
        result = evaluate_folders(args.pred, args.truth, parse_value_map(args.map))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_instance_scores(result) if args.instances else format_scores(result))
        if result["missing"]:
            print(f"{len(result['missing'])} truth mask(s) have no prediction", file=sys.stderr)
    return 0


def _info(args) -> int:
    from .builtin import builtin_model_name, builtin_path
    from .loading import load_model

    model = load_model(args.model)
    if not hasattr(model, "config"):  # a bioimage.io package of another tool
        return _info_package(model)
    c = model.config
    arch = c.architecture
    builtin = builtin_model_name(args.model)
    where = f" (built-in, {builtin_path(builtin, verify=False)})" if builtin else ""
    print(f"{args.model}: napari-unet-cat model{where} (made by version {c.package_version or '?'})")
    kind = "3D U-Net of volumes" if arch.ndim == 3 else "U-Net of planes"
    print(
        f"  network: {kind}, {arch.preset}, {arch.base_filters} base filters, depth {arch.depth}, "
        f"{model.keras_model.count_params():,} parameters"
    )
    colour = " (RGB images are read as gray)" if c.gray_input else ""
    patch = "x".join(map(str, c.training.patch_shape))
    size = f"each image resized to a longer side of {c.long_side} pixels" if c.long_side else f"scale {c.scale:g}"
    print(f"  input: {arch.n_channels} channel(s){colour}, {size}, trained on {patch}-pixel patches")
    if c.voxel_size:
        size = " x ".join(f"{v:g}" for v in c.voxel_size)
        pooling = f"; Z halved at {arch.z_pools} of {arch.depth} levels" if arch.z_pools is not None else ""
        print(f"  voxel size (Z, Y, X) of its training images: {size} {c.voxel_unit}{pooling}")
    print(f"  fingerprint: {model.fingerprint()} (recorded in the log of every folder it segments)")
    names = ", ".join(f"{x.value}" + (f" ({x.name})" if x.name else "") for x in c.classes)
    print(f"  classes: {names} ({c.training.label_mode} labels)")
    if c.is_instance_model:
        t = c.training
        areas = f"; training objects of {c.object_areas[1]:g} pixels (median)" if c.object_areas else ""
        print(
            f"  output: objects (seeded watershed); border {t.border_width} px, weight map w0 {t.w0:g}, "
            f"sigma {t.sigma:g}, class balance {t.class_balance:g}{areas}"
        )
        extent = f"; grown to p(background) < {c.object_extent:g}" if c.object_extent else ""
        print(f"  objects kept from {c.min_object_size} pixels, seeds from {c.min_seed_size} pixels{extent}")
    if c.history:
        last = c.history[-1]
        shown = ", ".join(f"{k} {v:.4g}" for k, v in last.items() if k != "epoch")
        print(f"  trained {len(c.history)} epoch(s); last: {shown}")
    for key, text in c.card.items():
        print(f"  {key.replace('_', ' ')}: {text}")
    return 0


def _info_package(model) -> int:
    print(f"{model.path}: bioimage.io model package '{model.name}' (run by bioimageio.core)")
    print(f"  weights: {model.weight_format}; input: {model.ndim}D, {model.n_channels} channel(s)")
    for output_id in model.output_ids:
        print(f"  output {output_id}: {'labels' if model.output_is_labels(output_id) else 'an image of values'}")
    print(f"  {str(model.description.description).strip()}")
    return 0


def _export(args) -> int:
    from .io import read_image
    from .loading import load_model

    model = load_model(args.model)
    sample = read_image(args.sample)
    path = model.export_bioimageio(
        args.bioimageio,
        sample,
        name=args.name,
        description=args.description,
        authors=args.authors,
        license=args.license,
        weight_formats=args.weights,
        sample_name=str(args.sample),
    )
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): bioimage.io model package of {args.model}")
    return 0


def _demo(args) -> int:
    from .demo import run_demo

    started = time.perf_counter()
    result = run_demo(args.out, epochs=args.epochs, log=print)
    print(
        f"demo finished in {time.perf_counter() - started:.0f} s; foreground IoU {result['per_class']['1']['iou']:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
