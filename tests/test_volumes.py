"""Volumes as volumes: 3D objects with one label through their planes, from a 3D U-Net or a
2D one, trained from whole volumes or a few painted slices, in files with their Z axis
and voxel size."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import tifffile
from scipy.ndimage import find_objects, label

from napari_unet_cat import volume_training
from napari_unet_cat.cli import main
from napari_unet_cat.config import TrainingSettings, z_pools_for
from napari_unet_cat.evaluation import evaluate_instances
from napari_unet_cat.instances import BORDER, INTERIOR, ObjectMaker, PlaneNumbering, instance_targets
from napari_unet_cat.loading import load_model
from napari_unet_cat.synthetic import make_volume
from napari_unet_cat.training import Trainer
from napari_unet_cat.unet import build_unet
from napari_unet_cat.volume_modes import resolve_volume_mode, segment_volume, stitch_planes
from napari_unet_cat.volume_training import painted_axis, planes_of_volumes, unpainted_as_ignored

TINY_3D = {"base_filters": 4, "depth": 2, "preset": "light"}
TINY = TINY_3D  # the same tiny network, of planes


def one_label_per_object(labels: np.ndarray) -> bool:
    """Every label is one connected 3D object (none reused plane after plane)."""
    for value, box in enumerate(find_objects(labels.astype(np.int64)), start=1):
        if box is not None and label(labels[box] == value, structure=np.ones((3, 3, 3)))[1] > 1:
            return False
    return True


def truth_probabilities(objects: np.ndarray) -> np.ndarray:
    """The background/interior/border probabilities a perfect instance model would give."""
    targets = instance_targets(objects)
    return np.eye(3, dtype=np.float32)[targets]


@pytest.fixture(scope="module")
def volumes():
    return [make_volume((16, 48, 48), seed=i, radius=(5.0, 8.0)) for i in range(3)]


def test_the_3d_unet_pools_z_only_where_it_is_fine_enough():
    network = build_unet(3, 1, base_filters=2, depth=3, ndim=3, z_pools=1)
    pools = [layer.pool_size for layer in network.layers if layer.name.endswith("_pool")]
    assert pools == [(1, 2, 2), (1, 2, 2), (2, 2, 2)]
    assert network(np.zeros((1, 4, 16, 16, 1), np.float32)).shape == (1, 4, 16, 16, 3)
    assert z_pools_for([0.28, 0.127, 0.127], 4) == 3 and z_pools_for([1, 1, 1], 4) is None
    assert z_pools_for(None, 4) is None
    with pytest.raises(ValueError, match="Received: ndim=4"):
        build_unet(2, 1, ndim=4)
    with pytest.raises(ValueError, match="Received: z_pools=5"):
        build_unet(2, 1, depth=4, ndim=3, z_pools=5)


def test_3d_objects_keep_one_label_through_their_planes_where_plane_numbers_do_not(volumes):
    _, truth = volumes[0]
    targets = instance_targets(truth)
    assert (targets == BORDER).any() and (targets == INTERIOR).any()
    # Borders are 3D: a voxel under another object's voxel in the next plane is a border.
    found = ObjectMaker("watershed", [0, 1, 2]).label_plane(truth_probabilities(truth))
    assert one_label_per_object(found)
    assert evaluate_instances([found], [truth])["ap"]["0.5"] == 1.0
    numbering = PlaneNumbering()
    plane_by_plane = np.stack([numbering.add(p) for p in truth])
    assert evaluate_instances([plane_by_plane], [truth])["ap"]["0.5"] < 0.1
    stitched = stitch_planes(plane_by_plane)
    assert one_label_per_object(stitched)
    assert evaluate_instances([stitched], [truth])["ap"]["0.5"] > 0.6


def test_slices_painted_in_any_orientation_are_found_and_the_rest_ignored(volumes):
    _, truth = volumes[1]
    assert painted_axis(truth) is None
    for axis, where in ((0, [3, 9]), (1, [10, 30]), (2, [20])):
        painted = np.zeros_like(truth)
        index = [slice(None)] * 3
        index[axis] = where
        painted[tuple(index)] = truth[tuple(index)]
        assert painted_axis(painted) == axis
        marked = unpainted_as_ignored(painted)
        kept = np.zeros(truth.shape, bool)
        kept[tuple(index)] = True
        assert ((marked >= 0) == kept).all()
        np.testing.assert_array_equal(marked[kept], truth[kept])


def test_a_2d_network_learns_from_xy_xz_and_yz_planes(volumes):
    image, truth = volumes[0]
    sparse = np.zeros_like(truth)
    sparse[[4, 11]] = truth[[4, 11]]
    images, labels, names, axes, sources = planes_of_volumes([image], [sparse], ["v"], ["ZYX"], stretch=2.0)
    views = [n.split()[1] for n in names]
    assert views.count("xy") == 2 and views.count("xz") == 48 and views.count("yz") == 48
    assert images[-1].shape == (32, 48) and axes[-1] == "YX"  # Z resampled to square pixels
    assert set(sources) == {0}  # all from one volume
    # A side view holds only the rows of the painted slices.
    assert ((labels[-1] >= 0).any(axis=1).sum()) in (4, 5, 6)
    time_series = planes_of_volumes([image, image], [truth, truth], ["t", "u"], ["TYX", "ZYX"])
    assert time_series[0][0] is image and time_series[4][0] == 0  # not a z-stack: passed on as it is
    assert set(time_series[4][1:]) == {1}  # the next image is the next source


def test_a_wide_volume_trains_on_a_spread_of_its_side_planes(volumes, monkeypatch):
    image, truth = volumes[0]
    sparse = np.zeros_like(truth)
    sparse[[4, 11]] = truth[[4, 11]]
    monkeypatch.setattr(volume_training, "SIDE_VIEW_PLANES", 5)
    images, labels, names, *_ = planes_of_volumes([image], [sparse], ["v"], ["ZYX"], stretch=2.0)
    views = [n.split()[1] for n in names]
    assert views.count("xy") == 2 and views.count("xz") == 5 and views.count("yz") == 5
    # Five of the 48 YZ planes, evenly spread from the first to the last, in the image's type.
    x_planes = np.transpose(volume_training.resample_z(image, 32), (2, 0, 1))
    for plane, x in zip(images[-5:], (0, 12, 24, 35, 47)):
        assert plane.dtype == image.dtype
        np.testing.assert_array_equal(plane, x_planes[x])
    assert all((plane >= 0).any() for plane in labels[-5:])


def test_validation_holds_out_whole_volumes_not_planes_beside_trained_ones(volumes):
    # Validation holds out a whole volume, never a plane beside one trained on.
    two = planes_of_volumes([v for v, _ in volumes[:2]], [t for _, t in volumes[:2]], ["a", "b"], ["ZYX"] * 2)
    settings = TrainingSettings(epochs=1, patch_size=32, label_mode="instances", val_fraction=0.5)
    held = Trainer(*two[:2], settings=settings, names=two[2], axes=two[3], sources=two[4], **TINY)
    trained = {p.image_index for p in held.data.sampler.planes}
    assert len(trained) == 1 and held.data.n_val_planes == sum(p.image_index not in trained for p in held.data.planes)
    with pytest.raises(Exception, match="3 sources for"):
        Trainer(*two[:2], settings=settings, names=two[2], axes=two[3], sources=[0, 0, 1], **TINY)


def test_a_3d_unet_trains_on_painted_slices_and_answers_in_3d(volumes, tmp_path):
    images = [v for v, _ in volumes[:2]]
    painted = []
    for _, truth in volumes[:2]:
        sparse = np.zeros_like(truth)
        sparse[[3, 8, 13]] = truth[[3, 8, 13]]
        painted.append(sparse)
    settings = TrainingSettings(ndim=3, epochs=2, steps_per_epoch=2, patch_size=16, label_mode="instances")
    trainer = Trainer(images, painted, settings=settings, axes="ZYX", voxel_size=[2.0, 1.0, 1.0], **TINY_3D)
    # Unpainted planes are not annotated; painted ones are, background included.
    sample = trainer.data.planes[0]
    assert (sample.targets[3] >= 0).all() and (sample.targets[4] < 0).all()
    assert settings.patch_shape == (8, 16, 16) and settings.batch_size == 4
    assert trainer.config.architecture.z_pools == 1
    model = trainer.run()
    image = volumes[2][0]
    found = model.predict(image, axes="ZYX", output="instances")
    assert found.shape == image.shape and one_label_per_object(found)
    probs = model.predict(image, axes="ZYX", output="probabilities")
    # Blocks (here 8 deep and 32 wide, with margins) blend into the whole-volume answer.
    blocked = model.predict(image, axes="ZYX", output="probabilities", tile_size=32)
    assert np.abs(blocked - probs).max() < 0.1
    path = model.save(tmp_path / "volumes.keras")
    again = load_model(path)
    assert again.config.ndim == 3 and again.config.voxel_size == [2.0, 1.0, 1.0]
    assert again.config.trained_voxel_size == (2.0, 1.0, 1.0)
    assert dataclasses.replace(again.config, voxel_size=[]).trained_voxel_size is None
    np.testing.assert_allclose(again.predict(image, axes="ZYX", output="probabilities"), probs, atol=1e-5)
    streamed = tmp_path / "streamed.tif"
    again.predict_to_tiff(np.stack([image, image]), streamed, axes="TZYX", output="classes", chunk=16)
    classes = again.predict(image, axes="ZYX", output="classes")
    np.testing.assert_array_equal(tifffile.imread(streamed), np.stack([classes, classes]))
    with pytest.raises(Exception, match="segments volumes"):
        again.predict(image[0], axes="YX")


def test_every_volume_mode_of_a_2d_model_gives_3d_objects(volumes):
    from napari_unet_cat.training import train

    images = [v for v, _ in volumes[:2]]
    truths = [t for _, t in volumes[:2]]
    planes = planes_of_volumes(images, truths, ["a", "b"], ["ZYX", "ZYX"])
    model = train(
        planes[0], planes[1], axes=planes[3], sources=planes[4], epochs=2, steps_per_epoch=3, patch_size=32,
        label_mode="instances", base_filters=4, depth=2, preset="light",
    )  # fmt: skip
    image = volumes[2][0]
    for mode in ("stitch", "xy", "three-axes"):
        found = segment_volume(model, image, mode=mode, voxel_size=(2.0, 1.0, 1.0))
        assert found.shape == image.shape and one_label_per_object(found), mode
    classes = segment_volume(model, image, mode="three-axes", output="classes")
    assert set(np.unique(classes)) <= {0, 1, 2}
    assert resolve_volume_mode(model, "ZYX", None) == "three-axes"
    assert resolve_volume_mode(model, "TYX", None) == "planes"
    with pytest.raises(Exception, match="needs a Z axis"):
        resolve_volume_mode(model, "TYX", "xy")


def test_volumes_from_the_command_line_with_their_voxel_size(volumes, tmp_path, capsys):
    for folder in ("images", "masks", "test"):
        (tmp_path / folder).mkdir()
    for i, (image, truth) in enumerate(volumes[:2]):
        # ImageJ hyperstacks: Z spacing 2 um, then 4 um; pixels 1 um.
        tifffile.imwrite(
            tmp_path / "images" / f"v{i}.tif", image, imagej=True, resolution=(1.0, 1.0),
            metadata={"axes": "ZYX", "spacing": 2.0 + 2 * i, "unit": "um"},
        )  # fmt: skip
        tifffile.imwrite(tmp_path / "masks" / f"v{i}.tif", truth)
    # OME-TIFF: physical sizes in its XML.
    tifffile.imwrite(
        tmp_path / "test" / "t.ome.tif", volumes[2][0], ome=True,
        metadata={"axes": "ZYX", "PhysicalSizeZ": 2.0, "PhysicalSizeY": 1.0, "PhysicalSizeX": 1.0},
    )  # fmt: skip
    model = tmp_path / "v.keras"
    common = ["--masks", str(tmp_path / "masks"), "--labels", "instances", "--base-filters", "4", "--depth", "2"]
    args = ["train", "--images", str(tmp_path / "images"), "--out", str(model), *common, "--epochs", "1"]
    assert main([*args, "--ndim", "3", "--steps-per-epoch", "2", "--patch-size", "16"]) == 0
    loaded = load_model(model)
    assert loaded.config.ndim == 3 and loaded.config.voxel_size == [2.0, 1.0, 1.0]
    assert main(["predict", "--model", str(model), "--input", str(tmp_path / "test"), "--output",
                 str(tmp_path / "out3"), "--measure", "--quiet"]) == 0  # fmt: skip
    assert tifffile.imread(tmp_path / "out3" / "t.tif").shape == volumes[2][0].shape
    header = (tmp_path / "out3" / "t_objects.csv").read_text().splitlines()[0]
    assert "centroid_z" in header and "volume_um3" in header
    flat = tmp_path / "flat.keras"
    assert main([*args[:4], str(flat), *common, "--epochs", "1", "--steps-per-epoch", "2", "--patch-size", "32"]) == 0
    assert "side views stretched 2.00x to 4.00x in Z" in capsys.readouterr().out  # each stack its own
    # A 2D model resumed on stacks (as --resume nuclei would be) makes their side views
    # square with the voxel size given for them, not the one it was trained at (2 um).
    again = [*args[:4], str(tmp_path / "again.keras"), *common[:4], "--resume", str(flat)]
    again += ["--voxel-size", "3", "1", "1"]
    assert main([*again, "--epochs", "1", "--steps-per-epoch", "2", "--patch-size", "32"]) == 0
    assert "stretched 3.00x in Z" in capsys.readouterr().out
    for mode in ("stitch", "three-axes"):
        out = tmp_path / mode
        assert main(["predict", "--model", str(flat), "--input", str(tmp_path / "test"), "--output", str(out),
                     "--volume", mode, "--quiet"]) == 0  # fmt: skip
        assert one_label_per_object(tifffile.imread(out / "t.tif"))
    (tmp_path / "truth").mkdir()
    tifffile.imwrite(tmp_path / "truth" / "t.tif", volumes[2][1])
    capsys.readouterr()
    assert main(["evaluate", "--instances", "--pred", str(tmp_path / "stitch"), "--truth", str(tmp_path / "truth"),
                 "--json"]) == 0  # fmt: skip
    scores = json.loads(capsys.readouterr().out)
    assert scores["n_true"] == len(np.unique(volumes[2][1])) - 1  # matched as 3D objects


def test_a_large_volume_is_cut_into_calls_the_3d_convolutions_can_hold():
    from napari_unet_cat.config import Normalization
    from napari_unet_cat.inference import TiledNetwork
    from napari_unet_cat.volume_inference import MAX_CALL_BYTES, plan_blocks

    # A tiny network and much free memory: the budget alone would send 8 blocks a call,
    # past what TensorFlow's CPU 3D convolutions can hold (the process aborts).
    network = TiledNetwork(None, n_classes=2, size_multiple=8, receptive_radius=20, bytes_per_pixel=192,
                           normalization=Normalization())  # fmt: skip
    plan = plan_blocks(network, (128, 1024, 1024), z_multiple=8, memory_budget=8 * 2**30)
    assert plan.batch_size * np.prod(plan.window) * network.bytes_per_pixel <= MAX_CALL_BYTES
    assert plan.batch_size >= 2 and len(plan) > plan.batch_size  # still batched, and many calls


def test_a_3d_model_round_trips_its_bioimageio_package(volumes, tmp_path):
    from bioimageio.spec import load_model_description

    from napari_unet_cat.training import train

    images = [v for v, _ in volumes[:2]]
    model = train(
        images, [t for _, t in volumes[:2]], axes="ZYX", ndim=3, epochs=1, steps_per_epoch=2, patch_size=16,
        label_mode="instances", **TINY_3D,
    )  # fmt: skip
    sample, _ = make_volume((24, 48, 48), seed=9)  # at least 5 steps of the network's grid each way
    package = model.export_bioimageio(tmp_path / "volumes.zip", sample, authors=["a tester"])
    description = load_model_description(package)
    assert [str(a.id) for a in description.inputs[0].axes] == ["batch", "channel", "z", "y", "x"]
    again = load_model(package)
    assert again.config.ndim == 3
    np.testing.assert_allclose(
        again.predict(sample, axes="ZYX", output="probabilities"),
        model.predict(sample, axes="ZYX", output="probabilities"),
        atol=1e-5,
    )
