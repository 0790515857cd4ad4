"""bioimage.io model packages: bioimage.io's own validation and model test, and the round trip."""

from __future__ import annotations

import copy
import zipfile

import numpy as np
import pytest
import tifffile

from napari_unet_cat import load_model
from napari_unet_cat.bioimageio import PACKAGED_MODEL, export_network
from napari_unet_cat.cli import main
from napari_unet_cat.errors import InputError
from napari_unet_cat.synthetic import make_image

#: bioimageio.core sets ``KERAS_BACKEND`` when its Keras runner is imported: keep ours.
pytestmark = pytest.mark.usefixtures("same_keras_backend")


@pytest.fixture(scope="module")
def package(tiny_model, tmp_path_factory):
    sample, _ = make_image((150, 170), seed=77)
    path = tmp_path_factory.mktemp("bmz") / "cells.zip"
    tiny_model.export_bioimageio(path, sample, name="Synthetic cells", authors=["A. Tester"])
    return path, sample


def test_the_package_passes_bioimageio_validation_and_model_test(package):
    from bioimageio.core import test_model
    from bioimageio.spec import InvalidDescr, load_model_description

    path, _ = package
    descr = load_model_description(path)
    assert not isinstance(descr, InvalidDescr), descr.validation_summary.format()
    assert descr.format_version.startswith("0.5")
    (tensor,) = descr.inputs
    assert [a.id for a in tensor.axes] == ["batch", "channel", "y", "x"]
    assert [p.id for p in tensor.preprocessing if p.id != "ensure_dtype"] == ["scale_range"]
    (out,) = descr.outputs
    assert [str(n) for n in out.axes[1].channel_names] == ["class_0", "class_1"]
    assert out.axes[2].halo > 0 and descr.weights.keras_v3 is not None
    assert "10.1007/978-3-319-24574-4_28" in str(descr.cite[0].doi)
    summary = test_model(path)
    assert summary.status == "passed", summary.format()


def test_the_package_holds_our_prediction_of_the_sample_and_opens_as_the_same_model(package, tiny_model):
    path, sample = package
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        assert {"rdf.yaml", "README.md", "cover.png", "test_input.npy", "test_output.npy", PACKAGED_MODEL} <= names
        import io

        test_input = np.load(io.BytesIO(archive.read("test_input.npy")))
        test_output = np.load(io.BytesIO(archive.read("test_output.npy")))
    # The sample's central square on the network's grid, channels first; the output is ours.
    assert test_input.shape[:2] == (1, 1) and test_input.shape[2] % 4 == 0
    side = test_input.shape[2]
    top, left = (150 - side) // 2, (170 - side) // 2
    np.testing.assert_array_equal(test_input[0, 0], sample[top : top + side, left : left + side])
    ours = tiny_model.predict(sample[top : top + side, left : left + side], output="probabilities")
    np.testing.assert_allclose(np.moveaxis(test_output[0], 0, -1), ours, atol=1e-5)
    # Round trip: load_model opens the package as the model it was exported from.
    loaded = load_model(path)
    image, _ = make_image((90, 110), seed=78)
    np.testing.assert_allclose(
        loaded.predict(image, output="probabilities"), tiny_model.predict(image, output="probabilities"), atol=1e-6
    )
    assert loaded.config.to_dict()["architecture"] == tiny_model.config.to_dict()["architecture"]


def test_the_class_weight_correction_is_folded_into_the_exported_network(tiny_model):
    weighted = copy.copy(tiny_model)
    weighted.config = copy.deepcopy(tiny_model.config)
    weighted.config.class_prior_weights = [1.0, 4.0]
    weighted._probability_model = None
    x = np.random.default_rng(3).random((2, 64, 64, 1), dtype=np.float32)
    exported = np.asarray(export_network(weighted).predict_on_batch(np.moveaxis(x, -1, 1)))
    exported = np.moveaxis(exported, 1, -1)  # (batch, class, y, x) -> channels last
    np.testing.assert_allclose(exported, weighted.tile_probabilities(x), atol=1e-5)
    assert not np.allclose(exported, tiny_model.tile_probabilities(x), atol=1e-3)  # the correction does something


def test_export_from_the_command_line_and_clear_errors(tiny_model, tmp_path):
    model = tiny_model.save(tmp_path / "cells.keras")
    sample, _ = make_image((128, 128), seed=79)
    tifffile.imwrite(tmp_path / "sample.tif", sample)
    out = tmp_path / "cells.zip"
    argv = ["export", str(model), "--bioimageio", str(out), "--sample", str(tmp_path / "sample.tif")]
    assert main([*argv, "--name", "Cells", "--author", "A. Tester", "--author", "B. Tester"]) == 0
    from bioimageio.spec import load_model_description

    descr = load_model_description(out)
    assert descr.name == "Cells" and [a.name for a in descr.authors] == ["A. Tester", "B. Tester"]
    # A sample too small for the halo, or of the wrong channels, is refused, naming it; nothing is written.
    tifffile.imwrite(tmp_path / "small.tif", sample[:40, :40])
    bad = tmp_path / "bad.zip"
    with pytest.raises(InputError, match="small.tif.*40x40"):
        tiny_model.export_bioimageio(bad, sample[:40, :40], sample_name=str(tmp_path / "small.tif"))
    with pytest.raises(InputError, match="3 channels"):
        tiny_model.export_bioimageio(bad, np.zeros((128, 128, 3), np.uint8))
    assert not bad.exists()
    assert main(["export", str(model), "--bioimageio", str(bad), "--sample", str(tmp_path / "small.tif")]) == 2
    assert not bad.exists() and not list(tmp_path.glob(".bad.zip*"))


def test_every_weight_format_runs_in_bioimageio_core(tiny_model, tmp_path, monkeypatch):
    """keras_v3, TensorFlow's SavedModel and ONNX each reproduce the test output in
    bioimage.io's own runner (TensorFlow backend); on JAX a SavedModel is refused clearly."""
    from bioimageio.core import test_model

    from napari_unet_cat._backend import keras

    monkeypatch.chdir(tmp_path)  # bioimage.io's TensorFlow runner unzips into the working folder
    sample, _ = make_image((128, 128), seed=80)
    path = tmp_path / "all.zip"
    if keras.backend.backend() != "tensorflow":
        with pytest.raises(InputError, match="need the TensorFlow backend"):
            tiny_model.export_bioimageio(path, sample, weight_formats=["all"])
        assert not path.exists()
        return
    tiny_model.export_bioimageio(path, sample, weight_formats=["all"])
    for weight_format in ("keras_v3", "tensorflow_saved_model_bundle", "onnx"):
        summary = test_model(path, weight_format=weight_format)
        assert summary.status == "passed", (weight_format, summary.format())
