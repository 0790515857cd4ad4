"""bioimage.io packages of other tools: opened, run by bioimageio.core in Python, the command
line, a folder and napari; packages whose weights run their own code refused unless trusted.

The packages are made here: an export of ours with our model file taken out (so nothing
of this plugin is left in it), and a package whose architecture file would leave a mark."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_unet_cat import load_model
from napari_unet_cat.bioimageio import PACKAGED_MODEL
from napari_unet_cat.cli import main
from napari_unet_cat.errors import InputError, ModelFileError
from napari_unet_cat.package_model import PackageModel
from napari_unet_cat.synthetic import make_image

#: bioimageio.core sets ``KERAS_BACKEND`` when its Keras runner is imported: keep ours.
pytestmark = pytest.mark.usefixtures("same_keras_backend")


def strip_our_model(source, target) -> None:
    """``source`` without this plugin's model file, its mention in the description, and
    (``weights`` left) only the other tools' weights: a package as another tool made it."""
    import yaml

    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for name in old.namelist():
            if name == PACKAGED_MODEL:
                continue
            data = old.read(name)
            if name == "rdf.yaml":
                description = yaml.safe_load(data)
                description.pop("attachments", None)
                description.get("config", {}).pop("napari_unet_cat", None)
                data = yaml.safe_dump(description).encode()
            new.writestr(name, data)


@pytest.fixture(scope="module")
def foreign(tiny_model, tmp_path_factory):
    """An ONNX-only package (Keras weights only where ONNX cannot be exported: on JAX)."""
    from napari_unet_cat._backend import keras

    folder = tmp_path_factory.mktemp("foreign")
    sample, _ = make_image((128, 128), seed=70)
    formats = ["onnx"] if keras.backend.backend() == "tensorflow" else ["keras_v3"]
    ours = tiny_model.export_bioimageio(folder / "ours.zip", sample, weight_formats=formats, authors=["A. Tester"])
    strip_our_model(ours, folder / "cells.zip")
    return folder / "cells.zip", formats[0]


def test_a_package_of_another_tool_runs_as_the_network_it_holds(foreign, tiny_model):
    path, weight_format = foreign
    model = load_model(path)
    assert isinstance(model, PackageModel) and model.weight_format == weight_format
    assert model.output_ids == ["probabilities"] and not model.output_is_labels("probabilities")
    image, _ = make_image((200, 180), seed=71)  # larger than one block: tiled by the package's sizes
    probabilities = model.predict(image)["probabilities"]
    ours = tiny_model.predict(image, output="probabilities")
    assert probabilities.shape == ours.shape == (200, 180, 2)
    # The package normalizes by the whole image's percentiles, ours by a subsample's.
    assert np.mean(probabilities.argmax(-1) == ours.argmax(-1)) > 0.98
    assert np.abs(probabilities - ours).mean() < 0.02
    stack = model.predict(np.stack([image, image[::-1]]), axes="TYX")["probabilities"]
    assert stack.shape == (2, 200, 180, 2)
    np.testing.assert_allclose(stack[0], probabilities, atol=1e-5)


def test_a_package_of_another_tool_segments_a_folder_from_the_command_line(foreign, tmp_path, capsys):
    path, _ = foreign
    (tmp_path / "in").mkdir()
    for i, shape in enumerate([(96, 96), (70, 110)]):  # one smaller than the package's blocks
        Image.fromarray(make_image(shape, seed=72 + i)[0]).save(tmp_path / "in" / f"c{i}.png")
    (tmp_path / "in" / "broken.png").write_bytes(b"not an image")
    argv = ["predict", "--model", str(path), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]
    assert main([*argv, "--quiet"]) == 1  # the broken file fails, reported; the others are written
    out = capsys.readouterr().out
    assert "2 segmented" in out and "broken.png" in out
    written = tifffile.imread(tmp_path / "out" / "c1.tif")
    assert written.shape == (70, 110, 2) and written.dtype == np.float32
    assert main([*argv, "--quiet", "--instances", "watershed"]) == 2
    assert "bioimage.io package" in capsys.readouterr().err
    assert main(["info", str(path)]) == 0
    assert "bioimage.io model package" in capsys.readouterr().out


