"""Volumes: each way to 3D objects, trained for the same time on this CPU, scored in 3D.

    python benchmarks/bench_volumes.py --real ../shared/data/nuclei3d/real \\
        --synthetic ../shared/data/nuclei3d/synthetic --budget 3 [--sparse] [--start-from nuclei]
        [--methods 2d-xy 2d-three-axes 3d] [--stardist OUT]

For each set, every method trains for ``--budget`` minutes with the package's defaults
(``train``'s light network on a CPU, instance masks):

- ``2d-xy``: a 2D U-Net trained on the XY planes, answering in the ``stitch`` mode
  (plane objects linked by overlap: the baseline to beat) and the ``xy`` mode (3D
  watershed on the stacked probabilities);
- ``2d-three-axes``: a 2D U-Net trained on the XY, XZ and YZ planes (side views made
  square with the voxel size), answering in the ``three-axes`` mode;
- ``3d``: the 3D U-Net (Z pooled only where it is about as fine as Y and X).

``real/`` holds two volumes: each method trains on one and is scored on the other, both
ways round. ``synthetic/`` trains on ``train/`` and is scored on ``test/``. With
``--sparse`` each is also trained from only 3 painted XY slices per training volume (the
other planes not annotated) and scored on whole volumes. ``--start-from nuclei`` starts the
2D methods from the built-in nuclei model, as napari's Train panel does for a fluorescence
stack (continued on instance masks, at a tenth of its learning rate), and scores that model
as it is, untrained (annotation "none"). StarDist 3D runs in its own
environment (``bench_stardist3d.py``, same budget); ``--stardist OUT`` scores the
objects it wrote. Figures: AP@0.5 and mean AP (IoU 0.5 to 0.95, matched in 3D), training
patches seen, prediction seconds per megavoxel and the memory the prediction added; the
machine's bare-fit images/s beside them. One JSON line per run goes to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from machine import append_record, bare_fit_images_per_second, machine_info

#: The voxel size of the real volumes (their README): Z, Y, X in um.
REAL_VOXEL = (0.28, 0.127, 0.127)
METHODS = ("2d-xy", "2d-three-axes", "3d")
#: The answers scored for each method's model.
ANSWERS = {"2d-xy": ("stitch", "xy"), "2d-three-axes": ("three-axes",), "3d": ("3d",)}


def read_set(folder: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    import tifffile

    return [
        (p.stem, tifffile.imread(p), tifffile.imread(folder / "masks" / p.name).astype(np.int32))
        for p in sorted((folder / "images").glob("*.tif"))
    ]


def painted_slices(mask: np.ndarray, n: int = 3) -> np.ndarray:
    """Only ``n`` XY slices of ``mask`` kept, evenly spread over the middle of the stack."""
    out = np.zeros_like(mask)
    for z in np.linspace(0, mask.shape[0], n + 2)[1:-1].round().astype(int):
        out[z] = mask[z]
    return out


def train_method(method: str, volumes, masks, voxel, budget_s: float, start_from: str | None = None):
    """``(model, patches seen, seconds)`` of one method trained for ``budget_s``; the 2D
    methods from ``start_from``'s network when given (see :func:`starting_point`)."""
    from napari_unet_cat.config import TrainingSettings
    from napari_unet_cat.training import Trainer
    from napari_unet_cat.volume_modes import z_stretch
    from napari_unet_cat.volume_training import planes_of_volumes

    settings = TrainingSettings(
        epochs=10_000,
        label_mode="instances",
        learning_rate=1e-3,
        time_budget_s=budget_s,
        ndim=3 if method == "3d" else 2,
    )
    names = [f"v{i}" for i in range(len(volumes))]
    axes = ["ZYX"] * len(volumes)
    images, labels, sources = list(volumes), list(masks), None
    if method != "3d":
        views = ("xy",) if method == "2d-xy" else ("xy", "xz", "yz")
        images, labels, names, axes, sources = planes_of_volumes(
            images, labels, names, axes, stretch=z_stretch(voxel), views=views
        )
    start = starting_point(start_from, settings, labels) if start_from and method != "3d" else {}
    trainer = Trainer(
        images, labels, settings=settings, preset="light", names=names, axes=axes, voxel_size=voxel, sources=sources,
        **start,
    )  # fmt: skip
    started = time.perf_counter()
    patches = sum(report.patches for report in trainer.epochs())
    return trainer.model, patches, time.perf_counter() - started


