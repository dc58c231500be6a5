"""Typed keys for what the application holds (aiohttp ``AppKey``s)."""

from __future__ import annotations

from aiohttp import web

from bus.broker import Broker
from bus.config import Settings
from bus.store import Store
from bus.tracing import Tracer
from gateway.action_cache import ActionCache
from gateway.activation_watch import ActivationWatch
from gateway.auth import Authenticator
from gateway.cluster_metrics import ClusterView
from gateway.direct import DirectPath
from gateway.invalidations import InvalidationListener
from gateway.metrics import GatewayMetrics
from gateway.publisher import ActivationPublisher
from gateway.replies import Waiters
from gateway.validation import GatewayLimits

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
BROKER = web.AppKey("broker", Broker)
PUBLISHER = web.AppKey("publisher", ActivationPublisher)
LIMITS = web.AppKey("limits", GatewayLimits)
AUTHENTICATOR = web.AppKey("authenticator", Authenticator)
INVALIDATIONS = web.AppKey("invalidations", InvalidationListener)
ACTIONS = web.AppKey("actions", ActionCache)
WAITERS = web.AppKey("waiters", Waiters)
WATCH = web.AppKey("watch", ActivationWatch)
GATEWAY_ID = web.AppKey("gateway_id", str)
DIRECT = web.AppKey("direct", DirectPath)  # absent when the direct path is off
CLUSTER = web.AppKey("cluster", ClusterView)
GATEWAY_METRICS = web.AppKey("gateway_metrics", GatewayMetrics)
TRACER = web.AppKey("tracer", Tracer)
