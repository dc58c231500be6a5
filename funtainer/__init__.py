"""Funtainer's Python client: invoke actions, deploy Python functions as actions, fire
triggers and read activations, sync (``Client``) or with asyncio (``AsyncClient``)."""

from funtainer.activation import Activation
from funtainer.client import AsyncClient, Client
from funtainer.errors import (
    ActivationFailed,
    ActivationTimeout,
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    FuntainerError,
    NotFound,
    PayloadTooLarge,
    ServerError,
    Throttled,
    Unauthorized,
    Unreachable,
)
from funtainer.functions import Function, PackagingError
from funtainer.names import InvalidName

__all__ = [
    "Activation",
    "ActivationFailed",
    "ActivationTimeout",
    "ApiError",
    "AsyncClient",
    "BadRequest",
    "Client",
    "Conflict",
    "Forbidden",
    "Function",
    "FuntainerError",
    "InvalidName",
    "NotFound",
    "PackagingError",
    "PayloadTooLarge",
    "ServerError",
    "Throttled",
    "Unauthorized",
    "Unreachable",
]
