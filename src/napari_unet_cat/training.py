"""Training: a loop over epochs that reports, can be stopped, and keeps the best model."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._backend import keras
from .arrays import resize_plane, scaled_shape, smallest_int_dtype, to_canonical
from .batches import PatchBatches
from .config import ModelConfig, Normalization, TrainingSettings
from .dataset import PatchSampler, prepare_planes, validation_patches
from .errors import InputError, TrainingStopped
from .first_guess import ForestGuide, wants_forest_guide
from .losses import ClassIoU, MaskedCrossEntropy
from .resources import distribution_scope, resolve_precision, resolve_preset
from .segmenter import UNetModel
from .training_setup import (
    NewModel,
    canonical_inputs,
    choose_validation,
    continued_start,
    finish_config,
    new_config,
    new_start,
    planned_depth,
    pretrained_start,
    volume_settings,
)
from .transfer import copy_weights, head_sources, network_guess, transferred_config
from .unet import build_network

StepCallback = Callable[[int, int, float], None]
#: Fewest steps in an automatic epoch: a few strokes on one image make a "pass" of one
#: or two patches, and an epoch that short is all overhead (and a jumpy curve).
MIN_STEPS_PER_EPOCH = 8
#: Share of the starting learning rate left at the end of an annealed time budget.
ANNEAL_FLOOR = 0.05


@dataclass
class EpochReport:
    """What one epoch did. IoU maps are keyed by class value."""

    epoch: int
    epochs: int
    loss: float
    iou: dict[int, float]
    val_loss: float | None = None
    val_iou: dict[int, float] | None = None
    seconds: float = 0.0
    epoch_seconds: float = 0.0
    images_per_second: float = 0.0
    improved: bool = False
    stopped: str = ""
    steps: int = 0
    learning_rate: float = 0.0
    #: Instance models: the object score AP@0.5 on the validation patches.
    val_ap: float | None = None
    #: Training patches seen in this epoch (steps run times the batch).
    patches: int = 0

    @property
    def mean_iou(self) -> float:
        return float(np.mean(list(self.iou.values())))

    @property
    def val_mean_iou(self) -> float | None:
        return None if self.val_iou is None else float(np.mean(list(self.val_iou.values())))

    def as_row(self) -> dict[str, float]:
        """A flat record for the history table (CSV/JSON)."""
        row: dict[str, float] = {"epoch": self.epoch, "loss": self.loss, "mean_iou": self.mean_iou}
        row.update({f"iou_{v}": x for v, x in self.iou.items()})
        if self.val_loss is not None and self.val_iou is not None:
            row["val_loss"] = self.val_loss
            row["val_mean_iou"] = self.val_mean_iou
            row.update({f"val_iou_{v}": x for v, x in self.val_iou.items()})
        if self.val_ap is not None:
            row["val_ap_50"] = self.val_ap
        row.update(
            seconds=self.seconds,
            images_per_second=self.images_per_second,
            learning_rate=self.learning_rate,
            patches=self.patches,
        )
        return row

    def summary(self) -> str:
        parts = [f"epoch {self.epoch}/{self.epochs}", f"loss {self.loss:.4f}", f"IoU {self.mean_iou:.3f}"]
        if self.val_loss is not None:
            parts += [f"val_loss {self.val_loss:.4f}", f"val IoU {self.val_mean_iou:.3f}"]
        if self.val_ap is not None:
            parts.append(f"val AP@0.5 {self.val_ap:.3f}")
        parts += [f"{self.epoch_seconds:.1f} s", f"{self.images_per_second:.1f} img/s"]
        if self.improved:
            parts.append("best")
        if self.stopped:
            parts.append(f"stopped: {self.stopped}")
        return ", ".join(parts)


class _Watch(keras.callbacks.Callback):
    """Stops ``fit`` between steps when asked or out of time, and reports steps."""

    #: The learning rate is written when it has moved by this fraction since last written.
    RATE_STEP = 0.005

    def __init__(self, trainer: Trainer):
        super().__init__()
        self.trainer = trainer
        self.steps_done = 0
        self._rate_written: float | None = None

    def on_train_batch_begin(self, batch, logs=None):
        rate = self.trainer._learning_rate_now()
        last = self._rate_written
        if rate is None or (last is not None and abs(rate - last) <= self.RATE_STEP * last):
            return
        # ``self.model`` matters on JAX: Keras's JAX trainer holds the optimizer's state
        # apart from its variables between steps, and reading ``self.model`` writes that
        # state back and has the next step read the variables again, the new rate
        # included. Writing only when the rate has moved keeps those round trips few
        # (about 600 over a whole cosine) on any backend.
        self.model.optimizer.learning_rate.assign(rate)
        self._rate_written = rate

    def on_epoch_begin(self, epoch, logs=None):
        self.steps_done = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps_done = batch + 1
        self.trainer._steps_run += 1
        t = self.trainer
        if t.on_step is not None:
            t.on_step(batch + 1, t.steps_per_epoch, float((logs or {}).get("loss", math.nan)))
        reason = t._stop_reason()
        if reason:
            t._stopped = reason
            self.model.stop_training = True


@dataclass
class _Data:
    sampler: PatchSampler
    val_x: np.ndarray | None
    val_y: np.ndarray | None
    n_train_planes: int
    n_val_planes: int
    planes: list = field(default_factory=list)
    #: Object ids of the validation patches (instance masks only).
    val_objects: np.ndarray | None = None


class Trainer:
    """Train a U-Net on (image, labels) pairs, one epoch at a time.

    Iterate :meth:`epochs` for an :class:`EpochReport` after each epoch (the napari widget
    does this on a worker thread), or call :meth:`run`. :meth:`stop` may be called from
    any thread: training ends after the current step and :attr:`model` holds the best
    weights seen so far.

    Args:
        images: Images (array-likes); see :func:`~napari_unet_cat.arrays.infer_layout`.
        labels: Label images of the same spatial shape (stack axes included).
        settings: Training settings; tutorial defaults if omitted.
        preset: Network size for a new model: ``classic``, ``light`` or ``auto``
            (classic on a GPU, light on a CPU; see :attr:`preset_note`).
        base_filters: Override the preset's width.
        depth: Override the preset's depth.
        kernel_l2: L2 penalty on kernels.
        normalization: Percentile normalization settings.
        scale: Train at this fraction of the full resolution (masks are still returned
            at full size by prediction).
        target_size: Instead of ``scale``: scale so the median longer image side becomes
            this many pixels.
        long_side: Instead of ``scale``: resize each image so its longer side is this
            many pixels, in training and in prediction (photos, whose subject fills
            about the same share of the picture whatever the camera).
        value_map: Raw label value -> class value, or ``"ignore"``.
        class_names: Optional names of class values.
        names: Names of the images, for messages (default ``image 1``, ...).
        model: Continue training this model (its classes, normalization and scale are
            kept; the settings' ``label_mode`` must match how it was trained).
        checkpoint: Save the model here (atomically) each time it improves.
        on_step: Called with ``(step, steps_per_epoch, running_loss)`` after each step.
        allow_many_classes: In the dense and sparse modes, train even when the masks
            look like object ids (more than 16 values, each one connected blob), which
            otherwise stops with a hint to use ``label_mode="instances"``.
        stop_event: An event that :meth:`stop` sets; pass one to stop a trainer that is
            still being built (preparing its data), from another thread.
        axes: The images' axes in any order (``CYX``, ``ZYX``, ``TCZYX``...): one string
            for all, or one per image (None: guessed). Labels have the image's axes
            without the channel axis, in the order stacks, Y, X.
        channel_names: A name for each input channel, recorded in the model (napari
            passes the channel layers' names).
        gray: Train a one-channel model that reads colour (RGB, RGBA) images as the
            mean of their colour channels, so that grayscale and colour images both work
            with it (a continued model keeps its own choice).
        sources: Which source each image came from, when several are parts of one (the
            planes of a volume, from :func:`~napari_unet_cat.volume_training.planes_of_volumes`):
            validation holds out whole sources (or blocks of the annotation of a single
            one), never a plane beside one trained on.

    A ``model`` to continue is never changed: training works on a copy of its network
    and settings, so a model loaded from a file keeps the file's weights.
    """

    def __init__(
        self,
        images: Sequence,
        labels: Sequence,
        *,
        settings: TrainingSettings | None = None,
        preset: str = "auto",
        base_filters: int | None = None,
        depth: int | None = None,
        kernel_l2: float = 0.0,
        normalization: Normalization | None = None,
        scale: float = 1.0,
        target_size: int | None = None,
        value_map: dict[int, int | str] | None = None,
        class_names: dict[int, str] | None = None,
        names: Sequence[str] | None = None,
        model: UNetModel | None = None,
        checkpoint: str | Path | None = None,
        on_step: StepCallback | None = None,
        allow_many_classes: bool = False,
        stop_event: threading.Event | None = None,
        axes: str | Sequence[str | None] | None = None,
        channel_names: Sequence[str] | None = None,
        gray: bool = False,
        voxel_size: Sequence[float] | None = None,
        voxel_unit: str = "",
        long_side: int | None = None,
        pretrained: UNetModel | None = None,
        sources: Sequence[int] | None = None,
    ):
        self.settings = s = settings or TrainingSettings()
        s.validate()
        images, self.names, image_axes = canonical_inputs(images, labels, names, axes)
        self.on_step = on_step
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self._stop = stop_event if stop_event is not None else threading.Event()
        self._stopped = ""
        self._started = 0.0
        recipe = NewModel(
            preset, base_filters, depth, kernel_l2, normalization, scale, target_size, class_names, channel_names, gray,
            voxel_size, voxel_unit, long_side,
        )  # fmt: skip
        #: The trained network this new model starts from (None: from nothing, or continued).
        self.pretrained = pretrained if model is None else None
        if model is not None:
            start = continued_start(model, s, value_map)
        elif self.pretrained is not None:
            start = pretrained_start(labels, self.names, s, self.pretrained.config, value_map, allow_many_classes)
        else:
            start = new_start(labels, self.names, s, recipe, value_map, allow_many_classes=allow_many_classes)
        volume_settings(s, *planned_depth(recipe, model))
        planes, n_channels = prepare_planes(
            images,
            labels,
            names=self.names,
            class_values=start.class_values,
            mode=s.label_mode,
            value_map=start.value_map,
            normalization=start.normalization,
            scale=start.scale,
            patch_size=s.patch_shape,
            n_channels=start.n_channels,
            border_width=s.border_width,
            w0=s.w0,
            sigma=s.sigma,
            should_stop=self._stop.is_set,
            image_axes=image_axes,
            class_balance_power=s.class_balance,
            class_weights=start.class_weights,
            gray=start.gray,
            ndim=s.ndim,
            long_side=start.long_side,
            sources=sources,
        )
        if start.config is not None:
            config = start.config
        elif self.pretrained is not None:
            config = transferred_config(self.pretrained.config, start.class_values, s, class_names)
        else:
            config = new_config(start, recipe, n_channels, s.label_mode, s.ndim)
        #: How ``auto`` chose the network ("" when the preset was named, or continued).
        self.preset_note = "" if model is not None else resolve_preset(preset)[1]
        self.precision = resolve_precision(s.precision)
        self._scope = distribution_scope(s.data_parallel)
        #: For each class, the pretrained network's classes it starts from (see
        #: :func:`~napari_unet_cat.transfer.head_sources`): its output layer and its guide.
        self._head_sources = (
            head_sources(self.pretrained.config.class_values, config.class_values) if self.pretrained else []
        )
        self.keras_model = self._network(config, model or self.pretrained)
        self._from_trained = model is not None or self.pretrained is not None
        finish_config(config, s, planes, continued=model is not None)
        self.config = config
        self.history = start.history
        self._prepare_data(planes, start.value_map)
        self.epochs_done = len(self.history)
        self._best_score: float | None = None
        self._best_weights = None
        self._view: UNetModel | None = None
        self._steps_run = 0

    def _network(self, config: ModelConfig, model: UNetModel | None):
        """A new network for ``config``, or a copy of ``model``'s (its output layer made
        for this run's classes when ``model`` is the pretrained start), its variables
        made under this run's distribution and precision."""
        if model is None:
            with self._scope():
                return build_network(config, self.precision, seed=self.settings.seed)
        if model is self.pretrained:
            with self._scope():
                network = build_network(config, self.precision)
                copy_weights(model.keras_model, network, self._head_sources, model.config.class_prior_weights)
            return network
        weights = model.keras_model.get_weights()  # read outside any other strategy
        with self._scope():
            network = build_network(config, self.precision)
            network.set_weights(weights)
        return network

    def _prepare_data(self, planes, value_map: dict) -> None:
        """Hold out validation, guide sparse strokes by the forest, and set up the patches."""
        s = self.settings
        class_values = self.config.class_values
        train_planes, val_planes, note = choose_validation(planes, s, class_values)
        #: Why the held-out annotation was not used to choose weights ("" when it was).
        self.validation_note = note
        #: Keep the last epoch's weights, not the lowest loss (no validation to judge by).
        self._keep_last = not val_planes
        self._first_guess = None
        #: The forest's probabilities of the training planes it guided: the preview's first
        #: guess of one of them is then not computed twice.
        self._forest_seen: list[tuple[np.ndarray, np.ndarray]] = []
        #: Pixels the forest guide labelled (0 when it was not used).
        self.guided_pixels = 0
        #: What the forest guide did, for the log and the panel ("" when off).
        self.guide_note = ""
        if s.ndim == 2 and wants_forest_guide(train_planes, s, value_map):
            # Strokes started from a trained network are guided by its own confident
            # answers (which know where objects end); others by a forest's.
            guess = source = None
            if self.pretrained is not None:
                guess, source = network_guess(self.pretrained, self._head_sources), "the starting model"
            guide = ForestGuide(
                train_planes,
                val_planes,
                len(class_values),
                seed=s.seed,
                confidence=s.guide_confidence,
                weight=s.guide_weight,
                guess=guess,
                source=source,
            )
            train_planes = guide.planes
            self._first_guess = guide.forest
            self._forest_seen = guide.guessed if guide.forest is not None else []
            self.guided_pixels, self.guide_note = guide.guided_pixels, guide.note(s.guide_weight)
        sampler = PatchSampler(train_planes, s.patch_shape, augment=s.augment, elastic=s.elastic)
        val_x = val_y = val_objects = None
        if val_planes:
            val_x, val_y, val_objects = validation_patches(
                val_planes, s.patch_shape, max_patches=max(64, 2 * s.batch_size), seed=s.seed
            )
        self.data = _Data(sampler, val_x, val_y, len(train_planes), len(val_planes), planes, val_objects)
        #: Whether batch normalization stays as the starting network had it (see
        #: ``TrainingSettings.keep_batch_norm``).
        keep = s.keep_batch_norm if s.keep_batch_norm is not None else s.label_mode == "sparse"
        self.batch_norm_kept = bool(keep) and self._from_trained
        #: Said to the user when it is kept ("" otherwise).
        self.batch_norm_note = "batch normalization kept as the starting network had it" if self.batch_norm_kept else ""
        patches = sampler.patches_per_epoch()
        self.steps_per_epoch = s.steps_per_epoch or max(MIN_STEPS_PER_EPOCH, math.ceil(patches / s.batch_size))

    # -- control ---------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask training to end after the current step (thread-safe)."""
        self._stop.set()

    @property
    def stopped(self) -> str:
        """Why training ended early (``"stopped"``, ``"time budget"``), or ``""``."""
        return self._stopped

    def _stop_reason(self) -> str:
        if self._stop.is_set():
            return "stopped"
        budget = self.settings.time_budget_s
        if budget is not None and time.perf_counter() - self._started > budget:
            return "time budget"
        return ""

    def _learning_rate_now(self) -> float | None:
        """The annealed learning rate for the time spent (or the steps run) so far of
        this run, or None when constant."""
        s = self.settings
        if not s.anneal:
            return None
        if s.time_budget_s:
            done = min(1.0, (time.perf_counter() - self._started) / s.time_budget_s)
        else:
            done = min(1.0, self._steps_run / max(1, s.epochs * self.steps_per_epoch))
        floor = ANNEAL_FLOOR
        return s.learning_rate * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * done)))

    # -- the loop --------------------------------------------------------------------------
    def _compile(self) -> None:
        train_batch_norm(self.keras_model, not self.batch_norm_kept)
        values = self.config.class_values
        weights = self.settings.class_weights
        class_weights = None if not weights else [float(weights.get(v, 1.0)) for v in values]
        xla = self.settings.xla
        with self._scope():
            self.keras_model.compile(
                optimizer=keras.optimizers.Adam(self.settings.learning_rate),
                loss=MaskedCrossEntropy(class_weights),
                metrics=[ClassIoU(i, name=f"iou_{v}") for i, v in enumerate(values)],
                jit_compile="auto" if xla is None else bool(xla),
            )

    def epochs(self) -> Iterator[EpochReport]:
        """Train, yielding a report after each epoch; ends when done or stopped."""
        s = self.settings
        self._compile()
        dataset = PatchBatches(self.data.sampler, s.batch_size, self.steps_per_epoch, s.seed, threads=s.input_threads)
        watch = _Watch(self)
        first = self.epochs_done
        last = first + s.epochs
        self._started = time.perf_counter()
        self._steps_run = 0
        try:
            for epoch in range(first, last):
                if self._stop_reason():
                    self._stopped = self._stopped or self._stop_reason()
                    break
                t0 = time.perf_counter()
                dataset.epoch = epoch
                logs = self._fit_epoch(dataset, epoch, watch)
                if not logs:  # stopped before the first step of this epoch
                    break
                report = self._epoch_report(epoch, last, logs, steps_done=watch.steps_done, started=t0)
                if not self._stopped or self._best_weights is None:
                    report.improved = self._consider(report)
                self.history.append(report.as_row())
                self.epochs_done = epoch + 1
                yield report
                if self._stopped:
                    break
        finally:
            dataset.close()
            train_batch_norm(self.keras_model, True)  # a later run decides anew
        if self._best_weights is not None:
            self.keras_model.set_weights(self._best_weights)
        self.config.history = self.history

    def _fit_epoch(self, dataset, epoch: int, watch) -> dict:
        """One epoch of ``keras.Model.fit``; its last logs (empty if stopped before a step)."""
        with self._scope():
            fit = self.keras_model.fit(
                dataset,
                epochs=epoch + 1,
                initial_epoch=epoch,
                steps_per_epoch=self.steps_per_epoch,
                callbacks=[watch],
                # The steps are random draws already; Keras's shuffle would reorder
                # them with Python's global random state.
                shuffle=False,
                verbose=0,
            )
        return {k: v[-1] for k, v in fit.history.items() if v}

    def _epoch_report(self, epoch: int, last: int, logs: dict, *, steps_done: int, started: float) -> EpochReport:
        """The report of the epoch that began at ``started``: its training logs, its
        validation scores (unless stopped) and its speed over the steps actually run."""
        values = self.config.class_values
        batch = self.settings.batch_size
        train_seconds = time.perf_counter() - started
        report = EpochReport(
            epoch=epoch + 1,
            epochs=last,
            loss=float(logs["loss"]),
            iou={v: float(logs[f"iou_{v}"]) for v in values},
            steps=self.steps_per_epoch,
            learning_rate=float(keras.ops.convert_to_numpy(self.keras_model.optimizer.learning_rate)),
        )
        if self.data.val_x is not None and not self._stopped:
            with self._scope():
                scores = self.keras_model.evaluate(
                    self.data.val_x, self.data.val_y, batch_size=batch, verbose=0, return_dict=True
                )
            report.val_loss = float(scores["loss"])
            report.val_iou = {v: float(scores[f"iou_{v}"]) for v in values}
            if self.data.val_objects is not None:
                report.val_ap = self._validation_ap()
        report.epoch_seconds = time.perf_counter() - started
        report.seconds = time.perf_counter() - self._started
        # Steps actually run: an epoch cut short by Stop or the budget ran fewer.
        report.images_per_second = steps_done * batch / max(train_seconds, 1e-9)
        report.patches = steps_done * batch
        report.stopped = self._stopped
        return report

    def _consider(self, report: EpochReport) -> bool:
        """Keep the weights if this epoch is the best so far (lower validation loss);
        without validation, every epoch's weights replace the last (the learning rate
        anneals, so the last are the settled ones)."""
        monitor = self.settings.monitor
        if self._keep_last:
            score = -float(report.epoch)
        elif monitor == "val_loss" and report.val_loss is not None:
            score = report.val_loss
        elif monitor == "val_mean_iou" and report.val_iou is not None:
            score = -(report.val_mean_iou or 0.0)
        else:
            score = report.loss
        if not math.isfinite(score):
            return False
        if self._best_score is not None and score >= self._best_score:
            return False
        self._best_score = score
        self._best_weights = [w.copy() for w in self.keras_model.get_weights()]
        if self.checkpoint is not None:
            self.config.history = [*self.history, report.as_row()]
            UNetModel(self.keras_model, self.config).save(self.checkpoint)
        return True

    def first_guess(self, image, axes: str | None = None) -> np.ndarray:
        """A fast guess of one plane's labels before the network has learnt anything: a
        random forest on filter features, trained on this trainer's annotated pixels
        (:class:`~napari_unet_cat.first_guess.FirstGuess`), in a second or two. Labels as
        the model will give them: class values, or objects for instance masks. A model
        started from a trained network guesses with that network instead (see
        :attr:`first_guess_kind`)."""
        from .arrays import apply_normalization, infer_layout, percentile_range, read_window
        from .first_guess import FirstGuess
        from .instances import ObjectMaker

        if self.pretrained is not None:
            return self._predictor().predict(image, axes=axes)

        if self._first_guess is None:
            self._first_guess = FirstGuess(self.data.planes, len(self.config.class_values), seed=self.settings.seed)
        image, axes = to_canonical(image, axes)
        layout = infer_layout(
            np.shape(image), n_channels=self.config.architecture.n_channels, axes=axes, gray=self.config.gray_input
        )
        if layout.plane_shape:
            raise InputError(f"a first guess is made for one plane; received shape {np.shape(image)}")
        plane = read_window(image, layout, (), np.arange(layout.spatial[0]), np.arange(layout.spatial[1]))
        plane = apply_normalization(plane, *percentile_range(plane, self.config.normalization))
        scale = self.config.scale_for(layout.spatial)
        if scale != 1.0:
            plane = resize_plane(plane, scaled_shape(layout.spatial, scale))
        probabilities = next(
            (
                seen[: plane.shape[0], : plane.shape[1]]
                for image, seen in self._forest_seen
                if _same_plane(image, plane)
            ),
            None,
        )
        if probabilities is None:
            probabilities = self._first_guess.probabilities(plane)
        if scale != 1.0:
            probabilities = resize_plane(probabilities, layout.spatial)
        if self.config.is_instance_model:
            return ObjectMaker("watershed", self.config.class_values).label_plane(probabilities)
        values = np.asarray(self.config.class_values)
        return values[np.argmax(probabilities, axis=-1)].astype(smallest_int_dtype(int(values.max())))

    def _validation_ap(self) -> float:
        """AP@0.5 of the objects predicted on the validation patches (annotated pixels only)."""
        from .evaluation import evaluate_instances
        from .instances import ObjectMaker

        view = self._predictor()
        maker = ObjectMaker("watershed", self.config.class_values)
        annotated = self.data.val_y[..., 0] >= 0
        preds = []
        for start in range(0, len(self.data.val_x), self.settings.batch_size):
            batch = self.data.val_x[start : start + self.settings.batch_size]
            for probs, known in zip(view.tile_probabilities(batch), annotated[start:]):
                preds.append(np.where(known, maker.label_plane(probs), 0))
        return float(evaluate_instances(preds, list(self.data.val_objects))["ap"]["0.5"])

    def run(self, on_epoch: Callable[[EpochReport], None] | None = None) -> UNetModel:
        """Train to the end (or until stopped) and return the best model."""
        for report in self.epochs():
            if on_epoch is not None:
                on_epoch(report)
        return self.model

    @property
    def model(self) -> UNetModel:
        """The model being trained (after training: with the best weights seen).

        One object for the whole run, so its prediction network (which shares the
        weights) is built once, not at every preview.
        """
        if self.epochs_done == 0 and self._best_weights is None:
            raise TrainingStopped("training stopped before the first epoch finished: no model to keep")
        return self._predictor()

    @property
    def first_guess_kind(self) -> str:
        """What :meth:`first_guess` shows: the random forest, or the network started from."""
        if self.pretrained is None:
            return "first guess (random forest)"
        return "first guess (the starting model, before training)"

    def _predictor(self) -> UNetModel:
        if self._view is None or self._view.keras_model is not self.keras_model:
            self._view = UNetModel(self.keras_model, self.config)
        return self._view


