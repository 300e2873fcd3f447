"""The command line: argument parsing and printing only; the engine does the work.

stdout carries results (JSON only with ``--json``); logs and progress go to
stderr. A user error is one line on stderr and exit 1; bad usage exits 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kenning import __version__
from kenning.config import Settings, parse_settings
from kenning.engine.locks import describe
from kenning.errors import IndexBusyError, KenningError, UsageError
from kenning.lsp.args import add_arguments as lsp_arguments

log = logging.getLogger("kenning")

EPILOG = (
    "Docs: README.md. Environment: KENNING_HOME, KENNING_MODEL, KENNING_DEVICE, "
    "KENNING_REMOTE, KENNING_REMOTE_TOKEN, HF_HUB_OFFLINE."
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse's default prints the whole usage block; one line is enough.
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


# Argument types: nonsense is bad usage (exit 2, one line) before any work starts.


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, got {text}")
    return value


def _similarity(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    if not 0 < value <= 1:  # also false for nan
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def _language(text: str) -> str:
    from kenning.engine.languages import language_filter

    try:
        language_filter([text])
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _glob_type(filter_glob: bool = False) -> Callable[[str], str]:
    def parse(text: str) -> str:
        from kenning.engine.scan import check_glob, filter_spec

        try:
            if filter_glob:
                filter_spec([text], "")
            else:
                check_glob(text, "")
        except UsageError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    parse.__name__ = "glob"
    return parse


def _model_and_filters(p: argparse.ArgumentParser) -> None:
    """The options that choose the model and the files: every command that indexes."""
    p.add_argument(
        "--model", help="model id or folder (default: KENNING_MODEL or the embedded default)"
    )
    p.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], help="where to embed (default: auto)"
    )
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        type=_glob_type(),
        metavar="GLOB",
        help="leave out files matching GLOB (gitignore syntax); repeatable",
    )
    p.add_argument(
        "--include",
        action="append",
        default=[],
        type=_glob_type(),
        metavar="GLOB",
        help="index files matching GLOB even if ignored or vendored; repeatable",
    )


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--path",
        action="append",
        metavar="DIR",
        help="workspace root (default: the current folder); repeat for several roots",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    _model_and_filters(p)
    p.add_argument("-v", "--verbose", action="store_true", help="info and debug logs on stderr")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress, notes or warnings")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="kenning", description="Local semantic code search.", epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"kenning {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("index", help="bring the workspace index up to date")
    _common(p)
    p.add_argument(
        "--no-embed", action="store_true", help="chunk and index words only; embed later"
    )
    p.add_argument(
        "--wait",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="while another process indexes the workspace, wait this long for it "
        "to finish (default 10), then exit 1",
    )

    p = sub.add_parser("search", help="search the workspace by meaning and words")
    _common(p)
    p.add_argument("query", nargs="+", help="what you are looking for")
    p.add_argument("-k", type=_int_at_least(1), default=10, help="number of results (default 10)")
    p.add_argument(
        "--lang",
        action="append",
        type=_language,
        metavar="LANG",
        help="only this language (python, py, ts, go, ...); repeatable",
    )
    p.add_argument(
        "--glob",
        action="append",
        type=_glob_type(filter_glob=True),
        metavar="GLOB",
        help="only paths matching GLOB ({a,b} braces; !GLOB leaves out); repeatable",
    )
    p.add_argument("--mode", choices=["hybrid", "vector", "lexical"], default="hybrid")
    p.add_argument("--no-refresh", action="store_true", help="search the index as it is")
    p.add_argument(
        "--max-wait",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="seconds to spend embedding new code before answering (default 30); "
        "the rest is answered by words and embedded by the next run",
    )
    p.add_argument("--explain", action="store_true", help="show why each result scored as it did")
    _remote_args(p)

    p = sub.add_parser("similar", help="code most like the chunk at FILE:LINE")
    _common(p)
    p.add_argument("location", metavar="FILE:LINE")
    p.add_argument("-k", type=_int_at_least(1), default=10, help="number of results (default 10)")
    p.add_argument("--no-refresh", action="store_true", help="use the index as it is")
    _remote_args(p)

    p = sub.add_parser("status", help="what the index holds and how it performs")
    _common(p)
    p.add_argument("--skipped", action="store_true", help="list every skipped file with the reason")
    _remote_args(p)

    p = sub.add_parser("templates", help="the template library")
    tsub = p.add_subparsers(
        dest="templates_command", metavar="SUBCOMMAND", parser_class=_Parser, required=True
    )
    tp = tsub.add_parser("list", help="every template: built-in, user and workspace")
    _common(tp)
    tp.add_argument("--lang", type=_language, help="only templates for this language")
    tp = tsub.add_parser("match", help="the templates that fit the code at FILE:LINE")
    _common(tp)
    tp.add_argument("location", metavar="FILE:LINE")
    tp.add_argument("-k", type=_int_at_least(1), default=5, help="number of matches (default 5)")
    tp.add_argument("--no-refresh", action="store_true", help="use the index as it is")

    p = sub.add_parser("patterns", help="clusters of near-duplicate code, largest first")
    _common(p)
    p.add_argument(
        "--threshold", type=_similarity, help="similarity to count as a duplicate (default 0.85)"
    )
    p.add_argument(
        "--min-size",
        type=_int_at_least(2),
        default=2,
        help="smallest cluster to report (default 2)",
    )
    p.add_argument("--limit", type=_int_at_least(1), help="report at most this many clusters")
    p.add_argument(
        "--save-template",
        metavar="CLUSTER",
        help="write that cluster's canonical example to .kenning/templates/",
    )
    p.add_argument("--no-refresh", action="store_true", help="use the index as it is")

    p = sub.add_parser("duplicates", help="near-duplicates of the chunk at FILE:LINE")
    _common(p)
    p.add_argument("location", metavar="FILE:LINE")
    p.add_argument(
        "--threshold", type=_similarity, help="similarity to count as a duplicate (default 0.85)"
    )
    p.add_argument("--no-refresh", action="store_true", help="use the index as it is")

    p = sub.add_parser("models", help="the embedding model registry")
    msub = p.add_subparsers(
        dest="models_command", metavar="SUBCOMMAND", parser_class=_Parser, required=True
    )
    mp = msub.add_parser("list", help="known models and whether each is here")
    mp.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    mp.add_argument("-v", "--verbose", action="store_true", help="info and debug logs on stderr")
    mp.add_argument("-q", "--quiet", action="store_true", help="no warnings")
    mp = msub.add_parser("pull", help="download a model from the Hugging Face Hub")
    mp.add_argument("model_id", metavar="ID")
    mp.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    mp.add_argument("-v", "--verbose", action="store_true", help="info and debug logs on stderr")
    mp.add_argument("-q", "--quiet", action="store_true", help="no progress, notes or warnings")
    p = sub.add_parser("cluster", help="shard indexes built and served with Ray (extra: cluster)")
    csub = p.add_subparsers(
        dest="cluster_command", metavar="SUBCOMMAND", parser_class=_Parser, required=True
    )
    cp = csub.add_parser("build", help="build or update shard indexes of SOURCE folders")
    _common(cp)
    cp.add_argument("sources", nargs="+", metavar="SOURCE", help="a folder or git repository")
    cp.add_argument("--out", required=True, metavar="DIR", help="folder of the shards")
    cp.add_argument(
        "--shards", type=_int_at_least(1), required=True, metavar="N", help="number of shards"
    )
    cp.add_argument("--address", help="an existing Ray cluster (default: RAY_ADDRESS, else local)")
    cp.add_argument(
        "--workers",
        type=_int_at_least(1),
        metavar="N",
        help="embedding actors (default: per GPU, else one per two CPUs)",
    )
    cp = csub.add_parser("serve", help="serve shard indexes over HTTP with Ray Serve")
    cp.add_argument("dir", metavar="DIR", help="folder of the shards (from `cluster build`)")
    cp.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    cp.add_argument("--port", type=_int_at_least(1), default=8000, help="port (default 8000)")
    cp.add_argument(
        "--token-file",
        metavar="FILE",
        help="bearer token; made (mode 0600) when absent (default DIR/serve.token)",
    )
    cp.add_argument("--address", help="an existing Ray cluster (default: RAY_ADDRESS, else local)")
    cp.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate")
    cp.add_argument("--tls-key", metavar="FILE", help="the certificate's private key")
    cp.add_argument("-v", "--verbose", action="store_true", help="info and debug logs on stderr")
    cp.add_argument("-q", "--quiet", action="store_true", help="no progress or warnings")

    p = sub.add_parser("lsp", help="the language server on stdio (or a TCP socket)")
    lsp_arguments(p)

    p = sub.add_parser("mcp", help="an MCP server on stdio for coding agents")
    p.add_argument(
        "--path",
        action="append",
        metavar="DIR",
        help="workspace root when the client sends none (default: the current folder); "
        "repeat for several roots",
    )
    _model_and_filters(p)
    p.add_argument(
        "--no-watch",
        action="store_true",
        help="do not watch the files; the index is brought up to date when the server starts",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logs in the log file")
    _remote_args(p)
    return parser


def _remote_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--remote",
        action="append",
        metavar="URL",
        help="also search this `kenning cluster serve` endpoint (default: KENNING_REMOTE; "
        "token: KENNING_REMOTE_TOKEN); repeatable",
    )
    p.add_argument(
        "--remote-timeout",
        type=_seconds,
        default=2.0,
        metavar="SECONDS",
        help="answer without an endpoint that takes longer (default 2)",
    )


def _setup_logging(verbose: bool, quiet: bool) -> None:
    # INFO is how the work went (the device, the model's threads, deriving its
    # int8 weights): for -v. A user sees warnings, the notes below, and errors.
    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("kenning: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("kenning").setLevel(level)


def _settings(args: argparse.Namespace) -> Settings:
    wire: dict[str, Any] = {}
    if getattr(args, "model", None):
        wire["model"] = args.model
    device = getattr(args, "device", None) or os.environ.get("KENNING_DEVICE")
    if device:
        wire["device"] = device
    settings, problems = parse_settings(wire)
    if problems:
        raise UsageError(problems[0])
    settings.exclude += args.exclude
    settings.include += args.include
    return settings


def _roots(args: argparse.Namespace) -> list[Path]:
    paths = args.path or [os.getcwd()]
    return [Path(p) for p in dict.fromkeys(paths)]


def _embedder_factory(settings: Settings) -> Callable[[], Any]:
    def load() -> Any:
        from kenning.engine.embedder import load_embedder

        # No editor to leave a core for: a terminal run uses them all, unless
        # KENNING_THREADS says otherwise.
        threads = None if os.environ.get("KENNING_THREADS") else os.cpu_count()
        return load_embedder(settings.model, settings.device, threads)

    return load


@contextmanager
def _indexes(args: argparse.Namespace, embed: bool = True) -> Iterator[list[Any]]:
    from kenning.engine.workspace import Index

    settings = _settings(args)
    factory = _embedder_factory(settings) if embed else None
    opened: list[Any] = []
    try:
        for root in _roots(args):
            # A terminal run has the machine to itself: chunk on every core.
            # A damaged index is rebuilt; the engine says so in one warning line.
            index = Index(
                root,
                settings,
                embedder=factory,
                workers=os.cpu_count() or 1,
                owner=f"kenning {args.command}",
            )
            opened.append(index)
        yield opened
    finally:
        for index in opened:
            index.close()


class _ProgressBar:
    """A rich progress bar on stderr when it is a terminal; silent otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}
        self._labels: dict[str, str] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> _ProgressBar:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            from kenning.engine import embed, prepare

            self._progress = Progress(
                TextColumn("{task.description:<10}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.__enter__()
            self._labels = {prepare.STAGE: "reading", embed.STAGE: "embedding"}
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def update(self, stage: str, done: int, total: int) -> None:
        if self._progress is None or total <= 0:
            return
        with self._lock:
            task = self._tasks.get(stage)
            if task is None:
                label = self._labels.get(stage, stage)
                task = self._tasks[stage] = self._progress.add_task(label, total=total)
            self._progress.update(task, completed=done, total=total)


def _refresh(
    indexes: list[Any],
    args: argparse.Namespace,
    embed: bool = True,
    budget: float | None = None,
    wait: float = 0.0,
) -> list[Any]:
    """Refresh every index. Where another process is indexing one, wait up to
    ``wait`` seconds; then its report says so (``indexing_by``) and the
    command goes on with what that process has committed."""
    reports = []
    with _ProgressBar(not args.quiet) as bar:
        for index in indexes:
            holder = index.indexing_by() if wait > 0 else None
            if holder is not None:
                log.info("waiting up to %gs: %s is indexing %s", wait, describe(holder), index.root)
            reports.append(
                index.refresh(progress=bar.update, embed=embed, embed_budget_s=budget, wait_s=wait)
            )
    for report in reports:
        for err in report.errors[:20]:
            log.warning("skipped %s", err)
    return reports


def _note(args: argparse.Namespace, message: str) -> None:
    """Something the user should know about the answer (not a log line); -q silences it."""
    if not getattr(args, "quiet", False):
        sys.stderr.write(f"kenning: {message}\n")


def _out(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


# -- commands -----------------------------------------------------------------


def cmd_index(args: argparse.Namespace) -> int:
    with _indexes(args, embed=not args.no_embed) as indexes:
        reports = _refresh(indexes, args, embed=not args.no_embed, wait=args.wait)
    for index, r in zip(indexes, reports, strict=True):
        if r.indexing_by is not None:
            raise IndexBusyError(
                f"{index.root}: {describe(r.indexing_by)} is indexing it; it will finish "
                "the job (see `kenning status`), or run this again when it is done"
            )
    if args.json:
        if len(reports) == 1:
            _out(reports[0].to_json())
        else:
            _out(
                {
                    "roots": [
                        dict(r.to_json(), root=str(i.root))
                        for r, i in zip(reports, indexes, strict=True)
                    ]
                }
            )
        return 0
    for index, r in zip(indexes, reports, strict=True):
        print(
            f"{index.root}: {r.files} files, {r.chunks} chunks; {r.changed} changed, "
            f"{r.deleted} deleted, {r.skipped} skipped; embedded {r.embedded}, "
            f"from cache {r.cached}, pending {r.pending}; {r.took_s:.2f}s"
            + (f" [{r.model} on {r.device}]" if r.model else "")
        )
    return 0


def _print_hits(result: dict[str, Any], args: argparse.Namespace, explain: bool = False) -> None:
    if not result["results"]:
        print("no results")
    for hit in result["results"]:
        where = f"{hit['path']}:{hit['start_line']}-{hit['end_line']}"
        name = hit["symbol"] or hit["kind"]
        first = next((ln.strip() for ln in hit["snippet"].splitlines() if ln.strip()), "")
        print(f"{hit['score']:.3f}  {where}  {name}")
        print(f"       {first[:120]}")
        if explain and hit.get("explain"):
            parts = ", ".join(f"{k}={v}" for k, v in hit["explain"].items() if v is not None)
            print(f"       ({parts})")
    for note in result.get("notes", []):
        _note(args, note)


def _merge(results: Sequence[Any], k: int, query: str) -> dict[str, Any]:
    """One answer from several roots: best scores first, paths kept per root."""
    from kenning.engine.search import merge_results

    return _result_json(merge_results(results, k, query), len(results) > 1)


def _result_json(merged: Any, roots: bool) -> dict[str, Any]:
    out: dict[str, Any] = merged.to_json()
    for item, hit in zip(out["results"], merged.results, strict=True):
        if hit.root.startswith(("http://", "https://")):
            item["endpoint"] = hit.root
        elif roots:
            item["root"] = hit.root
    return out


def _remotes(args: argparse.Namespace) -> list[Any]:
    """The endpoints of ``--remote`` or KENNING_REMOTE; none without either."""
    if not args.remote and not os.environ.get("KENNING_REMOTE"):
        return []
    from kenning.engine.remote import from_env

    return from_env(args.remote, args.remote_timeout)


def cmd_search(args: argparse.Namespace) -> int:
    query = " ".join(args.query)
    embed = args.mode != "lexical"
    pending = 0
    with _indexes(args, embed=embed) as indexes:
        if not args.no_refresh:
            reports = _refresh(indexes, args, embed=embed, budget=args.max_wait)
            # Where another process is indexing, the search says so (a note) instead.
            busy = any(r.indexing_by for r in reports)
            pending = sum(r.pending for r in reports) if embed and not busy else 0
        remotes = _remotes(args)
        if remotes:
            from kenning.engine.searchable import LocalSearchable, search_all

            sources = [LocalSearchable(ix) for ix in indexes] + remotes
            answer = search_all(
                sources, query, args.k, args.mode, args.lang, args.glob, args.remote_timeout
            )
            merged = _result_json(answer, len(indexes) > 1)
        else:
            results = [ix.search(query, args.k, args.mode, args.lang, args.glob) for ix in indexes]
            merged = _merge(results, args.k, query)
    if pending:
        _note(
            args,
            f"{pending} chunks still to embed: results lean on words until "
            "`kenning index` finishes them",
        )
    if args.json:
        _out(merged)
        return 0
    if pending:
        # The note above says it with what to do about it; not twice.
        merged["notes"] = [n for n in merged.get("notes", []) if not n.startswith("embeddings ")]
    _print_hits(merged, args, args.explain)
    return 0


def cmd_similar(args: argparse.Namespace) -> int:
    with _indexes(args) as indexes:
        index = indexes[0]
        rel, line = index.resolve_location(args.location)
        if not args.no_refresh:
            _refresh(indexes, args)
        remotes = _remotes(args)
        if remotes:
            merged = _similar_remote(index, rel, line, args.k, remotes, args.remote_timeout)
        else:
            result = index.similar(rel, line, args.k)
            merged = _merge([result], args.k, result.query)
    if args.json:
        _out(merged)
    else:
        _print_hits(merged, args)
    return 0


def _similar_remote(
    index: Any, rel: str, line: int, k: int, remotes: list[Any], timeout_s: float
) -> dict[str, Any]:
    """The chunk at ``rel:line`` compared with the local index (itself left out)
    and, by its text, with every endpoint; the local copy of its repository wins."""
    from kenning.engine.searchable import LocalSearchable, fan_out, overlay

    local = LocalSearchable(index)
    code = index.chunk_at(rel, line).text

    def ask(source: Any) -> Any:
        if source is local:
            return local._tag(index.similar(rel, line, k))
        return source.similar(code, k)

    answers, notes = fan_out([local, *remotes], ask, timeout_s)
    merged = overlay(answers, k, answers[0][1].query)
    merged.mode = "vector"
    merged.notes = sorted(set(merged.notes) | set(notes))
    return _result_json(merged, False)


def cmd_status(args: argparse.Namespace) -> int:
    with _indexes(args, embed=False) as indexes:
        statuses = [ix.status(skipped_files=args.skipped) for ix in indexes]
    remotes = [r.status() for r in _remotes(args)]
    if remotes:
        for s in statuses:
            s["remotes"] = remotes
    if args.json:
        _out(statuses[0] if len(statuses) == 1 else {"roots": statuses, "remotes": remotes})
        return 0
    for r in remotes:
        if "remote" in r:
            rs = r["remote"]
            print(
                f"{r['url']}: ok in {r['last_ms']} ms; {rs.get('files')} files, "
                f"{rs.get('chunks')} chunks in {len(rs.get('shards') or [])} shards"
            )
        else:
            print(f"{r['url']}: {r['state']}: {r['error']}")
    for s in statuses:
        m = s["metrics"]
        print(f"{s['root']}")
        print(
            f"  files {s['files']}, chunks {s['chunks']}, embedded {s['embedded']}, "
            f"pending {s['pending']} ({s['complete']:.0%} complete)"
        )
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(s["skip_reasons"].items()))
        print(f"  skipped {s['skipped']}" + (f" ({reasons})" if reasons else ""))
        if s.get("indexing_by"):
            print(f"  being indexed now by {describe(s['indexing_by'])}")
        model = s["model"] or "-"
        if s["precision"]:
            model += f" ({s['precision']})"
        if s["device"]:
            model += f" on {s['device']}"
        if s["embedding_source"] == "planned":
            model += " (nothing embedded yet)"
        print(f"  model {model}; index {m['index_bytes'] / 1e6:.1f} MB at {s['index_path']}")
        if m["embedding"]:
            e = m["embedding"]
            print(f"  embedding {e['tokens_per_s']:.0f} tokens/s, {e['chunks_per_s']:.1f} chunks/s")
        if m["cache_hit_rate"] is not None:
            print(f"  cache hit rate {m['cache_hit_rate']:.0%} (last refresh)")
        if m["queries"]:
            print(
                f"  queries {m['queries']}: p50 {m['query_ms_p50']} ms, p95 {m['query_ms_p95']} ms"
            )
        if args.skipped:
            _print_skipped(s["skipped_files"])
    return 0


def _print_skipped(entries: list[dict[str, Any]]) -> None:
    if not entries:
        print("  no skipped files")
        return
    print("  skipped files:")
    width = max(len(e["reason"]) for e in entries)
    for e in entries:
        detail = f"  ({e['detail']})" if e.get("detail") else ""
        print(f"    {e['reason']:<{width}}  {e['path']}{detail}")


def cmd_templates(args: argparse.Namespace) -> int:
    if args.templates_command == "list":
        return _templates_list(args)
    with _indexes(args) as indexes:
        index = indexes[0]
        rel, line = index.resolve_location(args.location)
        if not args.no_refresh:
            _refresh(indexes, args)
        matches = index.match_templates(rel, line, args.k)
        problems = index.templates.problems
    for problem in problems:
        log.warning("%s", problem)
    if args.json:
        _out({"matches": [_match_json(m) for m in matches]})
        return 0
    if not matches:
        print("no template fits")
    for m in matches:
        print(f"{m.score:.3f}  {m.template.id}  {m.template.name}")
        print(f"       {m.why}")
    return 0


def _match_json(match: Any) -> dict[str, Any]:
    t = match.template
    return {
        "id": t.id,
        "name": t.name,
        "languages": list(t.languages),
        "score": round(match.score, 4),
        "why": match.why,
        "description": t.description,
        "source": t.source,
    }


def _templates_list(args: argparse.Namespace) -> int:
    from kenning.engine.templates import TemplateLibrary, normalize_language

    root = _roots(args)[0].resolve()
    library = TemplateLibrary(root if root.is_dir() else None)
    templates = library.templates()
    if args.lang:
        lang = normalize_language(args.lang)
        templates = [t for t in templates if lang in t.languages]
    for problem in library.problems:
        log.warning("%s", problem)
    if args.json:
        _out(
            {
                "templates": [
                    {
                        "id": t.id,
                        "name": t.name,
                        "languages": list(t.languages),
                        "description": t.description,
                        "source": t.source,
                    }
                    for t in templates
                ]
            }
        )
        return 0
    for t in templates:
        print(f"{t.id:<36} {', '.join(t.languages):<22} {t.name} [{t.source}]")
    return 0


def cmd_patterns(args: argparse.Namespace) -> int:
    with _indexes(args) as indexes:
        index = indexes[0]
        if not args.no_refresh:
            _refresh(indexes, args)
        report = index.patterns(args.threshold, args.min_size, args.limit)
        saved = (
            index.save_pattern_template(report, args.save_template) if args.save_template else None
        )
    if saved is not None:
        _note(args, f"saved {args.save_template} as a workspace template: {saved}")
    if args.json:
        out = report.to_json()
        if saved is not None:
            out["saved"] = str(saved)
        _out(out)
        return 0
    if not report.clusters:
        print(f"no near-duplicates among {report.chunks_compared} chunks")
    for c in report.clusters:
        canon = c["canonical"]
        print(
            f"{c['id']}: {c['size']} chunks ({', '.join(c['languages'])}); canonical "
            f"{canon['path']}:{canon['start_line']}-{canon['end_line']} {canon['symbol'] or ''}"
        )
        for m in c["members"][:10]:
            print(
                f"    {m['similarity']:.2f}  {m['path']}:{m['start_line']}-{m['end_line']} "
                f"{m['symbol'] or ''}"
            )
        if len(c["members"]) > 10:
            print(f"    ... and {len(c['members']) - 10} more")
    return 0


def cmd_duplicates(args: argparse.Namespace) -> int:
    from kenning.engine.duplicates import duplicates_once

    with _indexes(args) as indexes:
        index = indexes[0]
        rel, line = index.resolve_location(args.location)
        if not args.no_refresh:
            _refresh(indexes, args)
        threshold = args.threshold or index.settings.duplicates.threshold
        found = duplicates_once(index, rel, line, threshold)
    if args.json:
        _out(found.to_json())
        return 0
    if found.chunk is None:
        print(f"no near-duplicates of {rel}:{line} at similarity {threshold:.2f}")
    for hit in found.hits:
        print(
            f"{hit.score:.3f}  {hit.path}:{hit.start_line}-{hit.end_line}  {hit.symbol or hit.kind}"
        )
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from kenning.engine import models

    if args.models_command == "list":
        cards = models.list_cards()
        rows = [dict(card.to_json(), available=models.is_available(card.id)) for card in cards]
        if args.json:
            _out({"models": rows})
            return 0
        for row in rows:
            mark = "here" if row["available"] else "pull"
            default = " (default)" if row.get("default") else ""
            print(f"{row['id']:<36} {row['dims']:>4} dims  {row['suits']:<5} {mark}{default}")
        return 0
    if not args.quiet and not args.verbose:
        # A download is slow and asked for: say what is fetched and why.
        logging.getLogger(models.__name__).setLevel(logging.INFO)
    resolved = models.pull(args.model_id, None)
    if args.json:
        _out(
            {
                "id": resolved.card.id,
                "model": str(resolved.model_path),
                "tokenizer": str(resolved.tokenizer_path),
            }
        )
    else:
        print(f"{resolved.card.id}: ready at {resolved.model_path.parent}")
    return 0


def _need_ray() -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        raise UsageError("kenning cluster needs Ray: pip install 'kenning[cluster]'") from None


def cmd_cluster(args: argparse.Namespace) -> int:
    if args.cluster_command == "build":
        _need_ray()
        from kenning.cluster.build import build

        say = (lambda _m: None) if args.quiet else None
        summary = build(
            args.sources,
            Path(args.out),
            args.shards,
            settings=_settings(args),
            address=args.address,
            workers=args.workers,
            **({"say": say} if say else {}),
        )
        if args.json:
            _out(summary)
            return 0
        print(
            f"{args.out}: {summary['files']} files, {summary['chunks']} chunks in "
            f"{len(summary['shards'])} shards; {summary['changed']} changed, "
            f"{summary['deleted']} deleted; embedded {summary['embedded']}, from cache "
            f"{summary['cached']}; {summary['took_s']:.1f}s [{summary['model']} on {summary['device']}]"
        )
        for sh in summary["shards"]:
            print(f"  shard {sh['id']}: {sh['files']} files, {sh['chunks']} chunks")
        for err in summary["errors"][:20]:
            log.warning("skipped %s", err)
        return 0
    if bool(args.tls_cert) != bool(args.tls_key):
        raise UsageError("--tls-cert and --tls-key go together")
    _need_ray()
    from kenning.cluster.serve import run_serve

    return run_serve(
        Path(args.dir),
        args.host,
        args.port,
        Path(args.token_file).expanduser() if args.token_file else None,
        address=args.address,
        tls=(args.tls_cert, args.tls_key) if args.tls_cert else None,
    )


def cmd_lsp(args: argparse.Namespace) -> int:
    from kenning.lsp.main import run

    return run(args)


def cmd_mcp(args: argparse.Namespace) -> int:
    from kenning.mcp.server import run

    return run(args, _settings(args))


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "index": cmd_index,
    "search": cmd_search,
    "similar": cmd_similar,
    "status": cmd_status,
    "templates": cmd_templates,
    "patterns": cmd_patterns,
    "duplicates": cmd_duplicates,
    "models": cmd_models,
    "cluster": cmd_cluster,
    "lsp": cmd_lsp,
    "mcp": cmd_mcp,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help(sys.stderr)
        return 2
    _setup_logging(getattr(args, "verbose", False), getattr(args, "quiet", False))
    try:
        return COMMANDS[args.command](args)
    except KenningError as exc:
        sys.stderr.write(f"kenning: error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("kenning: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0
