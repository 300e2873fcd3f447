"""Fail when installing kenning would pull in torch or CUDA wheels.

The default model must install without torch: a package that depends on
sentence-transformers once made the install 6.3 GB, 5.7 GB of it unused.
Reads the JSON report of `pip install --dry-run --ignore-installed --report`.
"""

import json
import re
import sys

FORBIDDEN = re.compile(r"^(torch|torchvision|torchaudio|triton|sentence-transformers|nvidia-.*)$")


def main(report_path: str) -> int:
    with open(report_path, encoding="utf-8") as f:
        report = json.load(f)
    names = sorted(
        {item["metadata"]["name"].lower().replace("_", "-") for item in report.get("install", [])}
    )
    bad = [n for n in names if FORBIDDEN.match(n)]
    if bad:
        print(f"install guard: kenning's install would pull in {', '.join(bad)}", file=sys.stderr)
        return 1
    print(
        f"install guard: {len(names)} packages, none of torch, triton, nvidia-*, sentence-transformers"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