def _output_tensor(folder, name: str, spatial: str, data=None):
    """An output the image's size along ``spatial`` axes, its test tensor ``<name>.npy``."""
    from bioimageio.spec.model import v0_5

    size = [
        v0_5.SpaceOutputAxis(
            id=v0_5.AxisId(a), size=v0_5.SizeReference(tensor_id=v0_5.TensorId("image"), axis_id=v0_5.AxisId(a))
        )
        for a in spatial
    ]
    axes = [v0_5.BatchAxis(), v0_5.ChannelAxis(channel_names=["c"]), *size]
    fields = {} if data is None else {"data": data}
    return v0_5.OutputTensorDescr(
        id=v0_5.TensorId(name), axes=axes, test_tensor=v0_5.FileDescr(source=folder / f"{name}.npy"), **fields
    )


def _stranger_package(folder, name: str, text: str, space: list, outputs: list, weights):
    """Save a package of another tool (test input ``in.npy``) as ``<name>.zip``."""
    from bioimageio.spec import save_bioimageio_package
    from bioimageio.spec.model import v0_5

    (folder / "README.md").write_text(f"{text}\n")
    description = v0_5.ModelDescr(
        name=name,
        description=text,
        authors=[v0_5.Author(name="A. Stranger")],
        cite=[v0_5.CiteEntry(text="none", doi=v0_5.Doi("10.1000/182"))],
        license="MIT",
        documentation=v0_5.FileDescr(source=folder / "README.md"),
        inputs=[
            v0_5.InputTensorDescr(
                id=v0_5.TensorId("image"),
                axes=[v0_5.BatchAxis(), v0_5.ChannelAxis(channel_names=["c"]), *space],
                test_tensor=v0_5.FileDescr(source=folder / "in.npy"),
            )
        ],
        outputs=outputs,
        weights=weights,
    )
    path = folder / f"{name.replace(' ', '-')}.zip"
    save_bioimageio_package(description, output_path=path)
    return path


def _package_with_code(folder):
    """A package whose only weights are ``pytorch_state_dict``: its architecture is a
    Python file that, run, writes ``marker.txt`` beside the package."""
    from bioimageio.spec.model import v0_5

    marker = folder / "marker.txt"
    (folder / "net.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\nclass Net:\n    pass\n")
    (folder / "weights.pt").write_bytes(b"not really weights")
    values = np.random.default_rng(0).random((1, 1, 64, 64), dtype=np.float32)
    np.save(folder / "in.npy", values)
    np.save(folder / "out.npy", values)
    weights = v0_5.WeightsDescr(
        pytorch_state_dict=v0_5.PytorchStateDictWeightsDescr(
            source=folder / "weights.pt",
            architecture=v0_5.ArchitectureFromFileDescr(source=folder / "net.py", callable="Net"),
            pytorch_version=v0_5.Version("2.0"),
        )
    )
    space = [v0_5.SpaceInputAxis(id=v0_5.AxisId(a), size=64) for a in ("y", "x")]
    outputs = [_output_tensor(folder, "out", "yx")]
    path = _stranger_package(folder, "code package", "runs its own code", space, outputs, weights)
    return path, marker


def test_a_package_whose_weights_run_its_code_needs_trust(tmp_path):
    import importlib.util

    path, marker = _package_with_code(tmp_path)
    with pytest.raises(ModelFileError, match="trust") as refused:
        load_model(path)
    assert str(path) in str(refused.value) and "net.py" in str(refused.value)
    assert main(["predict", "--model", str(path), "--input", str(tmp_path), "--output", str(tmp_path / "o")]) == 2
    assert not marker.exists()  # nothing of the package ran
    if importlib.util.find_spec("torch") is None:
        with pytest.raises(ModelFileError, match="PyTorch"):
            load_model(path, trust_package_code=True)
    else:  # trusted, with PyTorch there: its code runs when the network is built
        model = load_model(path, trust_package_code=True)
        with pytest.raises(ModelFileError):
            model.predict(np.zeros((64, 64), np.float32))
        assert marker.exists()


