"""Start the real language server with the fake embedder (fast, deterministic).

Used by the e2e tests and available to anyone who wants a model-free server:
``python tests/e2e/fake_server.py`` speaks LSP on stdio like ``kenning lsp``.
The only difference is :data:`kenning.lsp.server.EMBEDDER_FACTORY`.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from conftest import FakeEmbedder
from kenning.lsp import server

# KENNING_FAKE_DELAY and KENNING_FAKE_LOG slow it down and log what it embeds.
server.EMBEDDER_FACTORY = lambda settings: FakeEmbedder.from_env()

if __name__ == "__main__":
    sys.exit(server.main(sys.argv[1:]))