def starting_point(name: str, settings, labels) -> dict:
    """The ``Trainer`` argument that starts from model ``name`` as napari's Train panel
    does for a fluorescence image: continued when the annotations are of its kind, else a
    new output layer on its network; at a tenth of its learning rate."""
    from napari_unet_cat import load_model
    from napari_unet_cat.transfer import can_continue

    model = load_model(name)
    settings.learning_rate = model.config.training.learning_rate / 10
    return {"model": model} if can_continue(model.config, settings.label_mode, labels) else {"pretrained": model}


def rss_mb() -> float:
    """This process's resident memory now (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class MemoryWatch:
    """The most resident memory above its start that a block of code used, sampled
    every 10 ms on a thread (what the prediction itself holds, whatever came before)."""

    def __enter__(self):
        import threading

        self.start = self.peak = rss_mb()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._done.wait(0.01):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())

    @property
    def used_mb(self) -> float:
        return self.peak - self.start


def answer(model, mode: str, volume: np.ndarray, voxel) -> np.ndarray:
    from napari_unet_cat.volume_modes import segment_volume

    if mode == "3d":
        return model.predict(volume, axes="ZYX", output="instances")
    return segment_volume(model, volume, mode=mode, voxel_size=voxel)


def score(predictions: list[np.ndarray], truths: list[np.ndarray]) -> dict:
    from napari_unet_cat.evaluation import evaluate_instances

    found = evaluate_instances(predictions, truths)
    return {"ap50": round(found["ap"]["0.5"], 4), "mean_ap": round(found["mean_ap"], 4)}


def run_split(name: str, train, test, voxel, args, sparse: bool) -> list[dict]:
    """Every method trained on ``train`` and scored on ``test``: one record per answer."""
    records = []
    masks = [painted_slices(m) if sparse else m for _, _, m in train]
    for method in args.methods:
        volumes = [v for _, v, _ in train]
        model, patches, seconds = train_method(method, volumes, masks, voxel, args.budget * 60, args.start_from)
        for mode in ANSWERS[method]:
            record = {
                "set": name,
                "annotation": "3 slices per volume" if sparse else "full",
                "method": method,
                "started_from": (args.start_from if method != "3d" else None) or "new network",
                "answer": mode,
                **scored_answers(model, mode, test, voxel),
                "patches": patches,
                "train_s": round(seconds, 1),
            }
            print(json.dumps(record), flush=True)
            records.append(record)
    return records


def scored_answers(model, mode: str, test, voxel) -> dict:
    """``model``'s ``mode`` answers on the ``test`` volumes: scores, prediction seconds
    per megavoxel, the memory prediction added, and one label per 3D object."""
    predictions, predict_s, peak = [], 0.0, 0.0
    for _, volume, _ in test:
        t0 = time.perf_counter()
        with MemoryWatch() as watch:
            predictions.append(answer(model, mode, volume, voxel))
        predict_s += time.perf_counter() - t0
        peak = max(peak, watch.used_mb)
    megavoxels = sum(v.size for _, v, _ in test) / 1e6
    return {
        **score(predictions, [m for _, _, m in test]),
        "predict_s_per_mvox": round(predict_s / megavoxels, 2),
        "predict_memory_mb": round(peak),
        "objects_connected_3d": all(_one_label_per_object(p) for p in predictions),
    }


def untrained_run(name: str, test, voxel, args) -> list[dict]:
    """The ``--start-from`` model as it is (no training), in each 2D method's answers."""
    from napari_unet_cat import load_model

    model = load_model(args.start_from)
    records = []
    for mode in dict.fromkeys(m for method in args.methods if method != "3d" for m in ANSWERS[method]):
        record = {"set": name, "annotation": "none", "method": "2d", "started_from": args.start_from, "answer": mode}
        record.update({**scored_answers(model, mode, test, voxel), "patches": 0, "train_s": 0.0})
        print(json.dumps(record), flush=True)
        records.append(record)
    return records


