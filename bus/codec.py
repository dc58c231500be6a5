"""msgpack on the wire: one encode and one decode for every model."""

from __future__ import annotations

from typing import Any, TypeVar

import msgpack
from pydantic import BaseModel

CONTENT_TYPE = "application/msgpack"

M = TypeVar("M", bound=BaseModel)


def pack(model: BaseModel) -> bytes:
    return msgpack.packb(model.model_dump(mode="python", exclude_none=True), use_bin_type=True)


def unpack(data: bytes, model: type[M]) -> M:
    return model.model_validate(msgpack.unpackb(data, raw=False))


def pack_obj(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def unpack_obj(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False)
