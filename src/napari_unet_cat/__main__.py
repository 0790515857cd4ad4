"""``python -m napari_unet_cat``: the same as the ``napari-unet-cat`` command."""

import sys

from .cli import main

sys.exit(main())
