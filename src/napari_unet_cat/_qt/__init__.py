"""The napari layer: magicgui widgets over the pure core. Nothing else imports this package.

TensorFlow/Keras are imported only when work starts (inside the workers), so opening
napari and the widgets stays fast.
"""
