"""The documentation site: it builds with no warning, documents every option, and lists every file a run writes.

The outputs check runs the participant and group levels once on the shared small synthetic dataset
(--save-denoised, so group ICA runs) and requires that every file written matches a pattern of docs/outputs.md.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def load_hooks():
    spec = importlib.util.spec_from_file_location("clbp_docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hooks = load_hooks()


# -- (a) the site builds, strictly --------------------------------------------------------------------------------
def test_site_builds_with_warnings_as_errors(tmp_path):
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    for page in ("index", "usage", "outputs", "containers", "cli-reference", "methods"):
        path = site / "index.html" if page == "index" else site / page / "index.html"
        assert path.is_file(), page
    reference = (site / "cli-reference" / "index.html").read_text()
    assert "--fd-thresh" in reference and "denoise.fd_thresh" in reference
    assert not (site / "dev").exists(), "docs/dev (contributor notes) must stay out of the site"
    assert not (site / "hooks.py").exists()


def test_strict_build_fails_on_a_broken_link(tmp_path):
    """The check that guards the site can fail: a page with a broken relative link breaks the strict build."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# x\n\nSee [the readme](../README.md).\n")
    (tmp_path / "mkdocs.yml").write_text("site_name: t\nstrict: true\ndocs_dir: docs\n")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0 and "README.md" in done.stderr


# -- (b) every option is in the generated reference, with its setting's default -----------------------------------
def _entries(markdown: str) -> dict[str, str]:
    """Definition-list entries of the reference: first option string -> the entry's text."""
    entries = {}
    for block in markdown.split("\n\n"):
        match = re.match(r"`(-[^ ,`]+)", block)
        if match:
            entries.setdefault(match.group(1), block)
    return entries


def test_every_option_of_every_command_is_in_the_reference():
    from clbp_bidsapp.cli import docker, slurm
    from clbp_bidsapp.cli.parser import build_parser

    markdown = hooks.cli_reference_markdown()
    for parser in (build_parser(), docker.build_parser(), slurm.build_parser()):
        options = hooks.option_strings(parser)
        assert len(options) > 2
        for option in options:
            assert re.search(rf"`{re.escape(option)}\b", markdown) or f", {option}" in markdown, option


def test_reference_shows_the_settings_defaults_and_choices():
    from clbp_bidsapp.cli.parser import build_parser
    from clbp_bidsapp.config import Settings

    entries = _entries(hooks.cli_reference_markdown())
    parser = build_parser()
    checked = 0
    for action in parser._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction | argparse._VersionAction):
            continue
        entry = entries[action.option_strings[0]]
        if action.choices:
            for choice in action.choices:
                assert f"`{choice}`" in entry, (action.option_strings[0], choice)
        section, _, name = action.dest.partition(".")
        if not name or action.nargs == 0:
            continue
        value = getattr(getattr(Settings(), section), name)
        assert f"Setting: `{action.dest}`" in entry
        if value not in (None, (), ""):
            shown = " ".join(map(str, value)) if isinstance(value, tuple) else str(value)
            assert f"Default: `{shown}`" in entry, (action.option_strings[0], entry)
            checked += 1
    assert checked > 20
    # the parser's own "(default: ...)" is not repeated in the help text
    assert "(default:" not in hooks.cli_reference_markdown().split("## clbp-bidsapp-docker")[0].split("```")[2]


def test_methods_page_lists_every_reference_and_strategy():
    markdown = hooks.methods_markdown()
    citations = hooks.load_citations()
    for key, text in citations.items():
        assert f'<a id="{key}"></a>{text}' in markdown
        assert f"(#{key})" in markdown, f"{key} is cited by no strategy or method"
    for strategy in hooks.load_strategies():
        assert f"`{strategy['name']}`" in markdown
    assert {k for keys in hooks.METHOD_CITATIONS.values() for k in keys} <= set(citations)


# -- (c) every file a run writes is documented --------------------------------------------------------------------
PLACEHOLDERS = {
    "label": r"[A-Za-z0-9]+",
    "source": r"sub-[A-Za-z0-9]+(?:_(?:ses|task|acq|ce|rec|dir|run|echo|part)-[A-Za-z0-9]+)*",
    "space": r"space-[A-Za-z0-9]+(?:_res-[A-Za-z0-9]+)?",
    "run-id": r"[A-Za-z0-9-]+",
    "map": r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)?",
}
DEFAULT_PLACEHOLDER = r"[A-Za-z0-9]+"


def _pattern_regex(pattern: str, *, whole: bool = True) -> str:
    """``<source>_<space>_stat-{alff,falff}_boldmap.nii.gz`` -> a regular expression over relative paths."""
    out, i = "", 0
    while i < len(pattern):
        char = pattern[i]
        if char == "<":
            end = pattern.index(">", i)
            name = pattern[i + 1 : end]
            out += PLACEHOLDERS.get(name, DEFAULT_PLACEHOLDER)
            i = end + 1
        elif char == "{":
            end = pattern.index("}", i)
            out += "(?:" + "|".join(re.escape(p) for p in pattern[i + 1 : end].split(",")) + ")"
            i = end + 1
        elif char == "[":  # optional part, e.g. [ses-<label>/]
            end = pattern.index("]", i)
            out += "(?:" + _pattern_regex(pattern[i + 1 : end], whole=False) + ")?"
            i = end + 1
        elif char == "*":
            out += "[^/]*"
            i += 1
        else:
            out += re.escape(char)
            i += 1
    if whole and pattern.endswith("/"):  # a folder: everything in it
        out += ".+"
    return out


