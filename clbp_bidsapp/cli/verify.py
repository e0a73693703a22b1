"""``clbp-bidsapp-verify OUTPUT_DIR``: recompute the SHA-256 of every output (and input) in logs/manifest.json.

Exit codes: 0 every file matches; 1 some file is missing, changed or unrecorded (each is listed); 2 usage error
(no manifest in OUTPUT_DIR).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from clbp_bidsapp import messages
from clbp_bidsapp.errors import ExitCode
from clbp_bidsapp.io import manifest


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clbp-bidsapp-verify", description=__doc__.split("\n\n")[0], allow_abbrev=False
    )
    parser.add_argument("output_dir", type=Path, help="a clbp-bidsapp output folder")
    parser.add_argument("--outputs-only", action="store_true", help="do not re-hash the input files")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not (args.output_dir / "logs" / manifest.MANIFEST).is_file():
        messages.error(f"{args.output_dir}/logs/{manifest.MANIFEST} not found; is this a clbp-bidsapp output folder?")
        sys.exit(int(ExitCode.USAGE))
    problems = manifest.verify(args.output_dir, inputs=not args.outputs_only)
    for problem in problems:
        print(problem)
    if problems:
        messages.say(f"{len(problems)} difference(s) from {args.output_dir}/logs/{manifest.MANIFEST}")
        sys.exit(int(ExitCode.SOME_FAILED))
    messages.say(f"every file matches {args.output_dir}/logs/{manifest.MANIFEST}")
    sys.exit(int(ExitCode.OK))


if __name__ == "__main__":
    main()
