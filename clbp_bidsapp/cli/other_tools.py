"""Options of fMRIPrep and XCP-D that this app has no use for, as their users type them out of habit.

An option that changes nothing this app does (``--fs-license-file``: no FreeSurfer tool runs here) is accepted and
ignored, with a note on stderr saying so; one whose meaning this app cannot honour (``--output-spaces``: which
spaces fMRIPrep writes; ``--cifti-output``: CIFTI results) is refused with a one-line message that says why and
what to type instead (exit code 2), rather than the bare "unrecognised argument" of an unknown option.
docs/usage.md ("Options spelled as in fMRIPrep and XCP-D") lists both.
"""

from __future__ import annotations

import argparse

# option spellings -> (metavar or None for a flag, why it is ignored); the value is kept for the note only
IGNORED = {
    ("--fs-license-file", "--fs_license_file"): ("FILE", "this app runs no FreeSurfer tool and needs no license"),
}

# option spellings -> (nargs, why it is refused and what to do instead)
REFUSED = {
    ("--output-spaces", "--output_spaces"): (
        "*",
        "fMRIPrep's choice of the spaces it writes; this app reads one space fMRIPrep wrote: "
        "pass --space TEMPLATE[:res-N] (e.g. --space MNI152NLin2009cAsym:res-2)",
    ),
    ("--lower-bpf", "--lower_bpf", "--upper-bpf", "--upper_bpf"): (
        "?",
        "XCP-D's band-pass edges one at a time; this app takes both at once: pass --band-pass LOW HIGH "
        "(e.g. --band-pass 0.01 0.08)",
    ),
    ("-p", "--nuisance-regressors", "--nuisance_regressors"): (
        "?",
        "XCP-D's confound set; pass --strategy NAME (this app's sets and their columns are in docs/denoising.md: "
        "compare them with XCP-D's before relying on a name)",
    ),
    ("--cifti-output", "--cifti_output", "--cifti"): (
        "?",
        "this app analyses volumetric (NIfTI) series only and ignores CIFTI ones; drop the option",
    ),
}

IGNORED_DEST = "ignored_options"


class _Ignored(argparse.Action):
    """Record ``(option, value)`` in :data:`IGNORED_DEST`, for :func:`ignored_notes`; no setting changes."""

    def __call__(self, parser, namespace, values, option_string=None):
        recorded = [*getattr(namespace, self.dest, [])]
        setattr(namespace, self.dest, [*recorded, (option_string, values)])


class _Refused(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        raise argparse.ArgumentError(self, f"not an option of this app: {self.help.removeprefix('refused: ')}")


class _FileFormat(argparse.Action):
    """XCP-D's ``--file-format``: ``nifti`` is what this app does (ignored, with a note); ``cifti`` is refused."""

    def __call__(self, parser, namespace, values, option_string=None):
        if values == "cifti":
            raise argparse.ArgumentError(
                self, "cifti: this app analyses volumetric (NIfTI) series only; drop the option or pass nifti"
            )
        _Ignored.__call__(self, parser, namespace, values, option_string)


def add_other_tools_options(parser: argparse.ArgumentParser) -> None:
    """Add the fMRIPrep/XCP-D options this app ignores or refuses, in a help group of their own."""
    group = parser.add_argument_group(
        "Options of fMRIPrep and XCP-D (accepted and ignored, or refused with the reason)"
    )
    for spellings, (metavar, why) in IGNORED.items():
        group.add_argument(*spellings, dest=IGNORED_DEST, action=_Ignored, metavar=metavar,
                           default=argparse.SUPPRESS, help=f"ignored: {why}")  # fmt: skip
    group.add_argument("--file-format", "--file_format", dest=IGNORED_DEST, action=_FileFormat,
                       choices=("nifti", "cifti"), default=argparse.SUPPRESS,
                       help="ignored for nifti (what this app does); cifti is refused: volumes only")  # fmt: skip
    for spellings, (nargs, why) in REFUSED.items():
        group.add_argument(*spellings, dest=f"refused:{spellings[0]}", action=_Refused, nargs=nargs,
                           metavar="VALUE", default=argparse.SUPPRESS, help=f"refused: {why}")  # fmt: skip


def ignored_notes(values: dict) -> list[str]:
    """One note per ignored option the user typed (``values``: the parsed namespace as a dict)."""
    why = {spelling: reason for spellings, (_, reason) in IGNORED.items() for spelling in spellings}
    notes = []
    for option, value in values.get(IGNORED_DEST, []):
        reason = why.get(option, "this app writes NIfTI outputs only")
        notes.append(f"note: {option} {value} ignored: {reason}")
    return notes
