"""``kenning`` (the CLI) with the fake embedder: ``python tests/fake_cli.py index ...``.

For tests that run the CLI as a separate process where meaning is irrelevant:
it starts in a fraction of the real model's time. KENNING_FAKE_DELAY and
KENNING_FAKE_LOG configure the embedder (see ``FakeEmbedder.from_env``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import FakeEmbedder
from kenning import cli

cli._embedder_factory = lambda settings: FakeEmbedder.from_env  # type: ignore[assignment]

if __name__ == "__main__":
    sys.exit(cli.main(sys.argv[1:]))
