"""MkDocs hooks: pages generated at build time from the code itself, so they cannot drift from it.

- ``cli-reference.md``: every option of ``clbp-bidsapp`` (walked from ``clbp_bidsapp.cli.parser.build_parser()``,
  with the defaults of the settings dataclasses in ``clbp_bidsapp.config``), then the options of the
  ``clbp-bidsapp-docker`` and ``clbp-bidsapp-slurm`` wrappers.
- ``methods.md``: the confound strategies with their references and the full reference list, from
  ``clbp_bidsapp/data/strategies/*.yml`` and ``clbp_bidsapp/data/citations.yaml``.

Registered in ``mkdocs.yml`` (``hooks: [docs/hooks.py]``). The generator functions are importable without MkDocs
(tests/docs/test_docs.py uses them).
"""

from __future__ import annotations

import argparse
import re
from dataclasses import fields
from importlib import resources
from typing import Any

import yaml

CLI_REFERENCE = "cli-reference.md"
METHODS = "methods.md"

# "(default: ...)" at the end of a help text: the parser's own rendering of the default.
_HELP_DEFAULT = re.compile(r"\s*\(default: (?P<text>[^()]*(?:\([^()]*\)[^()]*)*)\)\s*$")


# -- command-line reference -------------------------------------------------------------------------------------
def config_default(dest: str) -> tuple[bool, Any]:
    """``(True, value)`` when ``dest`` is ``"<section>.<field>"`` of :class:`~clbp_bidsapp.config.Settings`."""
    from clbp_bidsapp.config import Settings

    section, _, name = dest.partition(".")
    if not name:
        return False, None
    section_obj = getattr(Settings(), section, None)
    if section_obj is None or name not in {f.name for f in fields(section_obj)}:
        return False, None
    return True, getattr(section_obj, name)


def field_check(dest: str):
    """The :class:`~clbp_bidsapp.config.Check` of a setting (what its value must be)."""
    from clbp_bidsapp.config import field_check as check

    return check(dest)


def _format_value(value: Any) -> str:
    if isinstance(value, tuple | list):
        return " ".join(str(v) for v in value)
    return str(value)


def _split_help(text: str | None) -> tuple[str, str | None]:
    """Help text without its trailing ``(default: ...)``, and that default's text."""
    text = " ".join((text or "").split())
    match = _HELP_DEFAULT.search(text)
    if not match:
        return text, None
    return text[: match.start()], match.group("text")


def _default_text(action: argparse.Action, help_default: str | None) -> str:
    """The default a user gets: the settings dataclass value, else the help's wording, else the parser's."""
    known, value = config_default(action.dest)
    if isinstance(action, argparse._StoreTrueAction):
        return "off"
    if isinstance(action, argparse._StoreConstAction | argparse._StoreFalseAction):  # a switch that turns a default off
        return f"off (without it, `{action.dest}` = `{_format_value(value)}`)" if known else "off"
    if known and value not in (None, (), {}, ""):
        return f"`{_format_value(value)}`"
    if help_default:
        return help_default
    if known and value in ((), "", {}):
        return "none"
    if action.default not in (None, "", argparse.SUPPRESS) and not isinstance(action.default, bool):
        return f"`{_format_value(action.default)}`"
    return "none"


def _invocation(action: argparse.Action) -> str:
    formatter = argparse.HelpFormatter(prog="clbp-bidsapp")
    return formatter._format_action_invocation(action)


def _sentence(text: str) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text if not text or text.endswith((".", "!", "?")) else text + "."


def parser_markdown(parser: argparse.ArgumentParser, *, level: int = 2) -> str:
    """Markdown listing every argument of ``parser`` by argument group: invocation, help, default, choices.

    Options stored into ``"<section>.<field>"`` without a metavar are shown with ``FIELD`` as their value name
    (argparse would show ``SECTION.FIELD``); ``parser`` is modified accordingly, so pass a fresh one.
    """
    for action in parser._actions:
        if (
            action.metavar is None
            and action.option_strings
            and "." in action.dest
            and action.nargs != 0
            and not action.choices
        ):
            action.metavar = action.dest.partition(".")[2].upper()
    hashes = "#" * level
    lines = [f"```\n{parser.format_usage().strip()}\n```", ""]
    if parser.description:
        lines += [parser.description, ""]
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if not isinstance(a, argparse._HelpAction)]
        if not actions:
            continue
        title = {"positional arguments": "Positional arguments", "options": "Options"}.get(
            group.title or "", group.title or "Options"
        )
        lines += [f"{hashes} {title}", ""]
        if group.description:
            lines += [group.description, ""]
        for action in actions:
            help_text, help_default = _split_help(action.help)
            if isinstance(action, argparse._VersionAction):
                help_text = help_text or "print the version and exit"
            lines.append(f"`{_invocation(action)}`")
            details = []
            if action.option_strings and not isinstance(action, argparse._VersionAction):
                details.append(f"Default: {_default_text(action, help_default)}.")
            if action.choices:
                details.append("Choices: " + ", ".join(f"`{c}`" for c in action.choices) + ".")
            if "." in action.dest and action.option_strings:
                if action.nargs != 0 and not action.choices and config_default(action.dest)[0]:
                    details.append(_sentence(f"Accepts: {field_check(action.dest).describe()}"))
                details.append(f"Setting: `{action.dest}`.")
            lines.append(f":   {' '.join([_sentence(help_text or '(no description)'), *details])}")
            lines.append("")
    if parser.epilog:
        lines += [parser.epilog, ""]
    return "\n".join(lines)


