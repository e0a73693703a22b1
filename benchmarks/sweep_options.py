"""The longer sweep of the option space (issue #20): drawn command lines of both levels, run end to end.

Each drawn command line (options of both levels, empty lists, --skip subsets, boundary values, a --config-file
written from drawn settings) runs the real CLI on a tiny dataset (2 + 2 participants, 4 mm, 30 volumes) until the
budget is spent, and is judged by :func:`clbp_bidsapp.testing.option_space.problems`: exit 0 with outputs, or a
documented code with one-line errors before any heavy work; never a traceback or a crash after the results.
Prints the combinations tried, outcomes by level and exit code, and every failure with its command line.

    .venv/bin/python benchmarks/sweep_options.py --budget-minutes 20 [--seed 0] [--keep DIR]

Exit status 1 when a failure was found (so a scheduled CI job can fail on it).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from hypothesis import Phase, given, seed, settings
from hypothesis import strategies as st

from clbp_bidsapp.cli.parser import build_parser
from clbp_bidsapp.cli.run import parse_settings
from clbp_bidsapp.testing import option_space
from clbp_bidsapp.testing.option_space import FAST_GROUP, FAST_PARTICIPANT, Paths
from clbp_bidsapp.testing.synthetic import make_dataset

PARTICIPANT_EXTRA: tuple[str, ...] = ("--min-dof", "0")  # tiny runs, not about the DOF rule (as in the CI test)
# participant-level runs cost ~30-60 s, group-level ones ~5-20 s: draw the group level more often
LEVEL_WEIGHTS = ("participant", "group", "group", "group")


class BudgetSpent(Exception):
    pass


def cli(bids: Path, out: Path, level: str, *options: str) -> subprocess.CompletedProcess:
    extra = PARTICIPANT_EXTRA if level == "participant" else ()
    return subprocess.run(
        [sys.executable, "-m", "clbp_bidsapp.cli", str(bids), str(out), level, *extra, *map(str, options)],
        capture_output=True,
        text=True,
        timeout=1800,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed (another seed, other combinations)")
    parser.add_argument("--keep", type=Path, help="work here and keep the outputs (default: a temporary folder)")
    args = parser.parse_args()
    deadline = time.monotonic() + args.budget_minutes * 60
    root = args.keep or Path(tempfile.mkdtemp(prefix="clbp-sweep-"))
    root.mkdir(parents=True, exist_ok=True)

    start = time.monotonic()
    bids = make_dataset(root / "bids", n_patients=2, n_controls=2, voxel_size=4, n_volumes=30, tr=2.0, seed=7).root
    scratch = root / "scratch"
    option_space.write_scratch_files(scratch)
    processed = root / "processed"
    first = cli(bids, processed, "participant", *FAST_PARTICIPANT, "-w", root / "work")
    if first.returncode != 0:
        print(first.stderr, file=sys.stderr)
        print("the participant level of the fixed fast settings failed; nothing to sweep", file=sys.stderr)
        return 1
    print(f"dataset and participant outputs: {time.monotonic() - start:.0f} s")
    paths = Paths(bids=bids, scratch=scratch)
    app = build_parser()
    fast_settings = {level: parse_settings([str(bids), str(processed), level, *fast])[0]
                     for level, fast in (("participant", FAST_PARTICIPANT), ("group", FAST_GROUP))}  # fmt: skip

    outcomes: collections.Counter = collections.Counter()
    failures: list[tuple[list[str], list[str]]] = []
    durations: dict[str, list[float]] = collections.defaultdict(list)

    @seed(args.seed)
    @settings(max_examples=10**6, deadline=None, database=None, phases=[Phase.generate])
    @given(
        level=st.sampled_from(LEVEL_WEIGHTS),
        words=option_space.option_words(app, option_space.setting_checks(app), paths, max_options=6),
        config=st.one_of(st.none(), option_space.config_overrides()),
    )
    def sweep(level, words, config):
        if time.monotonic() > deadline:
            raise BudgetSpent
        out = scratch / f"out-{uuid.uuid4().hex[:8]}"
        fast = FAST_GROUP if level == "group" else FAST_PARTICIPANT
        options = list(words)
        if config is not None:  # the fast paths go into the config file, so the drawn values there win over them
            path = scratch / f"config-{uuid.uuid4().hex[:8]}.toml"
            path.write_text(fast_settings[level].replace(config).to_toml())
            options, fast = ["--config-file", str(path), *options], ()
        if level == "group":
            shutil.copytree(processed, out, ignore=shutil.ignore_patterns("work"))
        else:
            fast = (*fast, "-w", str(out.with_name(out.name + "-work")))
        before = option_space.count_heavy(out, level)
        began = time.monotonic()
        result = cli(bids, out, level, *fast, *options)
        durations[level].append(time.monotonic() - began)
        outcomes[(level, result.returncode)] += 1
        found = option_space.problems(result, level=level, output_dir=out, heavy_before=before)
        if found:
            failures.append(([level, *fast, *options], found))
            print(f"FAILURE {level} {' '.join(options)}: {found}", flush=True)
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(out.with_name(out.name + "-work"), ignore_errors=True)

    with contextlib.suppress(BudgetSpent):  # the budget ends the sweep
        sweep()

    tried = sum(outcomes.values())
    print(f"\ncombinations tried: {tried} in {(time.monotonic() - start) / 60:.1f} min (seed {args.seed})")
    for level in option_space.LEVELS:
        codes = {code: n for (lvl, code), n in sorted(outcomes.items()) if lvl == level}
        times = durations[level]
        mean = f", mean {sum(times) / len(times):.0f} s per run" if times else ""
        print(f"  {level}: {sum(codes.values())} run(s); by exit code: {codes}{mean}")
    print(f"failures found: {len(failures)}")
    for argv, found in failures:
        print(f"  clbp-bidsapp BIDS OUT {' '.join(argv)}")
        for problem in found:
            print(f"      {problem}")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
