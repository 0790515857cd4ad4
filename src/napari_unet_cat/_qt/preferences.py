"""The plugin's preferences, kept by napari (Preferences > U-Net Cat, from napari 0.9 on).

The manifest (``napari.yaml``, ``contributions.configurations``) declares them; a napari
without plugin preferences gets the same defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

PLUGIN = "napari-unet-cat"


@dataclass(frozen=True)
class Preferences:
    #: Where the model file fields start ("" for the working folder).
    model_folder: str = ""
    #: The network of a new model: ``auto``, ``light`` or ``classic``.
    network: str = "auto"
    #: Side of Segment's tiles (0: chosen from the free memory).
    tile_size: int = 0


def preferences() -> Preferences:
    """The preferences set in napari, or the defaults where napari keeps none."""
    try:
        from napari.settings import get_plugin_settings

        section = get_plugin_settings(PLUGIN).defaults
    except (ImportError, KeyError, AttributeError, ValueError):
        return Preferences()
    default = Preferences()
    return Preferences(
        model_folder=str(getattr(section, "model_folder", default.model_folder) or ""),
        network=str(getattr(section, "network", default.network)),
        tile_size=int(getattr(section, "tile_size", default.tile_size) or 0),
    )