def option_strings(parser: argparse.ArgumentParser) -> list[str]:
    """Every option string (``--foo``, ``-w``) of ``parser``, except ``-h/--help``."""
    return [s for a in parser._actions if not isinstance(a, argparse._HelpAction) for s in a.option_strings]


def cli_reference_markdown() -> str:
    """The command-line reference page."""
    from clbp_bidsapp.cli import docker, slurm
    from clbp_bidsapp.cli.parser import build_parser

    parts = [
        "# Command-line reference",
        "",
        "Generated from the argument parser (`clbp_bidsapp.cli.parser.build_parser()`) when this site is built; "
        "defaults are those of the settings dataclasses (`clbp_bidsapp.config`), which every option overrides. "
        "Each option names its setting `section.field`; in a `--config-file` TOML file it is `field = value` "
        "under `[section]` (command-line options win). See [usage](usage.md) for how the pieces fit together.",
        "",
        "## clbp-bidsapp",
        "",
        parser_markdown(build_parser(), level=3),
        "## clbp-bidsapp-docker",
        "",
        "Runs the container with host paths (see [containers](containers.md)).",
        "",
        parser_markdown(docker.build_parser(), level=3),
        "## clbp-bidsapp-slurm",
        "",
        "Writes (and optionally submits) SLURM scripts (see [containers and clusters](containers.md#slurm)).",
        "",
        parser_markdown(slurm.build_parser(), level=3),
        "## clbp-bidsapp-verify",
        "",
        "```\nclbp-bidsapp-verify OUTPUT_DIR [--outputs-only]\n```",
        "",
        "Recomputes the SHA-256 of every output (and, unless `--outputs-only`, every input) recorded in "
        "`OUTPUT_DIR/logs/manifest.json` and lists differences; exit code 0 = identical, 1 = differences, "
        "2 = no manifest (see [outputs](outputs.md)).",
        "",
    ]
    return "\n".join(parts)


# -- methods and citations --------------------------------------------------------------------------------------
# Where each bundled reference is used (keys of citations.yaml). Strategies cite their own keys in their YAML.
METHOD_CITATIONS: dict[str, tuple[str, ...]] = {
    "Inputs and software": ("esteban2019", "gorgolewski2011", "abraham2014", "pedregosa2011"),
    "Framewise displacement censoring (scrubbing)": ("power2012",),
    "Confound regression and band-pass in one step": ("lindquist2019",),
    "Effective degrees of freedom of the denoised series (--min-dof)": ("worsley1995",),
    "Seed-based connectivity and anticorrelations": ("fox2005", "fox2009", "fox2012"),
    "ROI atlases": ("seitzman2020", "power2011", "dosenbach2010", "tzouriomazoyer2002", "desikan2006"),
    "Dual regression and group ICA": ("beckmann2009", "nickerson2017"),
    "Graph measures: random networks, small-worldness, modules, efficiency": (
        "maslov2002",
        "humphries2008",
        "blondel2008",
        "latora2001",
    ),
    "Partial correlation (shrinkage covariance)": ("ledoit2004",),
    "Permutation inference for the GLM": ("winkler2014",),
    "Tail approximation of FWE p": ("winkler2016faster",),
    "FWE across a family of maps (PALM -corrmod/-corrcon)": ("winkler2016npc",),
    "Sequential stopping of uncorrected permutation p": ("besag1991", "winkler2016faster"),
    "Threshold-free cluster enhancement": ("smith2009tfce",),
    "Network-Based Statistic": ("zalesky2010",),
    "ALFF and fALFF": ("zang2007", "zou2008"),
    "Regional homogeneity": ("zang2004",),
    "Voxel-mirrored homotopic connectivity": ("zuo2010",),
    "Degree centrality": ("buckner2009", "zuo2012"),
    "Freedman-Lane permutation of nuisance-adjusted models": ("freedman1983",),
    "False discovery rate": ("benjamini1995",),
    "Tangent-space connectomes": ("varoquaux2010tangent",),
    "Group ICA (CanICA)": ("varoquaux2010",),
    "Site harmonisation (ComBat) inside cross-validation folds": ("johnson2007", "fortin2018"),
    "Cerebral blood flow from arterial spin labelling (ASLPrep)": ("adebimpe2022",),
}


