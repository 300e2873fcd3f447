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

from kenning.errors import KenningError, LocationError, UsageError
from kenning.lsp.logs import log_file

log = logging.getLogger("kenning.lsp")
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

# JSON-RPC codes: LSP's RequestFailed for a user error, InvalidParams for bad arguments.
REQUEST_FAILED = -32803
INVALID_PARAMS = -32602


class KenningRequestError(JsonRpcException):
    """A KenningError on its way back to the client as an error response."""

    CODE = REQUEST_FAILED

    @classmethod
    def of(cls, exc: Any) -> KenningRequestError:
        code = INVALID_PARAMS if isinstance(exc, UsageError | LocationError) else REQUEST_FAILED
        return cls(message=str(exc), code=code)


def request(name: str) -> Callable[[F], F]:
    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        async def handler(*args: Any, **kwargs: Any) -> Any:
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
