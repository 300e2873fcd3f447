"""``kenning mcp`` with the fake embedder (fast, deterministic): ``python tests/e2e/fake_mcp.py``.

For tests and benchmarks where meaning is not the point. KENNING_FAKE_DIMS and
KENNING_FAKE_DELAY configure the embedder (see ``FakeEmbedder.from_env``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from conftest import FakeEmbedder
from kenning import cli
from kenning.mcp import server

server.EMBEDDER_FACTORY = lambda settings: FakeEmbedder.from_env()

if __name__ == "__main__":
    sys.exit(cli.main(["mcp", *sys.argv[1:]]))
