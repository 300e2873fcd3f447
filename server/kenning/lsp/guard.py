"""Wrappers that keep one failing handler from taking the server down.

A request handler's :class:`KenningError` becomes an error response carrying
its one-line message; anything else is a bug: logged with its traceback and
answered with a short internal-error message naming the log file. A
notification handler has nobody to answer, so its errors are only logged.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pygls.exceptions import JsonRpcException, JsonRpcInternalError

from kenning.errors import KenningError

log = logging.getLogger("kenning.lsp")
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def request(name: str) -> Callable[[F], F]:
    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        async def handler(*args: Any, **kwargs: Any) -> Any:
            from kenning.lsp.server import KenningRequestError, log_file

            try:
                return await fn(*args, **kwargs)
            except KenningError as exc:
                log.info("%s: %s", name, exc)
                raise KenningRequestError.of(exc) from None
            except (JsonRpcException, asyncio.CancelledError):
                raise
            except Exception as exc:
                log.error("%s failed", name, exc_info=True)
                raise JsonRpcInternalError(
                    message=f"kenning: {name} failed: {type(exc).__name__}: {exc} "
                    f"(details in {log_file()})"
                ) from None

        return handler  # type: ignore[return-value]

    return wrap


def notification(name: str) -> Callable[[F], F]:
    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        async def handler(*args: Any, **kwargs: Any) -> None:
            try:
                await fn(*args, **kwargs)
            except KenningError as exc:
                log.warning("%s: %s", name, exc)
            except JsonRpcException as exc:
                # The client's answer to a request of ours was an error or malformed.
                log.warning("%s: %s", name, exc.message)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.error("%s failed", name, exc_info=True)

        return handler  # type: ignore[return-value]

    return wrap
