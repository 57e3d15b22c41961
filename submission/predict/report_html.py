"""The lab report's page template, style and script (plain HTML, CSS and a few lines of JavaScript; nothing
fetched). submission/predict/lab_report.py fills it."""

CSS = """
:root{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2430;background:#fafbfc}
body{margin:0 auto;max-width:1100px;padding:12px 16px 40px}
h1{font-size:1.5rem;margin:.4rem 0}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #d8dde4}
h3{margin:.6rem 0 .2rem}h4{margin:.3rem 0;font-weight:500;color:#58606c}
.big{font-size:1.25rem;margin:.4rem 0}.note{color:#58606c;font-size:.9rem;margin:.2rem 0}
.warn{background:#fff4d6;border-left:4px solid #e0a800;padding:.5rem 1.6rem;margin:.6rem 0}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #e6e9ee}
th{position:sticky;top:0;background:#eef1f5}
#cells th{cursor:pointer;user-select:none}#cells th[aria-sort=ascending]::after{content:" \\25B2"}
#cells th[aria-sort=descending]::after{content:" \\25BC"}
.counts td:nth-child(3){min-width:9rem}
.bar{display:inline-block;height:.7rem;background:#4c78a8;margin-right:6px;vertical-align:middle;max-width:6rem}
.cells{display:flex;flex-wrap:wrap;gap:8px}
.plain{font-size:.9rem;color:#3a4350;margin:.3rem 0 .8rem;padding-left:1.2rem}
figure{margin:0;width:108px;font-size:.72rem;line-height:1.2}
figure img{width:96px;height:96px;object-fit:contain;background:#fff;border:1px solid #d8dde4;border-radius:4px}
figcaption{overflow-wrap:anywhere}figcaption small{color:#808893;word-break:break-all}
.hist{width:100%;max-width:520px;height:auto}.hist rect{fill:#4c78a8}.hist text{font-size:11px;fill:#58606c}
.gallery{border-top:1px dashed #d8dde4;padding-top:.3rem}
.scroll{max-height:70vh;overflow:auto}.wide{overflow-x:auto}
@media (max-width:600px){figure{width:84px}figure img{width:76px;height:76px}body{padding:8px}}
"""

JS = """
(function(){
  var table=document.getElementById('cells'), body=table.tBodies[0], heads=table.tHead.rows[0].cells;
  function value(row,i){var c=row.cells[i];return c.dataset.v!==undefined?parseFloat(c.dataset.v):c.textContent;}
  function sortBy(key,desc){
    var i=-1;for(var k=0;k<heads.length;k++){heads[k].removeAttribute('aria-sort');if(heads[k].dataset.key===key)i=k;}
    if(i<0)return;
    var rows=Array.prototype.slice.call(body.rows);
    rows.sort(function(a,b){var x=value(a,i),y=value(b,i);var r=(typeof x==='number')?x-y:String(x).localeCompare(String(y),undefined,{numeric:true});return desc?-r:r;});
    rows.forEach(function(r){body.appendChild(r);});
    heads[i].setAttribute('aria-sort',desc?'descending':'ascending');
  }
  function fromHash(){var m=/sort=(-?)([a-z_]+)/.exec(location.hash);if(m)sortBy(m[2],m[1]==='-');}
  for(var k=0;k<heads.length;k++){heads[k].addEventListener('click',function(){
    var key=this.dataset.key,desc=this.getAttribute('aria-sort')==='ascending';
    history.replaceState(null,'','#sort='+(desc?'-':'')+key);sortBy(key,desc);});}
  window.addEventListener("hashchange",fromHash);fromHash();
})();
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Lab report: {title}</title><style>{css}</style></head>
<body>
<header><h1>Lab report: {title}</h1><p class="note">Made {made} by the white-blood-cell adaptation kit. No labels
were used unless the summary says it was checked with a lab's labels: every other number here is the model's
own, or estimated without labels.</p></header>
<section id="summary"><h2>Summary</h2>{summary}</section>
{labelling}
<section id="uncertainty"><h2>How sure the model is</h2><p>The uncertainty of each of the {n} cells: the
further right, the less sure the model is of its class.</p>{histogram}</section>
<section id="galleries"><h2>Cells by predicted class</h2>{galleries}</section>
<section id="uncertain"><h2>Uncertain cells ({n_unsure}, top probability below {min_conf})</h2>{uncertain}</section>
<section id="table-section"><h2>Every cell</h2><p class="note">Click a column to sort; the address keeps the
order (e.g. #sort=-confidence).</p><div class="scroll"><table id="cells"><thead><tr><th data-key="image">image</th>
<th data-key="label">class</th><th data-key="confidence">probability</th><th data-key="second">second class</th>
<th data-key="second_p">its probability</th><th data-key="uncertainty">uncertainty</th></tr></thead><tbody>{rows}</tbody>
</table></div></section>
<script>{js}</script>
</body></html>
"""
