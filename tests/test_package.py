"""Packaging: the plugin manifest, lazy imports."""

import subprocess
import sys


def test_manifest_is_found_and_valid():
    from npe2 import PluginManager

    pm = PluginManager()
    pm.discover()
    manifest = pm.get_manifest("napari-unet-cat")
    assert manifest.display_name == "U-Net Cat"
    result = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-unet-cat"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_importing_the_package_does_not_load_tensorflow():
    code = (
        "import sys, napari_unet_cat, napari_unet_cat.config, napari_unet_cat.synthetic;"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_public_api_is_reachable():
    import napari_unet_cat

    assert callable(napari_unet_cat.load_model) and callable(napari_unet_cat.segment_folder)
    assert callable(napari_unet_cat.build_unet) and callable(napari_unet_cat.train)


def test_the_manifest_ships_inside_the_package_as_a_file(tmp_path):
    """A real file in the package (no symlink a Windows checkout or an sdist could lose),
    in the wheel and the sdist alike, with the license."""
    import tarfile
    import zipfile
    from pathlib import Path

    import napari_unet_cat

    manifest = Path(napari_unet_cat.__file__).with_name("napari.yaml")
    assert manifest.is_file() and not manifest.is_symlink()
    root = Path(__file__).resolve().parents[1]
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-t", "sdist", "-d", str(tmp_path)],
        cwd=root,
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "napari_unet_cat/napari.yaml" in names
    assert any(n.endswith("licenses/LICENSE") or n.endswith("/LICENSE") for n in names)
    with tarfile.open(next(tmp_path.glob("*.tar.gz"))) as sdist:
        members = {m.name.split("/", 1)[1]: m for m in sdist.getmembers() if "/" in m.name}
    assert members["src/napari_unet_cat/napari.yaml"].isfile() and "LICENSE" in members
    _check_the_wheels_builtin_model(wheel, tmp_path / "unpacked")


def _check_the_wheels_builtin_model(wheel, folder):
    """The wheel carries every built-in model and its index (a fresh install works
    offline), each file loads and matches its hash, and the wheel stays under 30 MB."""
    import json
    import zipfile

    from napari_unet_cat.builtin import file_sha256
    from napari_unet_cat.loading import load_model

    assert wheel.stat().st_size < 30e6, f"the wheel is {wheel.stat().st_size / 1e6:.1f} MB"
    with zipfile.ZipFile(wheel) as archive:
        index = json.loads(archive.read("napari_unet_cat/models/index.json"))
        paths = {name: archive.extract(f"napari_unet_cat/models/{e['file']}", folder) for name, e in index.items()}
    assert "nuclei" in paths
    for name, path in paths.items():
        assert file_sha256(path) == index[name]["sha256"], name
        model = load_model(path)
        assert model.config.card, f"the built-in model {name} has no model card"
    assert load_model(paths["nuclei"]).is_instance_model


def _dlopen_flags_module_loaded(setup: str, env: dict | None = None) -> bool:
    """Whether TensorFlow was imported as usual (its global-flags helper loaded), on the
    TensorFlow backend (the JAX suite's ``KERAS_BACKEND`` would keep it out altogether)."""
    import os

    env = {"KERAS_BACKEND": "tensorflow", **(env or {})}

    code = (
        f"{setup}; import sys; import napari_unet_cat._backend;"
        "print('tensorflow.python.pywrap_dlopen_global_flags' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**os.environ, **env}
    )
    return out.stdout.split()[-1] == "True"


def test_tensorflow_is_imported_privately_only_beside_qt():
    if not sys.platform.startswith("linux"):
        return  # the private import is a Linux matter
    assert _dlopen_flags_module_loaded("pass")  # headless: as usual
    assert not _dlopen_flags_module_loaded("import qtpy")  # beside Qt: privately
    assert _dlopen_flags_module_loaded("import qtpy", {"NAPARI_UNET_CAT_PRIVATE_TF": "0"})
    assert not _dlopen_flags_module_loaded("pass", {"NAPARI_UNET_CAT_PRIVATE_TF": "1"})


def test_the_backend_named_in_keras_json_is_respected(tmp_path, monkeypatch):
    import json

    from napari_unet_cat._backend import keras_backend_name

    (tmp_path / "keras.json").write_text(json.dumps({"backend": "jax", "floatx": "float32"}))
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert keras_backend_name() == "jax"
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    assert keras_backend_name() == "tensorflow"


#: What the headless tool must never need: napari, its Qt bindings and widget toolkits.
GUI_MODULES = ("napari", "npe2", "magicgui", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "vispy")

#: Run first in a child process: any import of ``GUI_MODULES`` fails there, as it would
#: in an environment where ``pip install napari-unet-cat`` brought no napari.
BLOCK_GUI = f"""
import importlib.abc, sys
class _NoGui(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {GUI_MODULES!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not installed)")
        return None
sys.meta_path.insert(0, _NoGui())
"""


def test_the_headless_tool_trains_and_predicts_without_napari_or_qt(tmp_path):
    """The command line's train, predict and info run with napari and every Qt binding
    unimportable (the bare ``pip install napari-unet-cat``); .ci/run also installs the
    wheel without extras in a fresh environment and runs the same commands."""
    import numpy as np
    from PIL import Image

    from napari_unet_cat.synthetic import make_image

    for folder in ("images", "masks", "new"):
        (tmp_path / folder).mkdir()
    for i in range(4):
        image, mask = make_image((64, 64), seed=40 + i)
        Image.fromarray(image).save(tmp_path / "images" / f"c{i}.png")
        Image.fromarray(mask.astype(np.uint8)).save(tmp_path / "masks" / f"c{i}.png")
    Image.fromarray(make_image((80, 72), seed=50)[0]).save(tmp_path / "new" / "n.png")
    commands = [
        "train --images images --masks masks --out m.keras --epochs 1 --preset light --base-filters 4 "
        "--depth 2 --patch-size 32 --batch-size 4",
        "predict --model m.keras --input new --output masks_out --quiet",
        "info m.keras",
    ]
    for command in commands:
        code = BLOCK_GUI + f"from napari_unet_cat.cli import main\nraise SystemExit(main({command.split()!r}))\n"
        result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    written = np.asarray(Image.open(tmp_path / "masks_out" / "n.tif"))
    assert written.shape == (80, 72)
    probe = BLOCK_GUI + "import napari_unet_cat.cli, napari_unet_cat.training, napari_unet_cat.batch\nimport napari"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert "No module named 'napari' (not installed)" in result.stderr  # the blocker itself works
