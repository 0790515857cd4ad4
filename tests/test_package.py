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
