"""Exceptions raised by napari-unet-cat.

Every error a user can cause (a bad file, a layer of the wrong shape, an
unreadable model) is one of these, with a message that names the thing at
fault and what is wrong with it.
"""

from __future__ import annotations


class UNetCatError(Exception):
    """Base class of the package's own errors."""


class InputError(UNetCatError, ValueError):
    """An image, a label image or a setting cannot be used as given."""


class ModelFileError(UNetCatError, OSError):
    """A model file is missing, unreadable, corrupt or not one of ours."""


class TrainingStopped(UNetCatError):
    """Training was stopped before its first epoch finished (no model yet)."""
