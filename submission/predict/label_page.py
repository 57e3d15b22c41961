"""The lab report's "Label these cells" section: the asked cells at 256 px in a grid (several per row), one
button per class (named as a hematologist writes it) plus "unsure / not a white cell", a key for each that labels
the current cell and moves to the next, a progress bar, undo, labels kept across a reload (localStorage, keyed by
the report) and "Download labels.csv" (Split, Image, label, LabelID and how each cell was asked for). The model's
guess is not shown, so that it cannot sway the label (the check and the teaching need the labeller's own call).
Works from the file, offline: plain HTML and a few lines of JavaScript."""

import html
import json
import uuid

from submission.data.classes import display

SIZE = 256  # px on screen and in the embedded image
RESERVED = {"u": "unsure", "z": "undo"}


def class_keys(classes: list[str]) -> dict[str, str]:
    """A key per class: the first letter of its name not yet taken (u and z are reserved), else a digit."""
    keys, taken = {}, set(RESERVED)
    for c in classes:
        free = [ch for ch in c.lower() if ch.isalpha() and ch not in taken] + [d for d in "1234567890" if d not in taken]
        keys[c] = free[0]
        taken.add(free[0])
    return keys


def section(asked, images: list[str], thumbs: list[str], classes: list[str], split: str) -> str:
    """HTML of the section; `asked` has one row per asked cell (stratum, half, p_pick), images and thumbs
    (data URIs) in the same order."""
    keys = class_keys(classes)
    buttons = "".join(f'<button type="button" data-label="{html.escape(c)}">{html.escape(display(c))} <kbd>{keys[c]}</kbd>'
                      "</button>" for c in classes) + '<button type="button" data-label="unsure">unsure / not a white cell <kbd>u</kbd></button>'
    cells = []
    for i, (row, name, src) in enumerate(zip(asked.itertuples(), images, thumbs)):
        cells.append(f'<div class="lab-cell" id="lab-{i}" data-image="{html.escape(name)}" '
                     f'data-stratum="{html.escape(str(row.stratum))}" data-half="{row.half}" data-p="{row.p_pick:.6g}">'
                     f'<img src="{src}" width="{SIZE}" height="{SIZE}" alt="cell {i + 1}: {html.escape(name)}">'
                     f'<div><p class="lab-head">Cell {i + 1} of {len(images)} <small>{html.escape(name)}</small><br>'
                     f'<span class="lab-given"></span></p><div class="lab-buttons">{buttons}</div></div></div>')
    meta = {"split": split, "report": uuid.uuid4().hex, "keys": keys, "classes": classes}
    return (f'<section id="label"><h2>Label these cells ({len(images)})</h2><p class="note">Pick the class of each cell '
            "(click, or press its key for the highlighted cell, which then moves to the next; <kbd>u</kbd> unsure or "
            "not a white cell, <kbd>z</kbd> undo). The model's guess is not shown, so that it does not sway yours. "
            "Labels stay in this "
            "browser across a reload; download them when done and give the file to the kit: "
            f"<code>python ensemble.py --split {html.escape(split)} --labels labels.csv</code> checks the model; "
            f"<code>python infer.py --split {html.escape(split)} --adapt all</code> then <code>python ensemble.py "
            f"--split {html.escape(split)} --labels labels.csv</code> also chooses its test-time treatment; "
            "<code>python train.py --labels labels.csv --init RUN</code> teaches it.</p>"
            f'<p class="lab-bar"><progress id="lab-progress" max="{len(images)}" value="0"></progress> '
            f'<b id="lab-count">0</b> of {len(images)} labelled '
            '<button type="button" id="lab-undo">Undo</button> <button type="button" id="lab-download">Download labels.csv</button></p>'
            '<div class="lab-grid">' + "".join(cells) + "</div>"
            f'<script type="application/json" id="lab-meta">{json.dumps(meta)}</script></section>')


