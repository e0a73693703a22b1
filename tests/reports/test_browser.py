"""Both reports checked in a real browser (headless Chromium) at two window widths.

A copy of the report gets a small script that, once the page has loaded, measures the layout and writes the
result as JSON into the DOM; ``chromium --headless --dump-dom`` prints that DOM. Checked: no horizontal page
overflow, the voxelwise summary table needs no horizontal scrolling (its last column was cut off, issue 21),
every image decodes, and the first figure starts above the fold. Skipped when chromium is missing unless
``CLBP_REQUIRE_CHROMIUM`` is set (CI installs the Debian package ``chromium``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
import pytest
from nilearn.datasets import load_mni152_brain_mask

from clbp_bidsapp.io import atlases
from clbp_bidsapp.reports.group import write_group_report
from tests.reports.test_figures import make_participant_report
from tests.reports.test_group_report import _sphere, _voxelwise

WIDTHS = (1280, 800)
WINDOW_HEIGHT = 900

# Runs after every image has loaded (window "load"); the result is the text of <pre id="browser-check">.
CHECK_SCRIPT = """
<script>
window.addEventListener('load', function () {
  var doc = document.documentElement;
  var clipped = [];
  document.querySelectorAll('table').forEach(function (t) {
    var box = t.parentElement;
    if (t.scrollWidth > box.clientWidth + 1 || box.scrollWidth > box.clientWidth + 1) {
      clipped.push(t.id || t.rows[0].textContent.slice(0, 60));
    }
  });
  var sortedByMaxT = null;
  var summary = document.getElementById('summary');
  if (summary) {  // click "max |t|" twice (descending) and read the first row: the sorting script works
    var head = Array.prototype.find.call(summary.tHead.rows[0].cells, function (c) {
      return c.textContent === 'max |t|';
    });
    head.click();
    head.click();
    var first = summary.tBodies[0].rows[0];
    sortedByMaxT = [first.cells[0].textContent, first.cells[1].textContent];
  }
  var figure = document.querySelector('img');
  var result = {
    innerWidth: window.innerWidth,
    innerHeight: window.innerHeight,
    scrollWidth: doc.scrollWidth,
    images: document.images.length,
    broken: Array.from(document.images).filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
      .map(function (i) { return i.alt; }),
    firstFigureTop: figure ? figure.getBoundingClientRect().top + window.scrollY : null,
    clippedTables: clipped,
    sortedByMaxT: sortedByMaxT
  };
  var out = document.createElement('pre');
  out.id = 'browser-check';
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>
"""


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CLBP_REQUIRE_CHROMIUM"):
            pytest.fail("CLBP_REQUIRE_CHROMIUM is set but chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium not installed (Debian package `chromium`)")
    return path


def browser_check(report: Path, *, width: int, workdir: Path) -> dict:
    """Layout facts of ``report`` rendered by headless Chromium in a ``width`` x 900 px window."""
    page = workdir / f"checked-{width}-{report.name}"
    text = report.read_text()
    page.write_text(text.replace("</body>", CHECK_SCRIPT + "</body>", 1))
    done = subprocess.run(
        [
            chromium(),
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            f"--window-size={width},{WINDOW_HEIGHT}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=180,
    )
    match = re.search(r'<pre id="browser-check">(.*?)</pre>', done.stdout, re.S)
    assert match, f"the check script did not run: {done.stderr[-2000:]}"
    return json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<"))


def assert_reader_friendly(result: dict, *, width: int) -> None:
    assert result["innerWidth"] == width
    assert result["scrollWidth"] <= result["innerWidth"], f"page overflows horizontally at {width} px: {result}"
    assert not result["clippedTables"], f"tables cut off at {width} px: {result['clippedTables']}"
    assert result["images"] > 0 and not result["broken"], f"images that do not decode: {result['broken']}"
    assert result["firstFigureTop"] is not None and result["firstFigureTop"] < result["innerHeight"], (
        f"first figure below the fold at {width} px: {result}"
    )


LABELS = ("Left_Insular_Cortex", "Right_Thalamus", "Precuneous_Cortex", "Cingulate_Gyrus_anterior_division")
MAPS = ("alff", "falff", "reho", "vmhc", "dc") + tuple(f"fcz-seed{i:02d}Long" for i in range(20))
CONTRASTS = ("CLBPvsHC", "painvas", "paindurationmonths")


def make_study(out: Path) -> Path:
    """A group folder like a real study's: 25 maps x 3 contrasts (75 summary rows), two significant."""
    group = out / "group"
    group.mkdir(parents=True)
    mask_img = load_mni152_brain_mask(resolution=4)
    rng = np.random.default_rng(1)
    brain = np.asarray(mask_img.dataobj) > 0
    noise = np.where(brain, rng.normal(0, 1.0, mask_img.shape), 0.0).astype(np.float32)
    blobs = {
        ("alff", "CLBPvsHC"): ((-38, 14, 0), 7.0),
        ("fcz-seed03Long", "painvas"): ((6, -62, 40), -7.0),
    }
    for contrast in CONTRASTS:
        for index, name in enumerate(MAPS):
            centre, height = blobs.get((name, contrast), ((30, -20, 10), 0.0))
            t_map = noise + height * _sphere(mask_img, centre, 10)
            clusters = [
                {
                    "cluster": 1,
                    "sign": "+" if height >= 0 else "-",
                    "voxels": 120 + index,
                    "volume_mm3": 64 * (120 + index),
                    "peak_t": height or 3.9,
                    "peak_x": float(centre[0]),
                    "peak_y": float(centre[1]),
                    "peak_z": float(centre[2]),
                    "p_fwe_cluster": 0.001 if height else 0.3,
                    "p_fwe_peak": 0.01 if height else 0.5,
                    "p_tfce_fwe_peak": 0.004 if height else 0.4,
                    "harvard_oxford": LABELS[index % len(LABELS)],
                    "aal": "Cingulum_Ant_L",
                }
            ]
            _voxelwise(group, mask_img, name, contrast, t_map=t_map, clusters=clusters, significant=bool(height))
    _primary_family(group / "alff_contrast-CLBPvsHC_", mask_img)
    _connectome_and_ml(group, mask_img, rng)
    return out


def _primary_family(prefix: Path, mask_img) -> None:
    """alff CLBPvsHC is the primary family's map; its voxels with t > 7.5 also survive the family-wise FWE."""
    sidecar = Path(f"{prefix}stat-t_statmap.json")
    sidecar.write_text(json.dumps(json.loads(sidecar.read_text()) | {"Family": {"Name": "primary", "Maps": ["alff"]}}))
    t_map = np.asarray(nb.load(f"{prefix}stat-t_statmap.nii.gz").dataobj)
    family = np.where(t_map > 7.5, t_map, 0).astype(np.float32)
    nb.save(nb.Nifti1Image(family, mask_img.affine), f"{prefix}stat-t_desc-familyfwe05_statmap.nii.gz")


def _connectome_and_ml(group: Path, mask_img, rng) -> None:
    """A connectome on 24 Dosenbach regions (bundled centres) with two FWE-significant edges, and an ML weights
    map (two metrics): the figures of issue 21's second part, checked in the browser like the rest."""
    regions = list(atlases.region_centres("dosenbach160"))[:24]
    t = rng.normal(0, 1.5, (24, 24))
    t = (t + t.T) / 2
    t[0, 5] = t[5, 0] = 6.2
    t[3, 17] = t[17, 3] = -5.8
    np.fill_diagonal(t, np.nan)
    prefix = group / "atlas-dosenbach160_contrast-CLBPvsHC_"
    pd.DataFrame(t, index=pd.Index(regions, name="region"), columns=regions).to_csv(
        f"{prefix}stat-t_relmat.tsv", sep="\t", na_rep="n/a"
    )
    rows, cols = np.triu_indices(24, 1)
    edges = pd.DataFrame({"region_a": np.asarray(regions)[rows], "region_b": np.asarray(regions)[cols],
                          "t": t[rows, cols], "p_fwe": np.where(np.abs(t[rows, cols]) > 5, 0.01, 0.8)})  # fmt: skip
    edges.to_csv(f"{prefix}desc-edges_stats.tsv", sep="\t", index=False)
    weights = np.stack([0.4 * _sphere(mask_img, (-38, 14, 0), 12), -0.3 * _sphere(mask_img, (6, -62, 40), 12)], -1)
    stem = group / "features-roi_model-linearsvm_desc-mlweights_boldmap"
    nb.save(nb.Nifti1Image(weights.astype(np.float32), mask_img.affine), f"{stem}.nii.gz")
    Path(f"{stem}.json").write_text(json.dumps({"Volumes": ["alff", "reho"]}))
    pd.DataFrame({"task": ["classification"], "feature_set": ["roi"], "model": ["linear_svm"], "scheme": ["kfold"],
                  "balanced_accuracy": [0.71], "roc_auc": [0.77], "p_value": [0.02]}).to_csv(
        group / "desc-ml_summary.tsv", sep="\t", index=False)  # fmt: skip


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    out = make_study(tmp_path_factory.mktemp("study"))
    write_group_report(out, settings_summary={"n_permutations": 5000}, max_other_figures=2)
    return out


@pytest.mark.parametrize("width", WIDTHS)
def test_group_report_in_browser(study, tmp_path, width):
    result = browser_check(study / "group.html", width=width, workdir=tmp_path)
    assert_reader_friendly(result, width=width)
    # the header click sorted the rows by max |t|, largest first
    largest = max(
        (float(np.abs(nb.load(path).get_fdata()).max()), *re.match(r"(.+)_contrast-(.+)_stat-t", path.name).groups())
        for path in (study / "group").glob("*_stat-t_statmap.nii.gz")
    )
    assert result["sortedByMaxT"] == list(largest[1:])


def test_new_figures_are_in_the_checked_report(study):
    """The report checked in the browser holds the cluster views, the connectome on the brain and the weights."""
    text = (study / "group.html").read_text()
    assert text.count("<div class='cluster'>") == 2  # one significant cluster in each of the two significant maps
    assert "dosenbach160, contrast CLBPvsHC: significant edges on the brain" in text
    assert text.count("mean weight of the") >= 2
    assert "vox survive the family-wise FWE (black outline)" in text and "exploratory: FWE within this map" in text


def test_first_screen_shows_where_the_effects_are(study):
    text = (study / "group.html").read_text()
    first_image = text.index("<img")
    assert first_image < text.index("Summary of all maps")  # the figure comes before every table
    overview = text[text.index("id='overview'") : text.index("</figure>")]
    # the two significant map x contrast pairs are drawn, the 73 others are greyed tiles
    assert overview.count("<img") == 2
    assert "alff, CLBPvsHC" in overview and "fcz-seed03Long, painvas" in overview
    assert overview.count("no FWE cluster") == len(MAPS) * len(CONTRASTS) - 2


def test_summary_table_significant_first_and_sortable(study):
    text = (study / "group.html").read_text()
    summary = text[text.index("id='summary'") :]
    summary = summary[: summary.index("</table>")]
    rows = re.findall(r"<tr([^>]*)><td>([^<]*)</td><td>([^<]*)</td>", summary)
    assert len(rows) == len(MAPS) * len(CONTRASTS)
    assert [(m, c) for _, m, c in rows[:2]] == [("alff", "CLBPvsHC"), ("fcz-seed03Long", "painvas")]
    assert all("sig" in attrs for attrs, _, _ in rows[:2]) and not any("sig" in a for a, _, _ in rows[2:])
    assert "<table id='summary' class='sortable'>" in text
    scripts = re.findall(r"<script[^>]*>", text)
    assert scripts == ["<script>"]  # one inline script (sorting), nothing loaded from elsewhere
    assert not re.search(r"(src|href)=['\"]?https?:", text)


@pytest.mark.parametrize("width", WIDTHS)
def test_participant_report_in_browser(tmp_path, width):
    report = make_participant_report(tmp_path, qc_extra={"dof_bandpass": 23.5})
    assert_reader_friendly(browser_check(report, width=width, workdir=tmp_path), width=width)


VIEWER_CHECK = """
<script>
window.addEventListener('load', function () {
  setTimeout(function () {
    var drawn = Array.from(document.querySelectorAll('canvas')).filter(function (c) {
      var pixels = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      for (var i = 3; i < pixels.length; i += 4) { if (pixels[i] > 0) { return true; } }
      return false;
    }).length;
    var out = document.createElement('pre');
    out.id = 'browser-check';
    out.textContent = JSON.stringify({drawn: drawn});
    document.body.appendChild(out);
  }, 1000);
});
</script>
"""


def test_interactive_viewers_work_offline(study, tmp_path):
    text = (study / "group.html").read_text()
    links = re.findall(r"<a href='(group/viewer/[^']+)'>interactive viewer</a>", text)
    assert links == [
        "group/viewer/alff_contrast-CLBPvsHC_desc-fwe.html",
        "group/viewer/fcz-seed03Long_contrast-painvas_desc-fwe.html",
    ]
    first = (study / links[0]).read_text()
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", first)  # nothing fetched: scripts and sprites inline
    before = [(study / link).read_bytes() for link in links]
    write_group_report(study, settings_summary={"n_permutations": 5000}, max_other_figures=2)
    assert [(study / link).read_bytes() for link in links] == before  # deterministic (no random element id)
    page = tmp_path / "viewer.html"
    page.write_text(first.replace("</body>", VIEWER_CHECK + "</body>", 1))
    done = subprocess.run(
        [chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--window-size=1000,800",
         "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
        check=True, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    match = re.search(r'<pre id="browser-check">(.*?)</pre>', done.stdout, re.S)
    assert match and json.loads(match.group(1).replace("&quot;", '"'))["drawn"] >= 1  # the brain sprite was drawn


def test_no_effect_is_said_first(tmp_path):
    mask_img = load_mni152_brain_mask(resolution=4)
    (tmp_path / "group").mkdir()
    t_map = np.where(np.asarray(mask_img.dataobj) > 0, 1.0, 0.0)
    _voxelwise(tmp_path / "group", mask_img, "alff", "CLBPvsHC", t_map=t_map, clusters=[], significant=False)
    text = write_group_report(tmp_path, settings_summary={}).read_text()
    said = text.index("No map or contrast has a voxel with FWE p &lt; 0.05.")
    assert said < text.index("id='overview'") and "alff, CLBPvsHC: no FWE cluster" in text
    assert not (tmp_path / "group" / "viewer").exists()
