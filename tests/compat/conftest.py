"""The compatibility suites run against the same real cluster as the integration tests (the
``cluster`` fixtures are registered for the whole test tree in ``tests/conftest.py``)."""
