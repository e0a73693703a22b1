"""Self-contained HTML reports: inline CSS, images embedded as data URIs, one small inline script (table
sorting, no network), opens offline."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1000px;
color:#222;line-height:1.4}h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ccc;margin-top:2em}
h3{font-size:1.05em}table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:3px 8px;
text-align:left}th{background:#f4f4f4}img{max-width:100%;display:block;margin:.5em 0}.warn{color:#a40000}
.muted{color:#666;font-size:.85em}th,td:last-child{overflow-wrap:anywhere}.scroll{overflow-x:auto;max-width:100%}
table.sortable th{cursor:pointer}table.sortable th:after{content:" \\2195";color:#aaa}tr.sig td{background:#fff1c2}
.tiles{display:flex;flex-wrap:wrap;align-items:flex-start;gap:4px;margin:.5em 0}.tile{width:300px;
border:1px solid #ccc;padding:2px;font-size:.8em}.tile img{margin:0}.tile.empty{width:auto;
background:#eee;color:#777;border-color:#ddd;font-size:.72em;padding:1px 4px}
.verdict{font-size:1.1em;padding:.4em .7em;border-left:6px solid #2a7d2a;background:#eef7ee}
.verdict.skipped{border-color:#a40000;background:#fbeaea}
.cluster{display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start;margin:.3em 0}.cluster img{margin:0}
"""

# Click a header of a ``table.sortable`` to sort its rows by that column (numbers numerically), again to reverse.
SORT_SCRIPT = """<script>
document.querySelectorAll('table.sortable').forEach(function (t) {
  var heads = t.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, i) {
    th.title = 'sort by this column';
    th.addEventListener('click', function () {
      var dir = th.dataset.dir === 'asc' ? -1 : 1;
      Array.prototype.forEach.call(heads, function (h) { delete h.dataset.dir; });
      th.dataset.dir = dir > 0 ? 'asc' : 'desc';
      var key = function (row) {
        var s = row.cells[i].textContent.trim(), n = parseFloat(s);
        return /^[-+]?[0-9.]/.test(s) && !isNaN(n) ? [0, n] : [1, s];
      };
      var rows = Array.prototype.slice.call(t.tBodies[0].rows);
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        return (x[0] - y[0]) || (x[1] < y[1] ? -dir : x[1] > y[1] ? dir : 0);
      });
      rows.forEach(function (r) { t.tBodies[0].appendChild(r); });
    });
  });
});
</script>"""


def image(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def table(
    rows: Mapping[str, object] | Sequence[Mapping[str, object]],
    *,
    table_id: str | None = None,
    sortable: bool = False,
    row_classes: Sequence[str] | None = None,
) -> str:
    """A two-column table from a mapping, or a table with one row per mapping (``sortable``: click a header;
    ``row_classes``: one CSS class per row, e.g. ``sig`` to highlight)."""
    if isinstance(rows, Mapping):
        body = "".join(
            f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in rows.items()
        )
        return f"<table>{body}</table>"
    rows = list(rows)
    if not rows:
        return "<p class='muted'>none</p>"
    head = "".join(f"<th>{_breakable(str(k))}</th>" for k in rows[0])
    classes = list(row_classes) if row_classes is not None else [""] * len(rows)
    body = "".join(
        (f"<tr class='{c}'>" if c else "<tr>")
        + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row.values())
        + "</tr>"
        for row, c in zip(rows, classes, strict=True)
    )
    attrs = (f" id='{table_id}'" if table_id else "") + (" class='sortable'" if sortable else "")
    return f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _breakable(name: str) -> str:
    """A column name, escaped, that may wrap after each underscore (``balanced_accuracy_ci_low``), not mid-word."""
    return "_<wbr>".join(html.escape(part) for part in name.split("_"))


def page(title: str, sections: Sequence[str], *, footer: str) -> str:
    script = SORT_SCRIPT if "class='sortable'" in "".join(sections) else ""
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{''.join(sections)}"
        f"<hr><p class='muted'>{html.escape(footer)}</p>{script}</body></html>\n"
    )


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
