/* html_assets.h: the CSS and JavaScript every HTML page of the report inlines.
 *
 * They are compiled in (the report must be self-contained, whatever directory
 * the binary runs from). The script of a feature page reads the page's JSON
 * (<script type="application/json" id="data">) and builds every view with
 * createElement / textContent, never innerHTML, so no dataset or LLM text is
 * ever parsed as markup. Test hooks: table#features with tr.feature rows
 * (data-i, data-id, data-score, data-density, data-max), th button[data-key],
 * input#filter, span#count, body[data-ready="1"] once the script has run.
 */
#ifndef AUTOINTERP_REPORT_HTML_ASSETS_H
#define AUTOINTERP_REPORT_HTML_ASSETS_H

/* Nothing may be fetched: no network, no file other than the page itself. */
#define HTML_CSP                                                                                   \
    "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "                  \
    "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n"

#define HTML_CSS                                                                                   \
    "body { font-family: sans-serif; margin: 1.5em; color: #222; max-width: 1400px; }\n"           \
    "h1 { font-size: 1.5em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }\n"          \
    "table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }\n"                    \
    "th, td { border: 1px solid #ddd; padding: 3px 6px; vertical-align: top; text-align: left; "   \
    "}\n"                                                                                          \
    "th { background: #f4f4f4; }\n"                                                                \
    "td.num { text-align: right; font-variant-numeric: tabular-nums; }\n"                          \
    "th button { font: inherit; font-weight: bold; border: none; background: none; cursor: "       \
    "pointer; padding: 0; }\n"                                                                     \
    "th button[aria-sort=ascending]::after { content: \" \\25B2\"; }\n"                            \
    "th button[aria-sort=descending]::after { content: \" \\25BC\"; }\n"                           \
    "tr.feature { cursor: pointer; } tr.feature:hover { background: #f7f7ff; } tr.open { "         \
    "background: #eef; }\n"                                                                        \
    "td.expl { max-width: 42em; }\n"                                                               \
    ".meta, .help, .note { color: #555; }\n"                                                       \
    ".fview h3 { margin: 0.2em 0; }\n"                                                             \
    "blockquote.explanation { margin: 0.4em 0; padding: 0.3em 0.8em; border-left: 4px solid "      \
    "#ff7f0e; background: #fff8f0; }\n"                                                            \
    ".window { margin: 0.35em 0; padding: 0.2em 0; border-bottom: 1px dotted #ddd; }\n"            \
    ".whead { font-size: 0.85em; color: #555; }\n"                                                 \
    ".tokens { font-family: monospace; white-space: pre-wrap; line-height: 1.7; }\n"               \
    ".tokens .label { display: inline-block; width: 6.5em; color: #888; font-family: sans-serif; " \
    "font-size: 0.8em; }\n"                                                                        \
    ".tok { border-radius: 2px; }\n"                                                               \
    "details.exchange { margin: 0.5em 0; }\n"                                                      \
    ".msg { margin: 0.3em 0 0.3em 1em; } .msg .role { font-weight: bold; font-size: 0.85em; "      \
    "color: #555; }\n"                                                                             \
    ".msg pre { white-space: pre-wrap; background: #f6f6f6; padding: 0.4em; margin: 0.1em 0; "     \
    "max-height: 30em; overflow: auto; }\n"                                                        \
    ".reply pre { background: #eef7ee; }\n"                                                        \
    "svg { max-width: 100%; height: auto; }\n"                                                     \
    ".plots { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }\n"

