"""Noticing containers that died behind the invoker's back: killed from outside
(``docker kill``), or stopped with the engine when it restarted.

A thread follows the engine's event stream for this invoker's containers and reports each
``die``. When the stream breaks (the engine went away), it reconnects with a pause; after each
(re)connection it lists this invoker's containers that are not running, since they may have
died while nobody listened, and removes the ones the invoker no longer knows (their removal
failed while the engine was down)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import docker

log = logging.getLogger(__name__)

RECONNECT_PAUSE_S = 1.0


class ContainerWatch:
    def __init__(self, api: docker.APIClient, label: str, known: Callable[[str], bool],
                 remove: Callable[[str], None]) -> None:
        """``label``: the ``key=value`` this invoker's containers carry; ``known(engine_id)``:
        whether the invoker still holds that container; ``remove``: a blocking removal."""
        self._api = api
        self._label = label
        self._known = known
        self._remove = remove
        self._stream: Any = None
        self._stopping = threading.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self, on_died: Callable[[str], None]) -> None:
        """``on_died(engine_id)`` runs on the event loop for every container that died."""
        loop = asyncio.get_running_loop()

        def report(engine_id: str) -> None:
            loop.call_soon_threadsafe(on_died, engine_id)

        self._task = asyncio.create_task(self._run(report))

    async def _run(self, report: Callable[[str], None]) -> None:
        broken = False
        while not self._stopping.is_set():
            try:
                await asyncio.to_thread(self._follow, report, broken)
            except Exception as exc:
                if not self._stopping.is_set() and not broken:
                    log.warning("lost the engine's event stream (%s); reconnecting", exc)
            broken = True
            await asyncio.sleep(RECONNECT_PAUSE_S)

    def _follow(self, report: Callable[[str], None], reconnecting: bool) -> None:
        events: Iterator[dict[str, Any]] = self._api.events(
            filters={"type": "container", "event": "die", "label": self._label}, decode=True)
        self._stream = events
        # Opened before the listing, so no death falls between the two.
        for container in self._api.containers(
                all=True, filters={"label": self._label, "status": ["exited", "dead"]}):
            if self._known(container["Id"]):
                report(container["Id"])
            else:
                self._remove(container["Id"])
        if reconnecting:
            log.info("following the engine's events again")
        for event in events:
            if self._stopping.is_set():
                return
            report(event["id"])
        raise ConnectionError("the event stream ended")

    async def stop(self) -> None:
        self._stopping.set()
        stream = self._stream
        if stream is not None:
            try:
                stream.close()  # unblocks the thread reading it
            except Exception as exc:
                log.debug("closing the event stream: %s", exc)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
