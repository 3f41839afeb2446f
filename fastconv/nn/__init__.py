"""The model layer of fastconv: layers, activations, losses, metrics, initializers, optimizers, the model,
its training loop, callbacks and the progress bar.  Everything here computes through :mod:`fastconv.ops`."""