#define HTML_BROWSER_JS                                                                             \
    "\"use strict\";\n"                                                                             \
    "(function () {\n"                                                                              \
    "  var data = JSON.parse(document.getElementById(\"data\").textContent);\n"                     \
    "  var tbody = document.querySelector(\"#features tbody\");\n"                                  \
    "  var rows = Array.prototype.slice.call(tbody.querySelectorAll(\"tr.feature\"));\n"            \
    "  var filter = document.getElementById(\"filter\");\n"                                         \
    "  var count = document.getElementById(\"count\");\n"                                           \
    "  var sortKey = null, sortDir = 1;\n"                                                          \
    "  var SPLITS = [\"explain\", \"top\", \"random\", \"quantile\"];\n"                            \
    "\n"                                                                                            \
    "  function el(tag, cls, text) {\n"                                                             \
    "    var e = document.createElement(tag);\n"                                                    \
    "    if (cls) e.className = cls;\n"                                                             \
    "    if (text !== undefined && text !== null) e.textContent = String(text);\n"                  \
    "    return e;\n"                                                                               \
    "  }\n"                                                                                         \
    "  function fmt(v, d) { return v === null || v === undefined ? \"n/a\" : "                      \
    "Number(v).toFixed(d); }\n"                                                                     \
    "\n"                                                                                            \
    "  function closeAll() {\n"                                                                     \
    "    Array.prototype.slice.call(tbody.querySelectorAll(\"tr.detail\")).forEach(function (r) "   \
    "{ r.remove(); });\n"                                                                           \
    "    rows.forEach(function (r) { r.classList.remove(\"open\"); });\n"                           \
    "  }\n"                                                                                         \
    "\n"                                                                                            \
    "  function updateCount() {\n"                                                                  \
    "    var shown = rows.filter(function (r) { return !r.hidden; }).length;\n"                     \
    "    count.textContent = shown + \" of \" + rows.length + \" features\";\n"                     \
    "  }\n"                                                                                         \
    "\n"                                                                                            \
    "  function sortBy(key) {\n"                                                                    \
    "    closeAll();\n"                                                                             \
    "    sortDir = sortKey === key ? -sortDir : (key === \"id\" ? 1 : -1);\n"                       \
    "    sortKey = key;\n"                                                                          \
    "    var keyed = rows.map(function (r, k) {\n"                                                  \
    "      var v = parseFloat(r.getAttribute(\"data-\" + key));\n"                                  \
    "      return { r: r, v: isNaN(v) ? null : v, k: k };\n"                                        \
    "    });\n"                                                                                     \
    "    keyed.sort(function (a, b) {\n"                                                            \
    "      if (a.v === null && b.v === null) return a.k - b.k;\n"                                   \
    "      if (a.v === null) return 1;   /* missing values last, either direction */\n"             \
    "      if (b.v === null) return -1;\n"                                                          \
    "      return a.v === b.v ? a.k - b.k : (a.v < b.v ? -sortDir : sortDir);\n"                    \
    "    });\n"                                                                                     \
    "    rows = keyed.map(function (x) { return x.r; });\n"                                         \
    "    rows.forEach(function (r) { tbody.appendChild(r); });\n"                                   \
    "    document.querySelectorAll(\"th button\").forEach(function (b) {\n"                         \
    "      var k = b.getAttribute(\"data-key\");\n"                                                 \
    "      b.setAttribute(\"aria-sort\", k === key ? (sortDir > 0 ? \"ascending\" : "               \
    "\"descending\") : \"none\");\n"                                                                \
    "    });\n"                                                                                     \
    "  }\n"                                                                                         \
    "\n"                                                                                            \
    "  function applyFilter() {\n"                                                                  \
    "    closeAll();\n"                                                                             \
    "    var q = filter.value.trim().toLowerCase();\n"                                              \
    "    rows.forEach(function (r) {\n"                                                             \
    "      var f = data.f[+r.getAttribute(\"data-i\")];\n"                                          \
    "      var x = (f.x || \"\").toLowerCase();\n"                                                  \
    "      r.hidden = q !== \"\" && x.indexOf(q) < 0;\n"                                            \
    "    });\n"                                                                                     \
    "    updateCount();\n"                                                                          \
    "  }\n"                                                                                         \
    "\n"                                                                                            \
    "  function tokenLine(win, values, scale, cls, label) {\n"                                      \
    "    var line = el(\"div\", \"tokens \" + cls);\n"                                              \
    "    line.appendChild(el(\"span\", \"label\", label));\n"                                       \
    "    for (var t = 0; t < win[2].length; t++) {\n"                                               \
    "      var s = el(\"span\", \"tok\", data.vocab[win[2][t]]);\n"                                 \
    "      var v = values ? values[t] : null;\n"                                                    \
    "      var a = v === null || !(scale > 0) ? 0 : Math.max(0, Math.min(1, v / scale));\n"         \
    "      s.style.backgroundColor = cls === \"pred\" ? \"rgba(31,119,180,\" + a.toFixed(3) + "     \
    "\")\"\n"                                                                                       \
    "                                               : \"rgba(255,127,14,\" + a.toFixed(3) + "       \
    "\")\";\n"                                                                                      \
    "      s.title = (cls === \"pred\" ? \"predicted \" : \"activation \") + (v === null ? "        \
    "\"n/a\" : v);\n"                                                                               \
    "      line.appendChild(s);\n"                                                                  \
    "    }\n"                                                                                       \
    "    return line;\n"                                                                            \
    "  }\n"                                                                                         \
    "\n"                                                                                            \
    "  function exchange(title, p) {\n"                                                             \
    "    var det = el(\"details\", \"exchange\");\n"                                                \
    "    det.appendChild(el(\"summary\", null, title + (p.model ? \" (model \" + p.model + \")\" "  \
    ": \"\")));\n"                                                                                  \
    "    p.msgs.forEach(function (m) {\n"                                                           \
    "      var box = el(\"div\", \"msg\");\n"                                                       \
    "      box.appendChild(el(\"div\", \"role\", m[0]));\n"                                         \
    "      box.appendChild(el(\"pre\", null, m[1]));\n"                                             \
    "      det.appendChild(box);\n"                                                                 \
    "    });\n"                                                                                     \
    "    var rep = el(\"div\", \"msg reply\");\n"                                                   \
    "    rep.appendChild(el(\"div\", \"role\", \"reply\"));\n"                                      \
    "    rep.appendChild(el(\"pre\", null, p.reply));\n"                                            \
    "    det.appendChild(rep);\n"                                                                   \
    "    return det;\n"                                                                             \
    "  }\n"                                                                                         \
    "\n"                                                                                            \
    "  function featureView(f) {\n"                                                                 \
    "    var box = el(\"div\", \"fview\");\n"                                                       \
    "    box.appendChild(el(\"h3\", null, \"Feature \" + f.id));\n"                                 \
    "    var ex = el(\"blockquote\", \"explanation\", f.x !== null ? f.x : \"(no "                  \
    "explanation)\");\n"                                                                            \
    "    box.appendChild(ex);\n"                                                                    \
    "    var status;\n"                                                                             \
    "    if (f.st === \"scored\") status = \"score \" + fmt(f.sc, 3);\n"                            \
    "    else if (f.st === \"no_score\") status = \"no score: \" + f.re + (f.de ? \" (\" + f.de "   \
    "+ \")\" : \"\");\n"                                                                            \
    "    else if (f.st === \"failed\") status = \"failed\" + (f.fs ? \" at \" + f.fs : \"\") + "    \
    "\": \" + f.re + (f.de ? \" (\" + f.de + \")\" : \"\");\n"                                      \
    "    else if (f.xs === \"failed\") status = \"explanation failed: \" + f.xr + (f.xd ? \" (\" "  \
    "+ f.xd + \")\" : \"\");\n"                                                                     \
    "    else status = \"not scored yet\";\n"                                                       \
    "    box.appendChild(el(\"p\", \"status\", status + \" · density \" + (f.d === null ? "        \
    "\"n/a\" : f.d) +\n"                                                                            \
    "                                      \" · max activation \" + (f.m === null ? \"n/a\" : "    \
    "f.m)));\n"                                                                                     \
    "    var scale = f.m;\n"                                                                        \
    "    if (!(scale > 0)) {\n"                                                                     \
    "      scale = 0;\n"                                                                            \
    "      f.w.forEach(function (w) { w[3].forEach(function (a) { if (a > scale) scale = a; }); "   \
    "});\n"                                                                                         \
    "    }\n"                                                                                       \
    "    var exp = f.w.filter(function (w) { return w[0] === 0; });\n"                              \
    "    var sc = f.w.filter(function (w) { return w[0] !== 0; });\n"                               \
    "    if (exp.length) {\n"                                                                       \
    "      box.appendChild(el(\"h4\", null, \"Explain windows (shown to the explainer)\"));\n"      \
    "      exp.forEach(function (w) {\n"                                                            \
    "        var win = el(\"div\", \"window\");\n"                                                  \
    "        win.appendChild(tokenLine(w, w[3], scale, \"act\", \"#\" + w[1]));\n"                  \
    "        box.appendChild(win);\n"                                                               \
    "      });\n"                                                                                   \
    "    }\n"                                                                                       \
    "    if (sc.length) {\n"                                                                        \
    "      box.appendChild(el(\"h4\", null, \"Scored windows: true activation and "                 \
    "simulation\"));\n"                                                                             \
    "      sc.forEach(function (w) {\n"                                                             \
    "        var win = el(\"div\", \"window\");\n"                                                  \
    "        var head = SPLITS[w[0]] + (w[1] >= 0 ? \" #\" + w[1] : \"\") +\n"                      \
    "                   (w[5] !== null ? \" · r = \" + fmt(w[5], 3) : \"\") + (w[6] ? \" · \" + " \
    "w[6] : \"\");\n"                                                                               \
    "        win.appendChild(el(\"div\", \"whead\", head));\n"                                      \
    "        win.appendChild(tokenLine(w, w[3], scale, \"act\", \"truth\"));\n"                     \
    "        win.appendChild(tokenLine(w, w[4], 10, \"pred\", \"simulated\"));\n"                   \
    "        if (w[7]) win.appendChild(exchange(\"Simulator prompt and reply\", w[7]));\n"          \
    "        box.appendChild(win);\n"                                                               \
    "      });\n"                                                                                   \
    "    }\n"                                                                                       \
    "    if (f.p) box.appendChild(exchange(\"Explainer prompt and reply\", f.p));\n"                \
    "    else if (f.prov === \"builtin\")\n"                                                        \
    "      box.appendChild(el(\"p\", \"note\", \"Builtin explainer: computed offline from the "     \
    "explain windows, no prompt.\"));\n"                                                            \
    "    else box.appendChild(el(\"p\", \"note\", \"Explainer prompt and reply: not in the LLM "    \
    "cache.\"));\n"                                                                                 \
    "    return box;\n"                                                                             \
    "  }\n"                                                                                         \
    "\n"                                                                                            \
    "  function toggle(r) {\n"                                                                      \
    "    var next = r.nextElementSibling;\n"                                                        \
    "    if (next && next.classList.contains(\"detail\")) {\n"                                      \
    "      next.remove();\n"                                                                        \
    "      r.classList.remove(\"open\");\n"                                                         \
    "      return;\n"                                                                               \
    "    }\n"                                                                                       \
    "    var d = el(\"tr\", \"detail\");\n"                                                         \
    "    var td = el(\"td\");\n"                                                                    \
    "    td.colSpan = 6;\n"                                                                         \
    "    td.appendChild(featureView(data.f[+r.getAttribute(\"data-i\")]));\n"                       \
    "    d.appendChild(td);\n"                                                                      \
    "    r.parentNode.insertBefore(d, r.nextSibling);\n"                                            \
    "    r.classList.add(\"open\");\n"                                                              \
    "  }\n"                                                                                         \
    "\n"                                                                                            \
    "  document.querySelectorAll(\"th button\").forEach(function (b) {\n"                           \
    "    b.addEventListener(\"click\", function () { sortBy(b.getAttribute(\"data-key\")); });\n"   \
    "  });\n"                                                                                       \
    "  rows.forEach(function (r) { r.addEventListener(\"click\", function () { toggle(r); }); "     \
    "});\n"                                                                                         \
    "  filter.addEventListener(\"input\", applyFilter);\n"                                          \
    "  updateCount();\n"                                                                            \
    "  document.body.setAttribute(\"data-ready\", \"1\");\n"                                        \
    "})();\n"

#endif
