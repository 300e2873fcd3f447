"""Engine progress callbacks -> ``$/progress`` in the editor's own progress UI.

The engine calls ``progress(stage, done, total)`` from the index thread, often
thousands of times; this turns that into a few notifications a second, sent
from the event loop. The token is created with ``window/workDoneProgress/create``
when the client supports it; a client that refuses it (or has no progress UI)
simply gets no progress, and the work goes on.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from lsprotocol import types as lsp

from kenning.engine import embed, prepare, scan

log = logging.getLogger(__name__)

# Each stage fills its share of one bar that only ever grows (persist keeps pace
# with prepare and reports through its count).
STAGES: dict[str, tuple[int, int, str]] = {
    scan.STAGE: (0, 5, "scanning files"),
    prepare.STAGE: (5, 40, "reading {done}/{total} files"),
    embed.STAGE: (40, 100, "embedding {done}/{total} chunks"),
}
MIN_INTERVAL_S = 0.2
_tokens = itertools.count(1)


class IndexProgress:
    """One progress bar for one piece of index work (possibly over several roots)."""

    def __init__(self, server: Any, title: str, cancellable: bool = True) -> None:
        """``server``: the KenningServer (its module imports this one)."""
        self.server = server
        self.title = title
        self.cancellable = cancellable
        self.token: str | None = None
        self._last_sent = 0.0
        self._last_pct = 0
        self._last_stage = ""
        self._lock = threading.Lock()
        self._on_cancel: list[Callable[[], None]] = []
        self._ended = False

    def _supported(self) -> bool:
        caps = self.server.client_capabilities
        return bool(caps and caps.window and caps.window.work_done_progress)

    async def begin(self, message: str | None = None) -> None:
        if not self._supported():
            return
        token = f"kenning/index/{next(_tokens)}"
        try:
            await asyncio.wait_for(self.server.work_done_progress.create_async(token), 10)
        except Exception as exc:  # a refused token costs the progress bar, nothing else
            log.info("the client refused a progress token (%s); indexing without progress", exc)
            return
        self.token = token
        cancel_future = self.server.work_done_progress.tokens.get(token)
        if cancel_future is not None:

            def done(f: Any) -> None:
                if f.cancelled():
                    self._cancelled()

            cancel_future.add_done_callback(done)
        self.server.work_done_progress.begin(
            token,
            lsp.WorkDoneProgressBegin(
                title=self.title,
                message=message,
                percentage=0,
                cancellable=self.cancellable,
            ),
        )

    def on_cancel(self, fn: Callable[[], None]) -> None:
        self._on_cancel.append(fn)

    def _cancelled(self) -> None:
        log.info("%s: cancelled from the editor", self.title)
        for fn in self._on_cancel:
            fn()

    def __call__(self, stage: str, done: int, total: int) -> None:
        """The engine's progress callback; safe to call from any thread."""
        if self.token is None or self._ended:
            return
        lo, hi, template = STAGES.get(stage, (0, 100, stage))
        pct = lo + (hi - lo) * done // total if total > 0 else lo
        now = time.monotonic()
        with self._lock:
            pct = max(pct, self._last_pct)
            fresh_stage = stage != self._last_stage
            if not fresh_stage and now - self._last_sent < MIN_INTERVAL_S and done < total:
                return
            self._last_sent = now
            self._last_pct = pct
            self._last_stage = stage
        message = template.format(done=done, total=total)
        self.server.call_on_loop(self._report, message, pct)

    def _report(self, message: str, pct: int) -> None:
        if self.token is None or self._ended:
            return
        self.server.work_done_progress.report(
            self.token, lsp.WorkDoneProgressReport(message=message, percentage=pct)
        )

    def end(self, message: str) -> None:
        """Close the bar; call on the event loop."""
        if self.token is None or self._ended:
            return
        self._ended = True
        self.server.work_done_progress.end(self.token, lsp.WorkDoneProgressEnd(message=message))
        self.server.work_done_progress.tokens.pop(self.token, None)
