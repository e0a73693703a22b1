"""Screenshots of the group and participant reports for docs/reports.md: the first screen of each, and a few
figures further down (a cluster view, the connectome plots, the ML weights, the motion trace and the carpet plot).

Builds both reports from the synthetic outputs of the tests (tests/reports/test_browser.py: 25 maps x 3 contrasts
with two planted FWE-significant effects, a Dosenbach connectome with two FWE-significant edges, an ML weights map;
tests/reports/test_report_figures_extra.py: one run with three censored volumes and GM/WM/CSF probsegs), renders them
in headless Chromium 1280 px wide and writes small PNGs. A figure further down is shown by cutting its part of the
report (between two markers) into a page of its own.

With ``--demo DEMO_DIR`` it instead shows the reports of the README demo (``bash scripts/demo.sh DEMO_DIR``): the first
screen of its group report and of its first participant's report, and the ROC curves and permutation null of the
group report's machine-learning section.

Usage: .venv/bin/python scripts/report_screenshots.py [--demo DEMO_DIR] [DOCS_IMG_DIR]
       (default DOCS_IMG_DIR: docs/img; needs `chromium`)
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clbp_bidsapp.reports import html  # noqa: E402
from clbp_bidsapp.reports.group import write_group_report  # noqa: E402
from tests.reports.test_browser import make_study  # noqa: E402
from tests.reports.test_report_figures_extra import make_tissue_report  # noqa: E402

WIDTH, HEIGHT, SHOWN_WIDTH = 1280, 900, 960


def screenshot(report: Path, png: Path, *, height: int = HEIGHT) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("chromium is not installed (Debian package `chromium`)")
    raw = png.with_suffix(".raw.png")
    subprocess.run(
        [chromium, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
         f"--window-size={WIDTH},{height}", f"--screenshot={raw}", report.as_uri()],
        check=True, capture_output=True, timeout=180,
    )  # fmt: skip
    with Image.open(raw) as image:
        shown = image.convert("RGB").resize((SHOWN_WIDTH, round(height * SHOWN_WIDTH / WIDTH)), Image.LANCZOS)
        shown.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(png, optimize=True)
    raw.unlink()
    print(f"{png}: {png.stat().st_size // 1024} kB")


def part(report: Path, start: str, end: str, page: Path) -> Path:
    """``page``: the part of ``report`` from the first ``start`` up to the next ``end`` (exclusive), alone."""
    text = report.read_text()
    first = text.index(start)
    page.write_text(html.page(report.name, [text[first : text.index(end, first + len(start))]], footer=""))
    return page


def demo_screenshots(demo: Path, out_dir: Path, pages: Path) -> None:
    """The README demo's reports: the group report's first screen and ML section, one participant's first screen."""
    out = demo / "out"
    if not (out / "group.html").is_file():
        sys.exit(f"{out / 'group.html'} not found: run `bash scripts/demo.sh {demo}` first")
    screenshot(out / "group.html", out_dir / "demo-group-report.png")
    ml = part(out / "group.html", '<img alt="ROC curves"', "<h3>Model weights", pages / "demo-ml.html")
    screenshot(ml, out_dir / "demo-group-ml.png", height=760)
    first = sorted(out.glob("sub-*.html"))[0]
    screenshot(first, out_dir / "demo-participant-report.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", nargs="?", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--demo", type=Path, help="folder of the README demo (scripts/demo.sh) to show instead")
    args = parser.parse_args()
    out_dir = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.demo is not None:
        with tempfile.TemporaryDirectory() as tmp:
            demo_screenshots(args.demo.resolve(), out_dir, Path(tmp))
        return
    with tempfile.TemporaryDirectory() as tmp:
        study = make_study(Path(tmp) / "study")
        group = write_group_report(study, settings_summary={"n_permutations": 5000}, max_other_figures=2)
        screenshot(group, out_dir / "group-report.png")
        pages = Path(tmp)
        cluster = part(group, "<div class='cluster'>", "<p>Clusters", pages / "cluster.html")
        screenshot(cluster, out_dir / "group-cluster.png", height=330)
        connectome = part(group, "<h3>atlas dosenbach160", "<h4>", pages / "connectome.html")
        screenshot(connectome, out_dir / "group-connectome.png", height=720)
        weights = part(group, "<h3>Model weights on the brain", "</body>", pages / "weights.html")
        screenshot(weights, out_dir / "group-mlweights.png", height=330)
        participant = make_tissue_report(pages / "participant", tissue=True, std_dvars=False)
        screenshot(participant, out_dir / "participant-report.png")
        quality = part(participant, "<h3>Motion and censoring", "<h3>QC numbers", pages / "quality.html")
        screenshot(quality, out_dir / "participant-quality.png", height=900)


if __name__ == "__main__":
    main()
