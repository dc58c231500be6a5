"""Runtime container images and the in-container action proxy."""
