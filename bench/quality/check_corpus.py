"""A second quality set, built exactly as the dev benchmark is, from 14 other packages.

The dev benchmark (``../shared/quality``) decides; this set checks that what was tuned
there holds on code it has never seen. None of these packages is in the dev set, and
``requests`` (named in the held-out set's issue) is left out. Run it with the dev
benchmark's own tools and its venv (see ``../shared/quality/README.md``)::

    python bench/quality/check_corpus.py [--quality-dir ../shared/quality] [--out /tmp/kq-check]
    cd ../shared/quality && python run_eval.py --corpus /tmp/kq-check --cpus 2 --kenning kenning

Artifacts come from PyPI, npm and Debian bookworm like the dev set's; they are not
pinned by sha256 here (``--no-verify``): the versions are.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PACKAGES = [
    ("python", "click", "8.1.7", {"registry": "pypi", "pkgdir": "click"}),
    ("python", "marshmallow", "3.21.3", {"registry": "pypi", "pkgdir": "marshmallow"}),
    ("python", "more-itertools", "10.5.0", {"registry": "pypi", "pkgdir": "more_itertools"}),
    ("python", "python-dateutil", "2.9.0.post0", {"registry": "pypi", "pkgdir": "dateutil"}),
    (
        "javascript",
        "commander",
        "12.1.0",
        {"registry": "npm", "include": ["index.js", "lib/**.js"]},
    ),
    ("javascript", "express", "4.21.2", {"registry": "npm", "include": ["index.js", "lib/**.js"]}),
    *(
        (
            "go",
            name,
            version,
            {
                "registry": "debian",
                "deb": f"golang-github-{deb}-dev",
                "root": f"usr/share/gocode/src/github.com/{path}",
            },
        )
        for name, version, deb, path in [
            ("cobra", "1.6.1-1", "spf13-cobra", "spf13/cobra"),
            ("logrus", "1.9.0-1", "sirupsen-logrus", "sirupsen/logrus"),
            ("gin", "1.8.1-1", "gin-gonic-gin", "gin-gonic/gin"),
            ("cli", "1.22.9-2", "urfave-cli", "urfave/cli"),
        ]
    ),
    *(
        (
            "rust",
            name,
            version,
            {
                "registry": "debian",
                "deb": f"librust-{crate}-dev",
                "root": f"usr/share/cargo/registry/{crate}-{version.rsplit('-', 1)[0]}",
                "subdir": "src",
            },
        )
        for name, version, crate in [
            ("itertools", "0.10.3-1", "itertools"),
            ("bytes", "1.2.1-1", "bytes"),
            ("semver-rs", "1.0.14-1", "semver"),
            ("indexmap", "1.9.2-1", "indexmap"),
        ]
    ),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--quality-dir", default=str(Path(__file__).resolve().parents[3] / "shared" / "quality")
    )
    ap.add_argument("--out", default="/tmp/kq-check")
    ap.add_argument("--seed", default="kenning-check-1")
    args, rest = ap.parse_known_args()
    sys.path.insert(0, args.quality_dir)
    import build_corpus  # the dev benchmark's own builder

    build_corpus.PACKAGES = [
        dict(lang=lang, name=name, version=version, sha256=None, **extra)
        for lang, name, version, extra in PACKAGES
    ]
    sys.argv = [sys.argv[0], "--out", args.out, "--no-verify", "--seed", args.seed, *rest]
    build_corpus.main()


if __name__ == "__main__":
    main()
