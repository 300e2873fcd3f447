"""Start the real language server with the fake embedder (fast, deterministic).

Used by the e2e tests and available to anyone who wants a model-free server:
``python tests/e2e/fake_server.py`` speaks LSP on stdio like ``kenning lsp``.
The only difference is :data:`kenning.engine.session.EMBEDDER_FACTORY` (and, when
``KENNING_TEST_STALL_S`` / ``KENNING_TEST_INIT_S`` are set, how long a stalled
message and a TCP client's ``initialize`` are waited for).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from conftest import FakeEmbedder
from kenning.engine import session
from kenning.lsp import main, transport

# KENNING_FAKE_DIMS, KENNING_FAKE_DELAY and KENNING_FAKE_LOG give it the real
# model's width, a known pace and a log of what it embeds (see FakeEmbedder).
session.EMBEDDER_FACTORY = lambda settings: FakeEmbedder.from_env()
# The wire tests wait for a stalled message less long than an editor would.
if os.environ.get("KENNING_TEST_STALL_S"):
    transport.STALL_S = float(os.environ["KENNING_TEST_STALL_S"])
# ... and for a TCP client's initialize less long too.
if os.environ.get("KENNING_TEST_INIT_S"):
    transport.INIT_TIMEOUT_S = float(os.environ["KENNING_TEST_INIT_S"])

if __name__ == "__main__":
    sys.exit(main.main(sys.argv[1:]))
