"""Editor set-up files that cannot run here (Helix is not packaged for Debian)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def test_helix_config_declares_the_server() -> None:
    config = tomllib.loads((ROOT / "clients/helix/languages.toml").read_text())
    server = config["language-server"]["kenning"]
    assert [server["command"], *server["args"]] == ["kenning", "lsp"]
    assert all("kenning" in lang["language-servers"] for lang in config["language"])
