"""A real headless Neovim with clients/neovim: an unsaved edit becomes searchable."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import FAKE_SERVER, server_env, write_files

HERE = Path(__file__).resolve().parent
NVIM_RTP = HERE.parent.parent / "clients" / "neovim"

pytestmark = [
    pytest.mark.neovim,
    pytest.mark.skipif(
        shutil.which("nvim") is None,
        reason="nvim is not installed (apt-get install -y neovim) - the headless Neovim test needs it",
    ),
]


def test_neovim_edit_unsaved_buffer_then_search(tmp_path: Path, kenning_home: Path) -> None:
    root = write_files(
        tmp_path / "ws",
        {
            ".git/HEAD": "ref: refs/heads/main\n",
            "geometry.py": '''
                import math


                def area_of_circle(radius):
                    """The area of a circle of this radius."""
                    return math.pi * radius * radius
                ''',
            "circles.py": '''
                import math


                def circle_area(r):
                    """Area of a circle."""
                    return math.pi * r * r
                ''',
        },
    )
    target = root / "geometry.py"
    on_disk = target.read_text()
    out = tmp_path / "nvim-result.json"
    env = server_env(kenning_home)
    env.update(
        KENNING_TEST_OUT=str(out),
        KENNING_NVIM_RTP=str(NVIM_RTP),
        KENNING_PYTHON=sys.executable,
        KENNING_SERVER=FAKE_SERVER[1],
        KENNING_FILE=str(target),
        XDG_STATE_HOME=str(tmp_path / "state"),
        XDG_DATA_HOME=str(tmp_path / "data"),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
    )
    proc = subprocess.run(
        ["nvim", "--headless", "--clean", "-c", f"luafile {HERE / 'nvim' / 'edit_and_search.lua'}"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.exists(), f"nvim wrote nothing (rc {proc.returncode}): {proc.stderr[-2000:]}"
    result = json.loads(out.read_text())
    assert "error" not in result, result
    assert result["steps"] == ["edited", "attached", "indexed", "searched", "similar", "symbols"]
    assert result["modified"] is True
    assert target.read_text() == on_disk  # the buffer was never saved

    assert result["before"] == 0  # nowhere before the edit ...
    hits = result["search_qf"]  # ... and found in the unsaved buffer after it
    assert hits, "the new function never became searchable"
    assert os.path.samefile(hits[0]["file"], target)
    assert hits[0]["lnum"] <= result["new_line"]
    assert result["command_qf"] > 0  # :KenningSearch fills the quickfix list

    assert result["similar_qf"], "KenningSimilar filled no quickfix list"
    assert os.path.samefile(result["similar_qf"][0]["file"], root / "circles.py")

    assert result["symbols"], "workspace/symbol answered nothing"
    assert {Path(s["uri"]).name for s in result["symbols"]} >= {"geometry.py"}


def test_neovim_snippets_compile(tmp_path: Path) -> None:
    # lspconfig.lua needs the plugin to run; compiling it catches syntax errors.
    files = [NVIM_RTP / "lspconfig.lua", NVIM_RTP / "lua" / "kenning" / "init.lua"]
    for f in files:
        proc = subprocess.run(
            ["nvim", "--headless", "--clean", "-c", f"lua assert(loadfile('{f}'))", "-c", "qa!"],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "XDG_STATE_HOME": str(tmp_path)},
        )
        assert proc.returncode == 0 and "Error" not in proc.stderr, (f, proc.stderr)


def test_neovim_restarts_a_server_that_dies(tmp_path: Path, kenning_home: Path) -> None:
    root = write_files(
        tmp_path / "ws",
        {
            ".git/HEAD": "ref: refs/heads/main\n",
            "geometry.py": """
                def area_of_circle(radius):
                    return 3.14159 * radius * radius
                """,
        },
    )
    out = tmp_path / "nvim-result.json"
    starts = tmp_path / "starts.txt"
    env = server_env(kenning_home)
    env.update(
        KENNING_TEST_OUT=str(out),
        KENNING_NVIM_RTP=str(NVIM_RTP),
        KENNING_PYTHON=sys.executable,
        KENNING_SERVER=FAKE_SERVER[1],
        KENNING_CRASH_ONCE=str(HERE / "nvim" / "crash_once.py"),
        KENNING_STARTS=str(starts),
        KENNING_FILE=str(root / "geometry.py"),
        XDG_STATE_HOME=str(tmp_path / "state"),
        XDG_DATA_HOME=str(tmp_path / "data"),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
    )
    proc = subprocess.run(
        ["nvim", "--headless", "--clean", "-c", f"luafile {HERE / 'nvim' / 'restart.lua'}"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.exists(), f"nvim wrote nothing (rc {proc.returncode}): {proc.stderr[-2000:]}"
    result = json.loads(out.read_text())
    assert "error" not in result, result
    assert result["steps"] == ["edited", "restarted", "searched"]
    assert result["first"] == "geometry.py"
    assert starts.read_text().count("start") == 2  # one crash, one restart
