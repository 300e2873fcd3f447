"""Feature modules, one per area; each has ``register(server)``.

Which modules are registered is decided in ``initialize`` from the settings,
so a client only sees the capabilities it asked for (``workspace/symbol``
only when ``workspaceSymbol.semantic`` is on). Registration of one module
failing is logged and costs that module only.

``templates`` brings ``kenning.matchTemplates``, ``kenning.applyTemplate``
and completion on ``# kenning: ...`` lines; ``duplicates`` the near-duplicate
diagnostics and ``kenning.duplicates``; ``actions`` offers both in its code
actions when they are registered.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kenning.config import Settings

if TYPE_CHECKING:
    from kenning.lsp.server import KenningServer

log = logging.getLogger(__name__)


def always(_: Settings) -> bool:
    return True


@dataclass(frozen=True)
class Feature:
    module: str
    enabled: Callable[[Settings], bool] = always


FEATURES: list[Feature] = [
    Feature("sync"),
    Feature("watch"),
    Feature("commands"),
    Feature("status"),
    Feature("templates"),
    # Always registered: the setting is followed live, so hints can be turned on
    # without a restart (off, the module only watches the setting).
    Feature("duplicates"),
    Feature("actions"),
    Feature("symbols", lambda s: s.workspace_symbol.semantic),
]


def register_all(server: KenningServer, settings: Settings) -> list[str]:
    """Register every feature the settings enable; returns the names registered."""
    done: list[str] = []
    for feature in FEATURES:
        if not feature.enabled(settings):
            continue
        try:
            module = importlib.import_module(f"{__name__}.{feature.module}")
            module.register(server)
            done.append(feature.module)
        except Exception:
            log.error("the %s feature could not be registered", feature.module, exc_info=True)
    return done