CSS = """
.lab-grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(272px,1fr));gap:10px}
.lab-cell{border:2px solid #e6e9ee;border-radius:6px;padding:6px;background:#fff}
.lab-cell img{width:256px;height:256px;object-fit:contain;background:#fff;display:block}
.lab-cell.current{border-color:#4c78a8;box-shadow:0 0 0 2px #4c78a8}.lab-cell.done{opacity:.55}
.lab-head{margin:.2rem 0;font-size:.85rem}
.lab-buttons{display:flex;flex-wrap:wrap;gap:3px}
.lab-buttons button{font-size:.72rem;padding:3px 5px;cursor:pointer}
#lab-progress{width:12rem;vertical-align:middle}
.lab-buttons button.on{background:#4c78a8;color:#fff}
.lab-bar{position:sticky;top:0;background:#fafbfc;padding:6px 0;z-index:2}
.lab-given{font-weight:600;color:#2f6b2f}
kbd{border:1px solid #bbb;border-radius:3px;padding:0 4px;font-size:.8em}
"""

JS = """
(function(){
  var meta=document.getElementById('lab-meta');if(!meta)return;meta=JSON.parse(meta.textContent);
  var store='wbc-labels:'+meta.report, cells=Array.prototype.slice.call(document.querySelectorAll('.lab-cell'));
  var state=JSON.parse(localStorage.getItem(store)||'{"labels":{},"order":[]}');
  var byKey={};Object.keys(meta.keys).forEach(function(c){byKey[meta.keys[c]]=c;});byKey.u='unsure';
  function save(){localStorage.setItem(store,JSON.stringify(state));}
  function current(){for(var i=0;i<cells.length;i++){if(!(cells[i].dataset.image in state.labels))return cells[i];}return null;}
  function show(){
    var cur=current();
    cells.forEach(function(c){var l=state.labels[c.dataset.image];c.classList.toggle('done',!!l);c.classList.toggle('current',c===cur);
      c.querySelector('.lab-given').textContent=l?('\\u2192 '+l):'';
      c.querySelectorAll('.lab-buttons button').forEach(function(b){b.classList.toggle('on',b.dataset.label===l);});});
    var n=Object.keys(state.labels).length;
    document.getElementById('lab-count').textContent=n;document.getElementById('lab-progress').value=n;
  }
  function give(cell,label){if(!cell)return;var im=cell.dataset.image;
    state.order=state.order.filter(function(x){return x!==im;});state.order.push(im);state.labels[im]=label;save();show();
    var cur=current();if(cur&&cur.getBoundingClientRect().top>window.innerHeight*0.6)cur.scrollIntoView({block:'center'});}
  function undo(){var im=state.order.pop();if(im!==undefined){delete state.labels[im];save();show();}}
  cells.forEach(function(c){c.querySelectorAll('.lab-buttons button').forEach(function(b){
    b.addEventListener('click',function(){give(c,b.dataset.label);});});});
  document.getElementById('lab-undo').addEventListener('click',undo);
  document.addEventListener('keydown',function(e){if(e.ctrlKey||e.metaKey||e.altKey)return;
    var k=e.key.toLowerCase();if(k==='z'){undo();e.preventDefault();return;}
    if(byKey[k]){give(current(),byKey[k]);e.preventDefault();}});
  function csv(){var q=function(v){v=String(v);return /[",\\n]/.test(v)?'"'+v.replace(/"/g,'""')+'"':v;};
    var lines=['Split,Image,label,LabelID,stratum,half,p_pick'];
    cells.forEach(function(c){var l=state.labels[c.dataset.image];if(!l)return;var id=meta.classes.indexOf(l);
      lines.push([meta.split,c.dataset.image,l,id<0?'':id,c.dataset.stratum,c.dataset.half,c.dataset.p].map(q).join(','));});
    return lines.join('\\n')+'\\n';}
  window.labelsCsv=csv;
  document.getElementById('lab-download').addEventListener('click',function(){
    var a=document.createElement('a');a.href=URL.createObjectURL(new Blob([csv()],{type:'text/csv'}));
    a.download='labels.csv';document.body.appendChild(a);a.click();a.remove();});
  show();
})();
"""
