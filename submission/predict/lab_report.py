"""The lab report: one self-contained HTML page per predicted split or folder, for a hematologist to look at
the cells rather than read a CSV, in a hematologist's words (what each number means, class names as a clinic writes
them). Summary (predicted class counts beside the sources' mix, the label-free
estimate with its measured error, the members' agreement, warnings), an uncertainty histogram, per-class
galleries (the most confident and the most uncertain cells, each with its top-2 classes), the uncertain
cells, and a table sortable by any column (also from the address: report.html#sort=-confidence).

Plain HTML, CSS and a few lines of JavaScript; thumbnails embedded as data URIs; nothing is fetched. Imports
neither torch nor OpenCV (Pillow reads the images)."""

import base64
import html
import io
import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from submission.data.files import atomic_path
from submission.data.classes import display
from submission.predict import label_page
from submission.predict.report_html import CSS, JS, PAGE

GALLERY = 6  # most confident and most uncertain cells shown per class
UNCERTAIN_LIST = 48  # uncertain cells listed, least confident first
THUMB = 96  # px


def thumbnail(path: Path, size: int = THUMB) -> str:
    """A JPEG data URI of the image, its longer side `size` px (a grey placeholder if it cannot be read)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=80)
    except OSError:
        buf = io.BytesIO()
        Image.new("RGB", (size, size), (200, 200, 200)).save(buf, format="JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def cell_table(mean: pd.DataFrame) -> pd.DataFrame:
    """Per cell: predicted class, its probability, the second class and its probability, entropy."""
    from submission.scoring.validators import softmax

    classes = list(mean.columns[1:])
    p = softmax(mean[classes].to_numpy(float))
    top = np.argsort(-p, 1)[:, :2]
    rows = np.arange(len(p))
    return pd.DataFrame({"image": mean["Image"].to_numpy(), "label": [classes[i] for i in top[:, 0]],
                         "confidence": p[rows, top[:, 0]], "second": [classes[i] for i in top[:, 1]],
                         "second_p": p[rows, top[:, 1]],
                         "entropy": -(p * np.log(np.clip(p, 1e-300, None))).sum(1)})


def gallery_picks(cells: pd.DataFrame, k: int = GALLERY) -> dict[str, tuple[list[int], list[int]]]:
    """Per predicted class (in class order): row positions of its k most confident cells and of its k most
    uncertain among the rest (each cell shown once)."""
    out = {}
    for label, rows in cells.groupby("label", sort=False):
        order = rows.sort_values("confidence", ascending=False, kind="stable").index.to_list()
        confident = order[:k]
        uncertain = [i for i in reversed(order) if i not in confident][:k]
        out[label] = ([cells.index.get_loc(i) for i in confident], [cells.index.get_loc(i) for i in uncertain])
    return out


def expected_images(cells: pd.DataFrame, min_confidence: float) -> int:
    """How many thumbnails the page embeds: the galleries plus the uncertain list."""
    picks = gallery_picks(cells)
    return sum(len(a) + len(b) for a, b in picks.values()) + min(int((cells["confidence"] < min_confidence).sum()),
                                                                  UNCERTAIN_LIST)


def _figure(src: str, row, note: str = "") -> str:
    name = html.escape(str(row.image))
    return (f'<figure><img src="{src}" alt="{name}" loading="lazy"><figcaption><b>{html.escape(display(row.label))}</b> '
            f'{row.confidence:.0%}<br>{html.escape(display(row.second))} {row.second_p:.0%}{note}<br><small>{name}</small>'
            "</figcaption></figure>")


PLAIN = ("<ul class=\"plain\"><li><b>Macro F1</b>: how often the model's class agrees with a hematologist's, "
         "averaged over the cell classes so that rare ones count as much as common ones (1: always, 0: never).</li>"
         "<li><b>Estimated</b> means without any labels, from the model alone; the ± is how far off such estimates "
         "were on labs with known answers (9 times in 10). <b>Checked</b> means measured on cells a person labelled."
         "</li><li><b>Probability</b>: how sure the model is of a cell's class. <b>Uncertainty</b>: 0 when it is sure "
         "of one class, 1 when every class looks equally likely to it.</li></ul>")


def _summary(cells: pd.DataFrame, classes: list[str], rec: dict, source_mix: dict | None) -> str:
    est = rec or {}
    if est.get("available"):
        head = (f'<p class="big">Estimated macro F1 <b>{est["macro_f1"]:.2f} ± {est["macro_f1_error"]:.2f}</b></p>'
                f'<p class="note">Label-free estimate ({html.escape(est["estimator"])}); 9 in 10 of '
                f'{html.escape(est["measured_on"])} were within the ±; guessing {est["constant"]:.2f} for every lab was '
                f'within ± {est["constant_error"]:.2f}.</p>')
    else:
        head = f'<p class="big">Estimated macro F1: not given</p><p class="note">{html.escape(est.get("why", ""))}</p>'
    if est.get("agreement") is not None:
        head += f'<p>The members agree on <b>{est["agreement"]:.0%}</b> of the cells.</p>'
    warns = "".join(f"<li>{html.escape(w)}</li>" for w in est.get("warnings", []))
    if warns:
        head += f'<ul class="warn">{warns}</ul>'
    counts = cells["label"].value_counts()
    per_class = {c: v for c, v in (est.get("per_class_f1") or {}).items() if v is not None}
    rows = []
    for c in classes:
        n = int(counts.get(c, 0))
        share = n / max(len(cells), 1)
        mix = f"{source_mix[c]:.1%}" if source_mix else "-"
        f1 = f"<td>{per_class[c]:.2f}</td>" if c in per_class else ("<td>-</td>" if per_class else "")
        rows.append(f'<tr><td><a href="#g-{_slug(c)}">{html.escape(display(c))}</a></td><td>{n}</td><td><span class="bar" '
                    f'style="width:{share * 100:.1f}%"></span>{share:.1%}</td><td>{mix}</td>{f1}</tr>')
    f1_head = "<th>estimated F1 of the class</th>" if per_class else ""
    # the lab's estimated class mix (est["class_mix"]) stays in the JSON until a study validates it (docs/trust.md)
    return (head + '<div class="wide"><table class="counts"><thead><tr><th>class</th><th>cells</th><th>share</th>'
            f"<th>share in the training data</th>{f1_head}</tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>")


def _histogram(uncertainty: np.ndarray, bins: int = 20) -> str:
    """An inline SVG histogram of the cells' uncertainty (entropy / log K: 0 sure, 1 no idea)."""
    counts, edges = np.histogram(uncertainty, bins=bins, range=(0, 1))
    w, h, top = 400, 120, max(int(counts.max()), 1)
    bars = "".join(f'<rect x="{i * w / bins + 1:.1f}" y="{h - c / top * h:.1f}" width="{w / bins - 2:.1f}" '
                   f'height="{c / top * h:.1f}"><title>uncertainty {edges[i]:.2f}-{edges[i + 1]:.2f}: {c} cells</title></rect>'
                   for i, c in enumerate(counts))
    return (f'<svg class="hist" viewBox="0 -4 {w} {h + 24}" role="img" aria-label="uncertainty histogram">{bars}'
            f'<text x="0" y="{h + 16}">0 (sure)</text><text x="{w}" y="{h + 16}" text-anchor="end">'
            '1 (no idea)</text></svg>')


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower())


