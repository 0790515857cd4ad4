"""The same model code on Keras's TensorFlow and JAX backends.

The suite runs under whichever backend ``KERAS_BACKEND`` names (TensorFlow by default);
``.ci/run`` runs the core tests a second time with ``KERAS_BACKEND=jax``. The tests here
cross over: a model file written under this process's backend opens under the other one
in a child process, with the same predictions, and the JAX path never imports TensorFlow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import tifffile

from napari_unet_cat._backend import keras
from napari_unet_cat.synthetic import make_image

from .conftest import TINY

OTHER = {"tensorflow": "jax", "jax": "tensorflow"}


def _in_backend(backend: str, code: str, tmp_path) -> dict:
    """Run ``code`` in a fresh Python under ``backend``; it sets ``result`` (JSON)."""
    script = tmp_path / f"child_{backend}.py"
    script.write_text(
        "import json, sys\n" + code + "\nprint('RESULT ' + json.dumps(result))\n",
        encoding="utf-8",
    )
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(row for row in done.stdout.splitlines() if row.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def test_a_model_file_opens_under_the_other_backend_with_the_same_predictions(tiny_model, tmp_path):
    here = keras.backend.backend()
    other = OTHER[here]
    image, _ = make_image((90, 77), seed=41)
    np.save(tmp_path / "image.npy", image)
    model_path = tiny_model.save(tmp_path / f"written-by-{here}.keras")
    ours = tiny_model.predict(image, output="probabilities")
    theirs = _in_backend(
        other,
        "import numpy as np\n"
        "from napari_unet_cat import load_model\n"
        "import keras\n"
        f"model = load_model({str(model_path)!r})\n"
        f"p = model.predict(np.load({str(tmp_path / 'image.npy')!r}), output='probabilities')\n"
        f"np.save({str(tmp_path / 'theirs.npy')!r}, p)\n"
        f"model.save({str(tmp_path / f'written-by-{other}.keras')!r})\n"
        "result = {'backend': keras.backend.backend()}",
        tmp_path,
    )
    assert theirs["backend"] == other
    np.testing.assert_allclose(np.load(tmp_path / "theirs.npy"), ours, atol=1e-4)
    # ... and the file the other backend wrote back opens here, still the same model.
    from napari_unet_cat import load_model

    back = load_model(tmp_path / f"written-by-{other}.keras")
    np.testing.assert_allclose(back.predict(image, output="probabilities"), ours, atol=1e-4)


def test_the_jax_path_never_imports_tensorflow(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for i in range(4):
        image, mask = make_image((80, 80), seed=60 + i)
        tifffile.imwrite(images / f"{i}.tif", image)
        tifffile.imwrite(masks / f"{i}.tif", mask.astype(np.uint8))
    model = tmp_path / "m.keras"
    tiny = ["--base-filters", str(TINY["base_filters"]), "--depth", str(TINY["depth"])]
    train = ["train", "--images", str(images), "--masks", str(masks), "--out", str(model), "--epochs", "2"]
    train += [*tiny, "--patch-size", "64", "--batch-size", "4", "--steps-per-epoch", "2"]
    predict = ["predict", "--model", str(model), "--input", str(images), "--output", str(tmp_path / "out")]
    result = _in_backend(
        "jax",
        "from napari_unet_cat.cli import main\n"
        f"codes = [main({train!r}), main({predict!r})]\n"
        "import keras\n"
        "result = {'codes': codes, 'backend': keras.backend.backend(),\n"
        "          'tensorflow': sorted(m for m in sys.modules if m == 'tensorflow' or m.startswith('tensorflow.'))}",
        tmp_path,
    )
    assert result["backend"] == "jax"
    assert result["codes"] == [0, 0]
    assert result["tensorflow"] == [], result["tensorflow"][:10]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.tif")) == [f"{i}.tif" for i in range(4)]
