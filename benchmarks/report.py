"""Print the Markdown tables of docs/benchmarks.md from the benchmarks' JSON results.

Usage: python benchmarks/report.py benchmarks/results/accuracy.json benchmarks/results/speed.json ...

JSON-lines results (strokes, train_speed, presets) print their latest run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def accuracy_tables(data: dict) -> str:
    rows = data["results"]
    out = [f"`{data['command']}` ({data['date']}, {data['machine']}, Keras {data['keras']} on {data['backend']})", ""]
    out += [
        "| method | training | epochs (best) | foreground IoU | Dice | pixel accuracy | IoU with TTA "
        "| predicting test/ (with TTA) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        if r.get("part") not in (None, "seeds", "classic") and r["method"] != "otsu":
            continue
        training = f"{r['train_seconds'] / 60:.1f} min" if "train_seconds" in r else "none"
        epochs = f"{r['epochs']} ({r['best_epoch']})" if "epochs" in r else ""
        tta = f"{r['tta_iou']:.4f}" if "tta_iou" in r else ""
        seconds = f"{r['predict_seconds']:.1f} s" + (f" ({r['tta_predict_seconds']:.0f} s)" if "tta_iou" in r else "")
        out.append(
            f"| {r['method']} | {training} | {epochs} | {r['iou']:.4f} | {r['dice']:.4f} | "
            f"{r['pixel_accuracy']:.4f} | {tta} | {seconds} |"
        )
    seeds = [r["iou"] for r in rows if r.get("part") == "seeds"]
    if len(seeds) > 1:
        out += ["", f"Light preset over {len(seeds)} seeds: IoU {min(seeds):.4f} to {max(seeds):.4f} "
                f"(spread {max(seeds) - min(seeds):.4f})."]  # fmt: skip
    for part, key, label in (("images", "n_images", "training images"), ("strokes", "stroke_percent", "% painted")):
        picked = sorted((r for r in rows if r.get("part") == part), key=lambda r: r[key])
        if picked:
            out += ["", f"| {label} | training | foreground IoU | Dice |", "| ---: | ---: | ---: | ---: |"]
            out += [
                f"| {r[key]:g} | {r['train_seconds'] / 60:.1f} min | {r['iou']:.4f} | {r['dice']:.4f} |" for r in picked
            ]
    return "\n".join(out)


def speed_tables(data: dict) -> str:
    rows = data["results"]
    out = [f"`{data['command']}` ({data['date']}, {data['machine']}, Keras {data['keras']} on {data['backend']})", ""]
    predict = [r for r in rows if r["part"] == "predict"]
    if predict:
        out += [
            "| preset | `predict` on a folder | bare model, 1 image per call | ratio | bare, 8 per call | ratio |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        out += [
            f"| {r['preset']} | {r['ours_mpx_s']:.2f} MP/s | {r['bare_one_mpx_s']:.2f} MP/s | "
            f"{r['ratio_vs_one']:.2f} | {r['bare_batch8_mpx_s']:.2f} MP/s | {r['ratio_vs_batch8']:.2f} |"
            for r in predict
        ]
    train = [r for r in rows if r["part"] == "train"]
    if train:
        out += [
            "",
            "| preset | our training loop | bare `fit` | ratio | median step: ours | bare | ratio |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        out += [
            f"| {r['preset']} | {r['ours_images_s']:.3g} images/s | {r['bare_fit_images_s']:.3g} images/s | "
            f"{r['ratio']:.2f} | {r['ours_step_s']:.3f} s | {r['bare_step_s']:.3f} s | {r['step_ratio']:.2f} |"
            for r in train
        ]
    for part, title in (("memory", "in memory (`predict`)"), ("stream", "streamed (`predict_to_tiff`)")):
        picked = [r for r in rows if r["part"] == part]
        if picked:
            base = next((r["peak_mb"] for r in picked if r["size"] == 2048), picked[0]["peak_mb"])
            same = " | mask = in-memory" if part == "stream" else ""
            out += [
                "",
                f"| image, {title} | automatic tile | peak memory | added by predicting | vs 2048 | time{same} |",
                "| ---: | ---: | ---: | ---: | ---: | ---:" + (" | :---:" if same else "") + " |",
            ]
            out += [
                f"| {r['size']}x{r['size']} | {r.get('chosen_tile', '')} | {r['peak_mb']:.0f} MB | "
                f"{r['peak_mb'] - r['base_mb']:.0f} MB | {r['peak_mb'] / base:.2f}x | {r['seconds']:.1f} s"
                + (f" | {'yes' if r['identical_to_in_memory'] else 'NO'}" if same else "")
                + " |"
                for r in picked
            ]
    tiles = [r for r in rows if r["part"] == "tiles"]
    if tiles:
        out += [
            "",
            "| tile size (2048x2048 image) | first call | second call | peak memory | added |",
            "| ---: | ---: | ---: | ---: | ---: |",
        ]
        out += [
            f"| {r['tile'] or 'automatic (' + str(r['chosen_tile']) + ')'} | {r['seconds']:.1f} s | "
            f"{r.get('seconds_again', float('nan')):.1f} s | {r['peak_mb']:.0f} MB | "
            f"{r['peak_mb'] - r['base_mb']:.0f} MB |"
            for r in tiles
        ]
    for r in (r for r in rows if r["part"] == "cluster"):
        out += [
            "",
            "| same folder | one process | local Dask cluster | ratio | same masks |",
            "| --- | ---: | ---: | ---: | :---: |",
            f"| {r['images']} images of {r['size']}x{r['size']}, {r['workers']} workers | {r['single_s']:.1f} s | "
            f"{r['cluster_s']:.1f} s | {r['ratio']:.2f} | {'yes' if r['same_masks'] else 'NO'} |",
        ]
    return "\n".join(out)


def strokes_table(record: dict) -> str:
    budgets = record["budgets_min"]
    head = " | ".join(f"U-Net {b:g} min" for b in budgets)
    out = [
        f"Bare fit {record['machine']['bare_fit_images_per_second']} images/s; strokes on "
        f"{100 * record['share']:g}% of the pixels.",
        "",
        f"| image | size | painted | random forest | first guess | {head} |",
        "| --- | --- | ---: | ---: | ---: |" + " ---: |" * len(budgets),
    ]
    for r in record["rows"]:
        cells = " | ".join(f"{r[f'unet_{b:g}min_iou']:.3f} ({r[f'unet_{b:g}min']['patches']:,} p.)" for b in budgets)
        out.append(
            f"| {r['image']} | {'x'.join(str(n) for n in r['shape'][:2])} | {100 * r['painted_share']:.1f}% | "
            f"{r['forest_iou']:.3f} ({r['forest_seconds']:.1f} s) | {r['first_guess_iou']:.3f} | {cells} |"
        )
    s = record["summary"]
    means = " | ".join(f"{s[f'unet_{b:g}min_iou']:.3f}" for b in budgets)
    guess = sum(r["first_guess_iou"] for r in record["rows"]) / len(record["rows"])
    out.append(f"| **mean** | | | **{s['forest']:.3f}** | {guess:.3f} | {means} |")
    worst = ", ".join(f"{b:g} min {s[f'worst_{b:g}min_vs_forest']:+.3f}" for b in budgets)
    out += ["", f"Worst image against the forest: {worst}."]
    return "\n".join(out)


def train_speed_table(record: dict) -> str:
    out = [
        "| run | batch | XLA | images/s (rounds) | CPU cores busy | of it in the kernel |",
        "| --- | ---: | :---: | ---: | ---: | ---: |",
    ]
    for r in record["rows"]:
        name = "bare `fit`" if r["part"] == "bare" else f"our loop, {r['case']}" if r["part"] == "loop" else "CLI"
        rounds = ", ".join(f"{v:.1f}" for v in r.get("rounds", r.get("epoch_images_per_s", [])))
        cores = r.get("cores_busy", r.get("process_cores_busy"))
        kernel = r.get("kernel_share", r.get("process_kernel_share"))
        out.append(
            f"| {name} | {r.get('batch', 20)} | {'on' if r.get('xla') else 'off'} | **{r['images_per_s']:.1f}** "
            f"({rounds}) | {cores:.2f} | {100 * kernel:.0f}% |"
        )
    out += ["", "Ratios to the fastest bare setting: " + ", ".join(
        f"{k.replace('ratio ', '')} {v:.2f}" for k, v in record["summary"].items() if k.startswith("ratio"))
        + f"; steal {record['steal_seconds']:.0f} s over {record['seconds']:.0f} s."]  # fmt: skip
    return "\n".join(out)


def presets_table(record: dict) -> str:
    out = [
        f"{record['minutes']:g} min each, validated on {record['validation_images']} images; bare fit "
        f"{record['machine']['bare_fit_images_per_second']} images/s.",
        "",
        "| base filters | depth | patch | parameters | epochs | patches seen | validation foreground IoU |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in record["rows"]:
        out.append(
            f"| {r['base_filters']} | {r['depth']} | {r['patch']} | {r['parameters']:,} | {r['epochs']} | "
            f"{r['patches']:,} | {r['val_foreground_iou']:.4f} |"
        )
    return "\n".join(out)


LINE_TABLES = {"strokes": strokes_table, "train_speed": train_speed_table, "presets": presets_table}


def main() -> None:
    for name in sys.argv[1:]:
        text = Path(name).read_text()
        first = text.lstrip().split("\n", 1)[0]
        if first.startswith("{") and json.loads(first).get("benchmark") in LINE_TABLES:
            record = json.loads(text.strip().splitlines()[-1])  # the latest run
            print(LINE_TABLES[record["benchmark"]](record))
            print()
            continue
        data = json.loads(text)
        parts = {r.get("part") or r.get("method") for r in data["results"]}
        print(
            speed_tables(data)
            if parts & {"predict", "train", "memory", "stream", "tiles", "cluster"}
            else accuracy_tables(data)
        )
        print()


if __name__ == "__main__":
    main()
