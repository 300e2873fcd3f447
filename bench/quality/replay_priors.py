"""Replay ranking settings on a quality set's index, through the engine's own Searcher.

For each setting of the priors (``SIZE_PRIOR_POWER``, ``TYPE_PRIOR``, ``NAME_BONUS``
in ``kenning.engine.search``) and of the name vectors' margin (``NAME_MARGIN`` in
``kenning.engine.vectors``, or ``off``: code vectors only) every query is searched in
each mode on the index a ``run_eval.py --home DIR`` run left behind, and scored as
``run_eval.py`` scores. Query vectors are embedded once. Prints one JSON object per
setting::

    python bench/quality/replay_priors.py --home /tmp/devhome --corpus /tmp/kenning-quality-dev \\
        --grid 0:1:0 0.2:0.6:0.35 0.3:0.6:0.5 --name-margins off 0.07
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import sys
from pathlib import Path
from typing import Any


def code_only(nearest: Any, *args: Any, **kwargs: Any) -> Any:
    """``VectorIndex.nearest`` without the name vectors (``--name-margins off``)."""
    kwargs["names"] = False
    return nearest(*args, **kwargs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", required=True, help="KENNING_HOME of a kept run_eval.py run")
    ap.add_argument("--corpus", required=True, help="the corpus folder (workspace/, targets.jsonl)")
    ap.add_argument(
        "--quality-dir", default=str(Path(__file__).resolve().parents[3] / "shared" / "quality")
    )
    ap.add_argument(
        "--grid",
        nargs="+",
        default=["0:1:0", "0.2:0.6:0.35"],
        help="settings as SIZE_PRIOR_POWER:TYPE_PRIOR:NAME_BONUS",
    )
    ap.add_argument(
        "--name-margins",
        nargs="+",
        default=["0.07"],
        help="NAME_MARGIN values to try, or off (code vectors only)",
    )
    ap.add_argument("--modes", default="hybrid,vector,lexical")
    args = ap.parse_args()
    os.environ["KENNING_HOME"] = args.home
    sys.path.insert(0, args.quality_dir)
    import run_eval  # the benchmark's own scoring

    from kenning.engine import search
    from kenning.engine import vectors as vector_module
    from kenning.engine.embedder import load_embedder
    from kenning.engine.workspace import Index

    corpus = Path(args.corpus)
    targets = [
        json.loads(line) for line in (corpus / "targets.jsonl").read_text().splitlines() if line
    ]
    embedder = load_embedder()
    index = Index((corpus / "workspace").resolve(), embedder=embedder)
    vectors = {t["id"]: embedder.embed_query(t["query"]) for t in targets}
    langs = sorted({t["lang"] for t in targets})
    nearest = index.vectors.nearest
    for setting, margin in itertools.product(args.grid, args.name_margins):
        power, kind, name = (float(x) for x in setting.split(":"))
        search.SIZE_PRIOR_POWER, search.TYPE_PRIOR, search.NAME_BONUS = power, kind, name
        if margin == "off":
            index.vectors.nearest = functools.partial(code_only, nearest)  # type: ignore[method-assign]
        else:
            index.vectors.nearest = nearest  # type: ignore[method-assign]
            vector_module.NAME_MARGIN = float(margin)
        out: dict[str, object] = {
            "size_power": power,
            "type_prior": kind,
            "name_bonus": name,
            "name_margin": margin,
        }
        for mode in args.modes.split(","):
            ranks = {}
            for t in targets:
                hits = index.searcher.search(
                    t["query"], vectors[t["id"]], 10, mode, space=embedder.space
                ).results
                rows = [
                    dict(path=h.path, start=h.start_line, end=h.end_line, symbol=h.symbol)
                    for h in hits
                ]
                ranks[t["id"]] = run_eval.first_hit_rank(rows, t)
            row = {}
            for lang in ["all", *langs]:
                rs = [ranks[t["id"]] for t in targets if lang == "all" or t["lang"] == lang]
                row[lang] = [
                    round(sum(1 / r for r in rs if r) / len(rs), 3),
                    round(sum(1 for r in rs if r) / len(rs), 3),
                ]
            out[mode] = row
        print(json.dumps(out), flush=True)
    index.close()


if __name__ == "__main__":
    main()
