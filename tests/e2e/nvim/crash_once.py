"""A language server that dies on its first start, then runs kenning's test server.

tests/e2e/test_neovim.py uses it to check that clients/neovim restarts a server
that exits abnormally (as `kenning lsp` does when the framing is lost).
"""

import os
import sys
from pathlib import Path

starts = Path(os.environ["KENNING_STARTS"])
with starts.open("a") as f:
    f.write("start\n")
if starts.read_text().count("start") == 1:
    os.read(0, 64)  # the client's first bytes, then a crash
    sys.exit(1)
os.execv(sys.executable, [sys.executable, os.environ["KENNING_SERVER"]])
