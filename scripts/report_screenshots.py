"""Screenshots of the group and participant reports' first screen, for docs/reports.md.

Builds both reports from the synthetic outputs of the browser tests (tests/reports/test_browser.py: 25 maps x 3
contrasts with two planted FWE-significant effects; tests/reports/test_figures.py: one run with three censored
volumes), renders them in headless Chromium at 1280 x 900 px and writes small PNGs.

Usage: .venv/bin/python scripts/report_screenshots.py [DOCS_IMG_DIR]   (default: docs/img; needs `chromium`)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clbp_bidsapp.reports.group import write_group_report  # noqa: E402
from tests.reports.test_browser import make_study  # noqa: E402
from tests.reports.test_figures import make_participant_report  # noqa: E402

WIDTH, HEIGHT, SHOWN_WIDTH = 1280, 900, 960


def screenshot(report: Path, png: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("chromium is not installed (Debian package `chromium`)")
    raw = png.with_suffix(".raw.png")
    subprocess.run(
        [chromium, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
         f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={raw}", report.as_uri()],
        check=True, capture_output=True, timeout=180,
    )  # fmt: skip
    with Image.open(raw) as image:
        shown = image.convert("RGB").resize((SHOWN_WIDTH, round(HEIGHT * SHOWN_WIDTH / WIDTH)), Image.LANCZOS)
        shown.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(png, optimize=True)
    raw.unlink()
    print(f"{png}: {png.stat().st_size // 1024} kB")


def main() -> None:
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "img"
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        study = make_study(Path(tmp) / "study")
        group = write_group_report(study, settings_summary={"n_permutations": 5000}, max_other_figures=2)
        screenshot(group, out_dir / "group-report.png")
        participant = make_participant_report(Path(tmp) / "participant", qc_extra={"dof_bandpass": 23.5})
        screenshot(participant, out_dir / "participant-report.png")


if __name__ == "__main__":
    main()