def render(cells: pd.DataFrame, classes: list[str], paths: list[Path], rec: dict, title: str,
           source_mix: dict | None = None, min_confidence: float = 0.5, asked=None, checked=None, split="",
           treated: str = "") -> str:
    """The page: `cells` from cell_table, `paths[i]` the image file of cells row i; `asked` (rows with the cell
    index, stratum, half, p_pick) adds the labelling section, `checked` the check by a lab's labels, `treated` (HTML)
    the test-time treatment and why it was chosen."""
    thumbs: dict[int, str] = {}

    def thumb(i: int) -> str:
        if i not in thumbs:
            thumbs[i] = thumbnail(paths[i])
        return thumbs[i]

    galleries = []
    for label, (confident, uncertain) in sorted(gallery_picks(cells).items(), key=lambda kv: classes.index(kv[0])):
        n = int((cells["label"] == label).sum())
        figs = "".join(_figure(thumb(i), cells.iloc[i]) for i in confident)
        figs_u = "".join(_figure(thumb(i), cells.iloc[i]) for i in uncertain)
        galleries.append(f'<section class="gallery" id="g-{_slug(label)}" data-class="{html.escape(label)}">'
                         f"<h3>{html.escape(display(label))} <small>{n} cells</small></h3><h4>most confident</h4>"
                         f'<div class="cells">{figs}</div>' + (f'<h4>most uncertain</h4><div class="cells">{figs_u}</div>'
                                                               if figs_u else "") + "</section>")
    unsure = cells[cells["confidence"] < min_confidence].sort_values("confidence", kind="stable")
    listed = "".join(_figure(thumb(cells.index.get_loc(i)), row) for i, row in unsure.head(UNCERTAIN_LIST).iterrows())
    more = f"<p>{len(unsure) - UNCERTAIN_LIST} more in the table below.</p>" if len(unsure) > UNCERTAIN_LIST else ""
    unsure_of = cells["entropy"].to_numpy() / np.log(len(classes))
    body_rows = "".join(
        f'<tr><td>{html.escape(str(r.image))}</td><td>{html.escape(display(r.label))}</td><td data-v="{r.confidence:.6f}">'
        f'{r.confidence:.1%}</td><td>{html.escape(display(r.second))}</td><td data-v="{r.second_p:.6f}">{r.second_p:.1%}</td>'
        f'<td data-v="{u:.6f}">{u:.2f}</td></tr>' for r, u in zip(cells.itertuples(), unsure_of))
    labelling = "" if asked is None or not len(asked) else label_page.section(
        asked, [str(cells.iloc[i].image) for i in asked["cell"]], [thumbnail(paths[i], label_page.SIZE) for i in asked["cell"]],
        classes, split)
    return PAGE.format(
        title=html.escape(title), made=datetime.now().strftime("%Y-%m-%d %H:%M"), n=len(cells), labelling=labelling,
        summary=PLAIN + treated + _checked(checked) + _summary(cells, classes, rec, source_mix), histogram=_histogram(unsure_of),
        galleries="".join(galleries), n_unsure=len(unsure), min_conf=f"{min_confidence:.0%}",
        uncertain=(f'<div class="cells">{listed}</div>{more}' if len(unsure) else "<p>None.</p>"),
        rows=body_rows, css=CSS + label_page.CSS, js=JS + label_page.JS)