@pytest.mark.gui
def test_a_package_of_another_tool_segments_in_napari(foreign, make_napari_viewer, qtbot):
    from napari_unet_cat._qt.session import MODEL_FILE

    path, _ = foreign
    viewer = make_napari_viewer()
    image, _ = make_image((120, 100), seed=75)
    viewer.add_image(image, name="cells", translate=(3, 4))
    _, segment = viewer.window.add_plugin_dock_widget("napari-unet-cat", "Segment with U-Net")
    segment.source.value = MODEL_FILE
    segment.model_path.value = path
    segment.image.value = viewer.layers["cells"]
    segment.run()
    qtbot.waitUntil(lambda: segment.worker is None, timeout=240_000)
    names = [layer.name for layer in viewer.layers]
    added = [n for n in names if n.startswith("cells U-Net (napari-unet-cat): probabilities")]
    assert len(added) == 2, names  # one Image layer per class
    assert viewer.layers[added[1]].data.shape == (120, 100)
    assert tuple(viewer.layers[added[1]].translate) == (3, 4)
    assert segment.status.value.startswith("added")


def _volume_package(folder):
    """A 3D package of another tool, ONNX: ``p`` = sigmoid of the (z, y, x) input and
    ``mask`` = whether it is positive (uint8 labels), both the input's size."""
    import onnx
    from bioimageio.spec.model import v0_5
    from onnx import TensorProto, helper

    dims = ["b", "c", "z", "y", "x"]
    graph = helper.make_graph(
        [
            helper.make_node("Sigmoid", ["image"], ["p"]),
            helper.make_node("Greater", ["image", "zero"], ["positive"]),
            helper.make_node("Cast", ["positive"], ["mask"], to=TensorProto.UINT8),
        ],
        "volume",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, dims),
         helper.make_tensor_value_info("mask", TensorProto.UINT8, dims)],
        initializer=[helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, folder / "volume.onnx")
    test_input = np.random.default_rng(1).normal(size=(1, 1, 8, 16, 16)).astype(np.float32)
    np.save(folder / "in.npy", test_input)
    np.save(folder / "p.npy", 1 / (1 + np.exp(-test_input)))
    np.save(folder / "mask.npy", (test_input > 0).astype(np.uint8))
    space = [v0_5.SpaceInputAxis(id=v0_5.AxisId(a), size=v0_5.ParameterizedSize(min=8, step=8)) for a in "zyx"]
    outputs = [
        _output_tensor(folder, "p", "zyx", v0_5.IntervalOrRatioDataDescr(type="float32")),
        _output_tensor(folder, "mask", "zyx", v0_5.NominalOrOrdinalDataDescr(values=[0, 1], type="uint8")),
    ]
    weights = v0_5.WeightsDescr(onnx=v0_5.OnnxWeightsDescr(source=folder / "volume.onnx", opset_version=13))
    return _stranger_package(folder, "volume", "a 3D network of another tool", space, outputs, weights)


def test_a_3d_package_segments_volumes_along_z(tmp_path):
    path = _volume_package(tmp_path)
    model = load_model(path)
    assert model.ndim == 3 and model.output_is_labels("mask") and not model.output_is_labels("p")
    volume = np.random.default_rng(2).normal(size=(12, 30, 20)).astype(np.float32)  # off the 8-voxel grid
    out = model.predict(volume, axes="ZYX")
    assert out["p"].shape == out["mask"].shape == (12, 30, 20)
    np.testing.assert_array_equal(out["mask"], volume > 0)  # no preprocessing: the values as given
    np.testing.assert_allclose(out["p"], 1 / (1 + np.exp(-volume)), atol=1e-5)
    series = model.predict(np.stack([volume, -volume]), axes="TZYX")  # one volume per time point
    assert series["mask"].shape == (2, 12, 30, 20)
    np.testing.assert_array_equal(series["mask"][1], -volume > 0)
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "v.tif", volume, imagej=True, metadata={"axes": "ZYX"})
    assert (
        main(["predict", "--model", str(path), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "o")]) == 0
    )
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "o" / "v.tif"), volume > 0)  # the labels: the main output
    assert tifffile.imread(tmp_path / "o" / "v_p.tif").shape == (12, 30, 20)
    with pytest.raises(InputError, match="volumes"):
        model.predict(volume[0])