def documented_patterns(text: str) -> list[tuple[str, re.Pattern]]:
    """(pattern, regex) for the code spans of the first cell of every table row, with the section's folder."""
    folder = ""
    patterns = []
    for line in text.splitlines():
        if line.startswith("## "):
            spans = re.findall(r"`([^`]+)`", line)
            folder = spans[0] if spans else ""
            continue
        if not line.startswith("|") or line.startswith("| ---") or line.startswith("| file"):
            continue
        first_cell = line.split(" | ")[0]
        for span in re.findall(r"`([^`]+)`", first_cell):
            full = folder + span
            patterns.append((full, re.compile(_pattern_regex(full))))
    return patterns


def undocumented(files: list[str], patterns) -> list[str]:
    """Files matched by no pattern; a ``.json`` sidecar counts as documented when its data file is."""
    missing = []
    for name in files:
        candidates = [name]
        if name.endswith(".json"):
            stem = name[: -len(".json")]
            candidates += [stem + ".nii.gz", stem + ".tsv"]
        if not any(regex.fullmatch(c) for c in candidates for _, regex in patterns):
            missing.append(name)
    return missing


def test_pattern_matching_is_not_vacuous():
    patterns = documented_patterns((DOCS / "outputs.md").read_text())
    assert len(patterns) > 30
    prefix = "sub-01/ses-A/func/sub-01_ses-A_task-rest_run-1_space-MNI152NLin2009cAsym_res-2"
    assert undocumented([f"{prefix}_stat-alff_boldmap.nii.gz", f"{prefix}_stat-alff_boldmap.json"], patterns) == []
    assert undocumented(["sub-01/func/sub-01_task-rest_space-MNI_stat-reho_boldmap.nii.gz"], patterns) == []
    made_up = [
        f"{prefix}_stat-bogus_boldmap.nii.gz",
        f"{prefix}_stat-alff_boldmap.txt",
        "group/bogus.tsv",
        "sub-01/anat/sub-01_T1w.nii.gz",
        "logs/other.txt",
    ]
    assert undocumented(made_up, patterns) == made_up


@pytest.fixture(scope="module")
def full_run(small_dataset, tmp_path_factory):
    """Participant + group level on the shared 2 CLBP + 2 HC dataset with the cheapest settings that still write
    every kind of output: one seed, one atlas, two densities, one random network, degree centrality on an 8 mm
    grid, the denoised series (so group ICA runs), three kinds of group maps, few permutations. (Clinical
    correlations need 6 patients; their outputs are not exercised here.)"""
    root = tmp_path_factory.mktemp("docs-run")
    out, work = root / "out", root / "work"

    def cli(*args):
        if "participant" in args:  # the 30-volume test runs keep too few effective DOF for the default --min-dof
            args = (*args, "--min-dof", "0")
        command = [sys.executable, "-m", "clbp_bidsapp.cli", str(small_dataset.root), str(out), *args, "-w", str(work)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr
        return done

    cli("participant", "--nprocs", "2", "--save-denoised", "--seeds", "pcc", "--atlases", "dosenbach160",
        "--graph-sparsity", "0.1", "0.2", "0.1", "--graph-random-networks", "1", "--dc-resolution", "8")  # fmt: skip
    cli("group", "--n-permutations", "20", "--covariates", "--ica-components", "3", "--group-networks", "DefaultMode",
        "--group-metrics", "alff", "fcz", "dualreg")  # fmt: skip
    return sorted(
        str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.relative_to(out).parts[0] != "work"
    )


@pytest.mark.integration
def test_every_file_a_run_writes_is_in_outputs_md(full_run):
    files = full_run
    patterns = documented_patterns((DOCS / "outputs.md").read_text())
    for expected in ("group.html", "sub-01.html", "dataset_description.json", "logs/manifest.json"):
        assert expected in files
    assert any(f.startswith("group/ica/") for f in files), "group ICA ran"
    assert any(f.startswith("group/atlas-dosenbach160_contrast-") for f in files), "connectome statistics ran"
    assert any(f.endswith("_desc-denoised_bold.nii.gz") for f in files)
    for kind in ("alff", "fcz-pcc", "dualreg-DefaultMode", "groupica-DefaultMode"):
        assert f"group/{kind}_contrast-CLBPvsHC_stat-t_statmap.nii.gz" in files, kind
    missing = undocumented(files, patterns)
    assert missing == [], "written but not in docs/outputs.md:\n" + "\n".join(missing)


def test_optional_pages_join_the_nav_once_they_exist(tmp_path):
    nav = [{"Home": "index.md"}, {"Methods": [{"Group": "group-statistics.md"}, {"Cite": "methods.md"}]}]
    config = {"docs_dir": str(tmp_path), "nav": copy.deepcopy(nav)}
    assert hooks.on_config(config)["nav"] == nav  # the page does not exist yet: nav unchanged
    (tmp_path / "machine-learning.md").write_text("# ML\n")
    methods = hooks.on_config(config)["nav"][1]["Methods"]
    assert methods[1] == {"Machine learning": "machine-learning.md"}
    assert len(hooks.on_config(config)["nav"][1]["Methods"]) == 3, "added once"