def _treated(treatment: str | None, choice: dict | None) -> str:
    """Which test-time treatment the predictions are under and, where the lab's labels chose it, why."""
    if not treatment:
        return ""
    from submission.methods.adapt import get

    text = f'<p class="note">Predicted under <b>{html.escape(treatment)}</b>: {html.escape(get(treatment).summary)}.'
    if choice:
        rows = "".join(f"<tr><td>{html.escape(r['candidate'])}</td><td>{r['macro_f1']:.2f}</td>"
                       f"<td>{r['vs_default']:+.2f} [{r['interval'][0]:+.2f}, {r['interval'][1]:+.2f}]</td></tr>"
                       for r in sorted(choice["candidates"], key=lambda r: -r["macro_f1"]))
        text += (f" Chosen by {choice['labels']} of the lab's labelled cells: {html.escape(choice['why'])}.</p>"
                 f"<table><tr><th>treatment</th><th>macro F1 on the labelled cells</th><th>difference to "
                 f"{html.escape(choice['default'])} (90% interval)</th></tr>{rows}</table>")
    else:
        text += "</p>"
    return text


def _checked(rec: dict | None) -> str:
    """The check by the lab's labels, first in the summary: it is measured, not estimated."""
    if not rec:
        return ""
    iv = lambda r: f"{r['macro_f1']:.2f} [{r['interval'][0]:.2f}, {r['interval'][1]:.2f}]"  # noqa: E731
    ppi, m = rec.get("prediction_powered"), rec.get("measured")
    held = (f" At {m['per_class']} labels per class such intervals held the truth on {m['labelled']['coverage']:.0%} "
            f"of the measured labs' points; the prediction-powered estimate{f' {iv(ppi)}' if ppi else ''} on "
            f"{m['ppi']['coverage']:.0%} (not for decisions).") if m else ""
    if not rec.get("interval_trusted", True):
        iv, held = (lambda r: f"{r['macro_f1']:.2f}"), " Too few labels for an interval (fewer than 3 per class)."  # noqa: E731
    return (f'<p class="big">Checked with <b>{rec["labels"]} labelled cells</b>: macro F1 <b>{iv(rec["labelled"])}</b> '
            "over the whole split</p>"
            f'<p class="note">{rec["level"]:.0%} interval; the labelled cells are weighted by their chance of being '
            f"asked for.{held} Per-class recall is in the JSON beside the predictions.</p>")


def source_mix_of(run_dirs: list[Path], classes: list[str]) -> dict | None:
    """The sources' class mix (mean over the sources of the first run that recorded one)."""
    for d in run_dirs:
        f = Path(d) / "class_mix.json"
        if f.is_file():
            mixes = json.loads(f.read_text())
            return dict(zip(classes, np.mean(list(mixes.values()), 0).tolist()))
    return None


def write_lab_report(dest: Path, mean: pd.DataFrame, target, rec: dict, files: list[Path], min_confidence: float,
                     asked=None, checked=None, treatment: str | None = None, choice: dict | None = None) -> int:
    """Write the page for the ensemble's mean logits on `target`; returns the number of thumbnails embedded."""
    cells = cell_table(mean)
    by_name = dict(zip(target.images, target.rel_paths))
    paths = [Path(target.data_root) / by_name[name] for name in cells["image"]]
    classes = list(mean.columns[1:])
    page = render(cells, classes, paths, rec, f"{target.name}: {len(cells)} cells, {len(files)} runs",
                  source_mix_of([f.parent for f in files], classes), min_confidence, asked, checked, target.name,
                  _treated(treatment, choice))
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    return page.count("<img ")
