"""What every Funtainer process does around its own work: settings, logging, uvloop,
connections, and running until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import uvloop

from bus.broker import Broker
from bus.config import Settings, get_settings
from bus.store import Store

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM, so shutdown runs as ordinary code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


@asynccontextmanager
async def connections(settings: Settings, name: str) -> AsyncIterator[tuple[Store, Broker]]:
    store = Store.for_settings(settings)
    try:
        broker = await Broker.connect(settings.amqp_url, name=name,
                                      quorum=settings.quorum_queues)
        try:
            yield store, broker
        finally:
            await broker.close()
    finally:
        await store.close()


def run_process(serve: Callable[[Settings], Awaitable[None]]) -> None:
    """The entry point of `ft gateway|initializer|invoker`."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    uvloop.run(serve(get_settings()))  # type: ignore[arg-type]