def train_batch_norm(network, trainable: bool) -> None:
    """Let ``network``'s batch normalization layers train (or run as in prediction)."""
    for layer in network.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = trainable


def _same_plane(padded: np.ndarray, plane: np.ndarray) -> bool:
    """Whether ``plane`` is the top-left of ``padded`` (a training plane, maybe padded)."""
    h, w = plane.shape[:2]
    return padded.shape[0] >= h and padded.shape[1] >= w and np.array_equal(padded[:h, :w], plane)


def train(
    images: Sequence,
    labels: Sequence,
    *,
    on_epoch: Callable[[EpochReport], None] | None = None,
    **kwargs,
) -> UNetModel:
    """Train a U-Net and return the best model; keyword arguments as for :class:`Trainer`.

    Settings may be passed as a ``settings=TrainingSettings(...)`` or as its fields
    (``epochs=10, label_mode="sparse"``...).
    """
    fields = set(TrainingSettings.__dataclass_fields__)
    given = {k: kwargs.pop(k) for k in list(kwargs) if k in fields}
    if given:
        if "settings" in kwargs:
            raise InputError("pass either settings=... or individual training settings, not both")
        kwargs["settings"] = TrainingSettings(**given)
    return Trainer(images, labels, **kwargs).run(on_epoch)
