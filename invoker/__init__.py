"""The invoker: runs activations in a pool of prewarmed runtime containers."""
