"""The HTTP API: OpenWhisk's REST API (``/api/v1``) on aiohttp.

Entry points: ``gateway.app.build_app`` (an aiohttp application over a given store and broker)
and ``gateway.app.run`` (the ``ft gateway`` process).
"""
