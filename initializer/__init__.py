"""The initializer: schedules activations onto invokers and keeps track of their health."""
