"""``ft``: the wsk-compatible command line client (stdlib only) and the entry point that starts
the platform's own processes."""