def _one_label_per_object(labels: np.ndarray) -> bool:
    """Whether every label is one 3D connected object (no label reused plane by plane)."""
    from scipy.ndimage import find_objects, label

    for value, box in enumerate(find_objects(labels), start=1):
        if box is not None and label(labels[box] == value, structure=np.ones((3, 3, 3)))[1] > 1:
            return False
    return True


def score_stardist(folder: Path, sets: dict) -> list[dict]:
    """Scores of the objects bench_stardist3d.py wrote (``<set>/<stem>.tif``)."""
    import tifffile

    records = []
    for name, test in sets.items():
        info = folder / name / "stardist.json"
        if not info.exists():
            continue
        run = json.loads(info.read_text())
        predictions = [tifffile.imread(folder / name / f"{stem}.tif") for stem, _, _ in test]
        megavoxels = sum(v.size for _, v, _ in test) / 1e6
        record = {
            "set": name,
            "annotation": "full",
            "method": "StarDist 3D",
            "answer": "star-convex polyhedra",
            **score(predictions, [m for _, _, m in test]),
            "patches": run["patches_seen"],
            "train_s": round(run["train_seconds"], 1),
            "predict_s_per_mvox": round(run["predict_seconds"] / megavoxels, 2),
        }
        print(json.dumps(record), flush=True)
        records.append(record)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", type=Path, help="nuclei3d/real (two volumes)")
    parser.add_argument("--synthetic", type=Path, help="nuclei3d/synthetic (train/ and test/)")
    parser.add_argument("--budget", type=float, default=3.0, help="minutes of training per method (default 3)")
    parser.add_argument(
        "--methods", nargs="*", choices=METHODS, default=list(METHODS), help="none: only score --stardist"
    )
    parser.add_argument("--sparse", action="store_true", help="also train from 3 painted slices per volume")
    parser.add_argument("--stardist", type=Path, help="folder bench_stardist3d.py wrote (scored, not run)")
    parser.add_argument(
        "--start-from", help="the 2D methods start from this model (e.g. nuclei, as napari does for fluorescence)"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "volumes.json")
    args = parser.parse_args()

    record = {"benchmark": "volumes", "budget_min": args.budget, **machine_info()}
    record["bare_fit_images_per_s"] = round(bare_fit_images_per_second(), 2)
    print(json.dumps(record), flush=True)
    runs, stardist_sets = [], {}
    if args.real:
        real = read_set(args.real)
        for k in range(len(real)):
            train, test = [real[k]], [v for i, v in enumerate(real) if i != k]
            stardist_sets[f"real-{test[0][0]}"] = test
            if args.start_from:
                runs += untrained_run(f"real-{test[0][0]}", test, REAL_VOXEL, args)
            for sparse in (False, True) if args.sparse and args.methods else (False,):
                runs += run_split(f"real-{test[0][0]}", train, test, REAL_VOXEL, args, sparse)
    if args.synthetic:
        train, test = read_set(args.synthetic / "train"), read_set(args.synthetic / "test")
        stardist_sets["synthetic"] = test
        if args.start_from:
            runs += untrained_run("synthetic", test, (1.0, 1.0, 1.0), args)
        for sparse in (False, True) if args.sparse and args.methods else (False,):
            runs += run_split("synthetic", train, test, (1.0, 1.0, 1.0), args, sparse)
    if args.stardist:
        runs += score_stardist(args.stardist, stardist_sets)
    append_record(args.out, {**record, "runs": runs})


if __name__ == "__main__":
    main()
