"""The nipype working folder: which folder may be one, what the app owns in it, and cleaning only that.

The app's graph lives in one subfolder of the working folder, ``clbp_wf`` (the base folder nipype gives the top
workflow of :func:`clbp_bidsapp.workflows.execution.run_graph`), with one folder per participant workflow inside
it. A marker file written before the graph first runs records that the app uses this folder and whether it
created it. ``--clean-workdir`` removes only the participant folders of the run that finished, then
``clbp_wf`` and the marker once nothing else is left in them, and the working folder itself only if the app
created it and it is empty. Nothing else in the working folder is ever touched, and symbolic links are never
followed (a link is not the app's and is left alone).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

from clbp_bidsapp.io.derivatives import input_overlap, write_json

LOGGER = logging.getLogger("clbp_bidsapp")

GRAPH_FOLDER = "clbp_wf"  # name of the top workflow in workflows/execution.py: nipype's folder for it
MARKER = ".clbp-bidsapp-work.json"
# what nipype writes next to the participant folders of a top workflow (its graph report, Workflow.run)
NIPYPE_REPORT_FILES = frozenset({"index.html", "d3.js", "graph1.json", "graph.json"})


def work_dir_problem(
    work_dir: Path,
    *,
    output_dir: Path,
    raw_dir: Path | None,
    derivative_inputs: Sequence[Path],
) -> str | None:
    """Why ``work_dir`` cannot be the working folder (``None`` if it can).

    Refused: a folder in the input (:func:`clbp_bidsapp.io.derivatives.input_overlap`); the output folder itself
    or a folder holding it; a folder inside the output folder other than its default ``OUTPUT_DIR/work``, whose
    files would be mistaken for outputs.
    """
    if work_dir.exists() and not work_dir.is_dir():
        return "is a file, not a folder; choose a folder (default: OUTPUT_DIR/work)"
    overlap = input_overlap(work_dir, raw_dir=raw_dir, derivative_inputs=derivative_inputs)
    if overlap:
        return f"{overlap}; the input is never written: choose a working folder outside it (default: OUTPUT_DIR/work)"
    work, out = work_dir.resolve(), output_dir.resolve()
    default = out / "work"
    if work == out or work in out.parents:
        what = "is" if work == out else "holds"
        return f"{what} the output folder {output_dir}; use OUTPUT_DIR/work (the default) or a folder outside it"
    if out in work.parents and not (work == default or default in work.parents):
        return f"is inside the output folder {output_dir}; use OUTPUT_DIR/work (the default) or a folder outside it"
    return None


def claim(work_dir: Path) -> None:
    """Create the working folder if needed and mark it as used by the app (before the graph writes to it)."""
    marker = work_dir / MARKER
    if marker.is_file():
        return
    created = not work_dir.exists()
    work_dir.mkdir(parents=True, exist_ok=True)
    write_json(marker, {"CreatedBy": "clbp-bidsapp", "GraphFolder": GRAPH_FOLDER, "CreatedWorkFolder": created})


def clean(work_dir: Path, graphs: Sequence[str]) -> list[Path]:
    """Remove what the app created for the participant workflows ``graphs``; return what was removed."""
    marker = work_dir / MARKER
    if not marker.is_file():
        LOGGER.warning("not cleaning %s: it has no %s marker of this app", work_dir, MARKER)
        return []
    graph = work_dir / GRAPH_FOLDER
    removed = []
    if graph.is_dir() and not graph.is_symlink():
        for name in graphs:
            folder = graph / name
            if folder.is_dir() and not folder.is_symlink():
                shutil.rmtree(folder)  # does not follow symbolic links inside (they are unlinked, not entered)
                removed.append(folder)
        rest = list(graph.iterdir())
        if all(p.name in NIPYPE_REPORT_FILES and p.is_file() and not p.is_symlink() for p in rest):
            for report_file in rest:  # no other run's participants left: nipype's report of the graph goes too
                report_file.unlink()
            if _remove_if_empty(graph):
                removed.append(graph)
    if graph.exists() or graph.is_symlink():
        return removed  # another run's participants are still there: keep the marker for their cleaning
    created = _created_folder(marker)
    marker.unlink()
    removed.append(marker)
    if created and _remove_if_empty(work_dir):
        removed.append(work_dir)
    return removed


def _created_folder(marker: Path) -> bool:
    try:
        return json.loads(marker.read_text()).get("CreatedWorkFolder") is True
    except (OSError, ValueError, AttributeError):
        return False


def _remove_if_empty(folder: Path) -> bool:
    with contextlib.suppress(OSError):
        folder.rmdir()  # fails on a folder that holds anything
        return True
    return False