def load_citations() -> dict[str, str]:
    from clbp_bidsapp.io.citations import load_references

    return {key: reference.text for key, reference in load_references().items()}


def load_strategies() -> list[dict[str, Any]]:
    folder = resources.files("clbp_bidsapp.data").joinpath("strategies")
    items = sorted((p for p in folder.iterdir() if p.name.endswith((".yml", ".yaml"))), key=lambda p: p.name)
    return [yaml.safe_load(p.read_text(encoding="utf-8")) for p in items]


def _cite(keys, citations: dict[str, str]) -> str:
    return "; ".join(f"[{_short(citations[k])}](#{k})" for k in keys)


def _short(reference: str) -> str:
    """``Friston KJ, Williams S, ... (1996). Title`` -> ``Friston et al. 1996``."""
    authors, _, rest = reference.partition(" (")
    year = rest[:4]
    names = [a.strip() for a in authors.split(",") if a.strip() and a.strip() != "et al."]
    first = names[0].split()[0] if names else authors
    if len(names) == 1:
        return f"{first} {year}"
    if len(names) == 2:
        return f"{first} & {names[1].split()[0]} {year}"
    return f"{first} et al. {year}"


def methods_markdown() -> str:
    """The methods and citations page."""
    citations = load_citations()
    lines = [
        "# Methods and citations",
        "",
        "Generated when this site is built from the bundled data (`clbp_bidsapp/data/citations.yaml` and "
        "`clbp_bidsapp/data/strategies/*.yml`). The method pages explain each step: [denoising](denoising.md), "
        "[local metrics](local-metrics.md), [connectivity](connectivity.md), "
        "[group statistics](group-statistics.md). Every map's JSON sidecar names the strategy and its citation "
        "keys (`Denoising.StrategyCitations`), so a methods section can be written from the outputs alone.",
        "",
        "## Confound strategies (`--strategy`)",
        "",
    ]
    for strategy in load_strategies():
        keys = tuple(strategy.get("citations") or ())
        description = " ".join(str(strategy.get("description", "")).split())
        lines.append(f"`{strategy['name']}`")
        lines.append(f": {description}" + (f" References: {_cite(keys, citations)}." if keys else ""))
        lines.append("")
    lines += ["## Methods and their references", ""]
    for method, keys in METHOD_CITATIONS.items():
        lines.append(f"- {method}: {_cite(keys, citations)}")
    lines += ["", "## References", ""]
    for key in sorted(citations, key=lambda k: citations[k].lower()):
        lines.append(f'- <a id="{key}"></a>{citations[key]} <small>(`{key}`)</small>')
    lines.append("")
    return "\n".join(lines)


# -- MkDocs events ----------------------------------------------------------------------------------------------
# Pages being written in parallel: listed in the nav (after the named page) once they exist, so that the strict
# build neither fails on a nav entry without a file nor on a file missing from the nav.
OPTIONAL_PAGES = {"machine-learning.md": ("Machine learning", "group-statistics.md")}


def _nav_files(nav) -> list[str]:
    found = []
    for item in nav or []:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        found += _nav_files(value) if isinstance(value, list) else [value]
    return found


def _insert_after(nav, after: str, entry: dict) -> bool:
    for i, item in enumerate(nav):
        value = next(iter(item.values())) if isinstance(item, dict) else item
        if isinstance(value, list) and _insert_after(value, after, entry):
            return True
        if value == after:
            nav.insert(i + 1, entry)
            return True
    return False


def on_config(config):
    """Add the optional pages that exist to the nav."""
    from pathlib import Path

    for page, (title, after) in OPTIONAL_PAGES.items():
        exists = (Path(config["docs_dir"]) / page).is_file()
        if exists and page not in _nav_files(config["nav"]) and not _insert_after(config["nav"], after, {title: page}):
            config["nav"].append({title: page})
    return config


def on_files(files, config):
    """Add the generated pages to the site (they exist only in the build, never in the repository)."""
    from mkdocs.structure.files import File

    files.append(File.generated(config, CLI_REFERENCE, content=cli_reference_markdown()))
    files.append(File.generated(config, METHODS, content=methods_markdown()))
    return files
