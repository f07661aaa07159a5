/* Report interactions: filter, sort and search; the SVG timeline with zoom, pan, hover, click.
 * Strings from the data reach the page only through textContent and setAttribute, never as
 * HTML. Lanes are virtualised: only the rows near the visible part of the list are drawn. */
function startReport(D) {
  "use strict";

  // Each VM's tasks come as columns, each start after the one before and a duration rather than
  // an end (view._task_columns): back to rows of [start, end|-1, method, outcome, fault, initiator, id].
  D.tasks = (D.tasks || []).map(function (cols) {
    var rows = [], at = 0;
    for (var n = 0; n < cols[0].length; n++) {
      at += cols[0][n];
      rows.push([at, cols[1][n] < 0 ? -1 : at + cols[1][n], cols[2][n], cols[3][n], cols[4][n], cols[5][n], cols[6][n]]);
    }
    return rows;
  });

  var byId = function (id) { return document.getElementById(id); };
  var S = D.strings || [];
  var str = function (i) { return i >= 0 && i < S.length ? S[i] : ""; };
  // the page's words in its language (analyzer/report/messages), and the causes' labels
  var M = JSON.parse(byId("messages").textContent);
  function word(key, values) {
    var s = M.text[key];
    if (s === undefined) return key;
    if (Array.isArray(s)) s = values && values.n === 1 ? s[0] : s[1];
    return s.replace(/\{(\w+)\}/g, function (all, name) {
      return values && name in values ? String(values[name]) : all;
    });
  }
  function label(group, value) {
    var words = M.labels[group] || {};
    return words[value] || String(value).replace("_", " ");
  }
  function unit(key, n) { return M.time[key].replace("{n}", n); }
  var CARD_LIMIT = 24;
  var HEALTH_ICON = { critical: "\u2716", warning: "\u25B2", healthy: "\u25CF", unknown: "?" };

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    for (var k in attrs || {}) node.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  var ACRONYMS = { vcenter: "vCenter", esxi: "ESXi", cbt: "CBT", nfc: "NFC", vddk: "VDDK", rdm: "RDM",
                   vm: "VM", vms: "VMs", id: "ID" };
  function humanize(id) {  // as view.humanize
    var words = String(id || "").replace(/_/g, " ").split(/\s+/).filter(Boolean).map(function (w) {
      return ACRONYMS[w.toLowerCase()] || w;
    });
    if (words.length && words[0] === words[0].toLowerCase()) words[0] = words[0].charAt(0).toUpperCase() + words[0].slice(1);
    return words.join(" ");
  }
  function causeTitle(id) { return (M.causes && M.causes[id]) || humanize(id); }
  function errorTitle(id) { return (D.titles && D.titles[id]) || humanize(id); }

  /* ------------------------------------------------------------------ time */
  var tzOffset = makeOffset(D.tz);  // function(ms) -> offset ms, or null when unknown

  function makeOffset(tz) {
    if (!tz) return null;
    var m = /^(?:UTC|GMT)?\s*([+-])(\d{1,2})(?::?(\d{2}))?$/i.exec(String(tz).trim());
    if (m) {
      var fixed = (m[1] === "-" ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3] || 0)) * 60000;
      return function () { return fixed; };
    }
    try {
      var f = new Intl.DateTimeFormat("en-US", { timeZone: tz, hourCycle: "h23", year: "numeric",
        month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" });
      return function (ms) {
        var p = {};
        f.formatToParts(new Date(ms)).forEach(function (x) { p[x.type] = x.value; });
        var wall = Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour % 24, +p.minute, +p.second);
        return wall - Math.floor(ms / 1000) * 1000;
      };
    } catch (e) {
      return null;
    }
  }
  function shiftMs(absMs) { return TL.local && tzOffset ? tzOffset(absMs) : 0; }
  function pad(n) { return n < 10 ? "0" + n : String(n); }
  function fmtTime(rel) {
    if (rel === null) return "\u2014";
    var ms = (D.t0 + rel) * 1000;
    var d = new Date(ms + shiftMs(ms));
    var clock = pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds());
    var zone = TL.local && tzOffset ? " (" + D.tz + ")" : null;
    if (M.lang === "ko")  // Korean order: 2024. 5. 14. 10:21:33 UTC
      return d.getUTCFullYear() + ". " + (d.getUTCMonth() + 1) + ". " + d.getUTCDate() + ". " + clock + (zone || " UTC");
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) + " " + clock + (zone || "Z");
  }
  function fmtDuration(sec) {
    if (sec === null || sec < 0) return "\u2014";
    sec = Math.round(sec);
    var d = Math.floor(sec / 86400), h = Math.floor(sec % 86400 / 3600);
    var m = Math.floor(sec % 3600 / 60), s = sec % 60;
    var parts = [];
    if (d) parts.push(unit("days", d));
    if (h) parts.push(unit("hours", h));
    if (m) parts.push(unit("minutes", m));
    if (s && !d) parts.push(unit("seconds", s));
    return parts.slice(0, 2).join(" ") || unit("seconds", 0);
  }
  function fmtBytes(n) {
    if (n === null || n < 0) return "\u2014";
    var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : String(n)) + " " + units[i];
  }

  /* ------------------------------------------------------------------ cards and filters */
  var cards = Array.prototype.map.call(document.querySelectorAll("article.card"), function (c) {
    return { el: c, vms: JSON.parse(c.dataset.vms || "[]"), errors: JSON.parse(c.dataset.errors || "[]"),
             causes: JSON.parse(c.dataset.causes || "[]") };
  });
  var cardById = {};
  cards.forEach(function (c) { cardById[c.el.id] = c; });
  var rowsByVm = {};
  var tbody = document.querySelector("#vm-table tbody");
  if (tbody) Array.prototype.forEach.call(tbody.rows, function (r) { rowsByVm[r.dataset.vm] = r; });

  var F = { search: byId("f-search"), health: byId("f-health"), error: byId("f-error"),
            cause: byId("f-cause"), status: byId("f-status") };
  var cardsExpanded = false;
  var moreButton = byId("cards-more");

  function vmMatchesSearchAndHealth(i) {
    var v = D.vms[i];
    var q = F.search.value.trim().toLowerCase();
    if (q && v[0].toLowerCase().indexOf(q) < 0) return false;
    var h = F.health.value;
    if (h === "attention") return v[2] === "critical" || v[2] === "warning";
    return !h || v[2] === h;
  }
  function vmVisible(i) {
    var v = D.vms[i];
    if (!vmMatchesSearchAndHealth(i)) return false;
    if (F.error.value && v[3].indexOf(F.error.value) < 0) return false;
    if (F.cause.value && v[4].indexOf(F.cause.value) < 0) return false;
    return true;
  }
  function cardVisible(c) {
    if (F.error.value && c.errors.indexOf(F.error.value) < 0) return false;
    if (F.cause.value && c.causes.indexOf(F.cause.value) < 0) return false;
    if (!F.search.value.trim() && !F.health.value) return true;
    return c.vms.some(vmMatchesSearchAndHealth);
  }

  function applyFilters() {
    var shownVms = 0;
    for (var i = 0; i < D.vms.length; i++) {
      var ok = vmVisible(i);
      if (ok) shownVms++;
      if (rowsByVm[i]) rowsByVm[i].hidden = !ok;
    }
    var shownCards = 0;
    cards.forEach(function (c) {
      var ok = cardVisible(c);
      c.el.hidden = !ok;
      if (ok) shownCards++;
      c.el.classList.toggle("over-limit", ok && !cardsExpanded && shownCards > CARD_LIMIT);
    });
    if (moreButton) {
      moreButton.hidden = cardsExpanded || shownCards <= CARD_LIMIT;
      moreButton.textContent = word("show_all_cards", { shown: shownCards, more: shownCards - CARD_LIMIT });
    }
    F.status.textContent = word("status", { vms: shownVms, total: D.vms.length, cards: shownCards,
                                         card_total: cards.length });
    document.querySelectorAll(".chip[data-filter]").forEach(function (chip) {
      chip.classList.toggle("active", F[chip.dataset.filter].value === chip.dataset.value);
    });
    if (TL.ready) { buildRows(); render(true); }
  }

  [F.health, F.error, F.cause].forEach(function (s) { s.addEventListener("change", applyFilters); });
  F.search.addEventListener("input", applyFilters);
  F.search.addEventListener("keydown", function (ev) {
    if (ev.key !== "Enter") return;
    var q = F.search.value.trim().toLowerCase(), hits = [];
    for (var i = 0; i < D.vms.length; i++) {
      if (D.vms[i][0].toLowerCase() === q) { hits = [i]; break; }
      if (vmVisible(i)) hits.push(i);
    }
    if (hits.length === 1) selectVm(hits[0], true);
  });
  byId("f-clear").addEventListener("click", function () {
    F.search.value = ""; F.health.value = ""; F.error.value = ""; F.cause.value = "";
    applyFilters();
  });
  document.querySelectorAll(".chip[data-filter]").forEach(function (chip) {
    chip.addEventListener("click", function () {
      var select = F[chip.dataset.filter];
      select.value = select.value === chip.dataset.value ? "" : chip.dataset.value;
      applyFilters();
    });
  });
  if (moreButton) moreButton.addEventListener("click", function () { cardsExpanded = true; applyFilters(); });

  /* ------------------------------------------------------------------ VM table sort */
  var NUMERIC = { health: 1, cycles: 1, failed: 1, consecutive: 1 };
  var sortState = { key: "health", dir: 1 };
  function sortTable(key) {
    if (!tbody) return;
    sortState.dir = sortState.key === key ? -sortState.dir
      : (key === "failed" || key === "consecutive" || key === "cycles" ? -1 : 1);
    sortState.key = key;
    var rows = Array.prototype.slice.call(tbody.rows);
    rows.sort(function (x, y) {
      var a = x.dataset[key], b = y.dataset[key], c;
      c = NUMERIC[key] ? Number(a) - Number(b) : (a < b ? -1 : a > b ? 1 : 0);
      return c * sortState.dir || (x.dataset.name < y.dataset.name ? -1 : 1);
    });
    rows.forEach(function (r) { tbody.appendChild(r); });
    document.querySelectorAll("#vm-table thead th").forEach(function (th) {
      var b = th.querySelector("button[data-sort]");
      if (b) th.setAttribute("aria-sort", b.dataset.sort !== key ? "none"
        : sortState.dir > 0 ? "ascending" : "descending");
    });
  }
  document.querySelectorAll("#vm-table thead button[data-sort]").forEach(function (b) {
    b.addEventListener("click", function () { sortTable(b.dataset.sort); });
  });

  /* ------------------------------------------------------------------ timeline */
  var TL = {
    ready: false, lanes: byId("tl-lanes"), spacer: byId("tl-spacer"), svg: byId("tl-svg"),
    axis: byId("tl-axis"), foot: byId("tl-foot"), detail: byId("detail"),
    labelW: 200, laneH: 22, hostH: 22, noteH: 12,
    rows: [], total: 0, a: 0, b: 1, width: 0,
    drawn: null,          // [first row, last row] currently in the SVG; null when none is
    stale: true,          // the SVG no longer shows the current rows, view or selection
    all: false,           // print: draw every row
    local: false, selVm: -1, selCycle: null, dragged: false
  };
  var NS = TL.svg ? TL.svg.namespaceURI : null;
  var cycleIndex = {};

  function svg(tag, attrs, text) {
    var node = document.createElementNS(NS, tag);
    for (var k in attrs) node.setAttribute(k, attrs[k]);
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function buildRows() {
    var rows = [], y = 0, lastHost = null, counts = {};
    for (var i = 0; i < D.vms.length; i++) if (vmVisible(i)) counts[D.vms[i][1]] = (counts[D.vms[i][1]] || 0) + 1;
    for (i = 0; i < D.vms.length; i++) {
      if (!vmVisible(i)) continue;
      var host = D.vms[i][1];
      if (host !== lastHost) {
        rows.push({ host: host, count: counts[host], y: y, h: TL.hostH });
        y += TL.hostH; lastHost = host;
      }
      var h = TL.laneH + (D.vms[i][8] ? TL.noteH : 0);  // a health note gets a line of its own
      rows.push({ vm: i, y: y, h: h });
      y += h;
    }
    TL.rows = rows; TL.total = y; TL.drawn = null; TL.stale = true;
    TL.spacer.style.height = y + "px";
  }

  function X(t) { return TL.labelW + (t - TL.a) / (TL.b - TL.a) * (TL.width - TL.labelW); }
  function T(x) { return TL.a + (x - TL.labelW) / (TL.width - TL.labelW) * (TL.b - TL.a); }
  function clampX(x) { return Math.max(TL.labelW - 4, Math.min(TL.width + 4, x)); }

  var TICK_STEPS = [60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800];
  function ticks() {
    var span = TL.b - TL.a, room = (TL.width - TL.labelW) / 95, step = TICK_STEPS[TICK_STEPS.length - 1];
    for (var i = 0; i < TICK_STEPS.length; i++) if (span / TICK_STEPS[i] <= room) { step = TICK_STEPS[i]; break; }
    var mid = (D.t0 + (TL.a + TL.b) / 2) * 1000, shift = shiftMs(mid) / 1000;
    var first = Math.ceil((D.t0 + TL.a + shift) / step) * step, out = [];
    for (var w = first; w - shift - D.t0 <= TL.b; w += step) {
      var d = new Date(w * 1000);
      out.push({ t: w - shift - D.t0, midnight: w % 86400 === 0,
        day: M.lang === "ko" ? d.getUTCFullYear() + ". " + (d.getUTCMonth() + 1) + ". " + d.getUTCDate() + "."
          : d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()),
        hm: pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) });
    }
    return out;
  }

  /* Three rows: dates, times, then the appliance-wide outages as a strip with their names. */
  function drawAxis(tks) {
    var W = TL.width, H = 46, STRIP = 31;
    TL.axis.setAttribute("viewBox", "0 0 " + W + " " + H);
    TL.axis.setAttribute("width", W);
    var g = document.createDocumentFragment(), dateShown = false;
    tks.forEach(function (tk) {
      var x = X(tk.t);
      if (x < TL.labelW) return;
      g.appendChild(svg("line", { "class": "axis-tick", x1: x, x2: x, y1: 28, y2: H }));
      g.appendChild(svg("text", { "class": "axis-text", x: x + 2, y: 26 }, tk.hm));
      if (tk.midnight || !dateShown) {
        g.appendChild(svg("text", { "class": "axis-day", x: x + 2, y: 12 }, tk.day));
        dateShown = true;
      }
    });
    D.outages.forEach(function (o, n) {
      var x1 = clampX(X(o[0])), x2 = clampX(X(o[1] < 0 ? D.t1 : o[1]));
      if (x2 <= TL.labelW || x1 >= W) return;
      g.appendChild(svg("rect", { "class": "outage-band", x: x1, y: STRIP, width: Math.max(2, x2 - x1),
        height: H - STRIP, "data-k": "o", "data-n": n }));
      if (x2 - x1 > 60) g.appendChild(svg("text", { "class": "outage-label", x: x1 + 3, y: H - 4 }, humanize(str(o[2]))));
    });
    g.appendChild(svg("text", { "class": "axis-day", x: 6, y: 12 }, TL.local && tzOffset ? "Local " + D.tz : "UTC"));
    g.appendChild(svg("text", { "class": "axis-text", x: 6, y: 26 },
      TL.rows.length ? word("lanes_title") : word("no_vm_match")));
    if (D.outages.length) g.appendChild(svg("text", { "class": "outage-label", x: 6, y: H - 4 }, word("outages_label")));
    TL.axis.replaceChildren(g);
  }

  function laneMarks(g, row, y) {
    var i = row.vm, cy = D.cycles[i] || [], tasks = D.tasks[i] || [], errs = D.errors[i] || [];
    var a = TL.a, b = TL.b, end = D.t1;
    for (var n = 0; n < cy.length; n++) {
      var c = cy[n], s = c[0], e = c[1] < 0 ? end : c[1];
      if (e < a || s > b) continue;
      var x1 = clampX(X(s)), x2 = clampX(X(e)), w = Math.max(2, x2 - x1);
      var outcome = D.outcomes[c[2]] || "unknown";
      var selected = TL.selCycle && TL.selCycle[0] === i && TL.selCycle[1] === n;
      var attrs = { "class": "bar o-" + outcome + (selected ? " selected" : ""), "data-k": "c", "data-v": i, "data-n": n };
      if (outcome === "in_progress" && w > 6) {  // open-ended: an arrow head on the right
        attrs.d = "M" + x1 + " " + (y + 3) + "H" + (x1 + w - 5) + "L" + (x1 + w) + " " + (y + 9) +
          "L" + (x1 + w - 5) + " " + (y + 15) + "H" + x1 + "Z";
        g.appendChild(svg("path", attrs));
      } else {
        attrs.x = x1; attrs.y = y + 3; attrs.width = w; attrs.height = 12;
        g.appendChild(svg("rect", attrs));
      }
    }
    for (n = 0; n < tasks.length; n++) {
      var t = tasks[n], te = t[1] < 0 ? end : t[1];
      if (te < a || t[0] > b) continue;
      var tx1 = clampX(X(t[0])), tx2 = Math.max(tx1 + 3, clampX(X(te)));
      var outcomeText = str(t[3]).toLowerCase(), bad = /err|fail|fault/.test(outcomeText) || t[4] >= 0;
      var cls = bad ? "task-bad" : t[1] < 0 ? "task-run" : "task-ok";
      g.appendChild(svg("rect", { "class": cls, x: tx1, y: y + 17, width: tx2 - tx1, height: 4, "data-k": "t", "data-v": i, "data-n": n }));
      if (bad) g.appendChild(svg("path", { "class": "task-bad-end", d: "M" + (tx2 - 3) + " " + (y + 15) +
        "L" + (tx2 + 3) + " " + (y + 19) + "L" + (tx2 - 3) + " " + (y + 23) + "Z", "data-k": "t", "data-v": i, "data-n": n }));
    }
    for (n = 0; n < errs.length; n++) {
      var er = errs[n];
      if (er[0] < a || er[0] > b) continue;
      var ex = X(er[0]);
      g.appendChild(svg("path", { "class": "err-mark", d: "M" + ex + " " + (y - 1) + "L" + (ex + 4) + " " + (y + 3) +
        "L" + ex + " " + (y + 7) + "L" + (ex - 4) + " " + (y + 3) + "Z", "data-k": "e", "data-v": i, "data-n": n }));
    }
  }

  /* The rows to draw: [first, last] indexes into TL.rows, or null when no row matches the filter.
   * Every row when printing, else a screen above and two below the visible part. Both ends stay
   * inside the current list whatever the scroll position: it may still be the one of a longer list
   * until the browser clamps it. */
  function rowWindow() {
    var n = TL.rows.length;
    if (!n) return null;
    if (TL.all) return [0, n - 1];
    var top = TL.lanes.scrollTop, view = TL.lanes.clientHeight || 600;
    var r0 = 0;
    while (r0 < n - 1 && TL.rows[r0].y + TL.rows[r0].h < top - view) r0++;
    var r1 = r0;
    while (r1 < n - 1 && TL.rows[r1 + 1].y < top + 2 * view) r1++;
    return [r0, r1];
  }

  /* Draws the rows of rowWindow(). Skipped when nothing changed and the rows drawn already cover
   * the window; `force` redraws anyway. */
  function render(force) {
    if (!TL.ready) return;
    var width = Math.max(480, TL.lanes.clientWidth);
    var win = rowWindow(), drawn = TL.drawn;
    var covered = win ? drawn !== null && drawn[0] <= win[0] && drawn[1] >= win[1] : drawn === null;
    if (!force && !TL.stale && width === TL.width && covered) return;
    TL.width = width;
    var r0 = win ? win[0] : 0, r1 = win ? win[1] : -1;
    var y0 = win ? TL.rows[r0].y : 0;
    var y1 = win ? TL.rows[r1].y + TL.rows[r1].h : 0;
    var H = Math.max(1, y1 - y0), W = width;
    var s = TL.svg;
    s.setAttribute("viewBox", "0 " + y0 + " " + W + " " + H);
    s.setAttribute("width", W); s.setAttribute("height", H);
    s.style.top = y0 + "px";

    var tks = ticks();
    var frag = document.createDocumentFragment();
    var defs = svg("defs", {});
    var clip = svg("clipPath", { id: "tl-clip-plot" });
    clip.appendChild(svg("rect", { x: TL.labelW, y: y0, width: W - TL.labelW, height: H }));
    var clipL = svg("clipPath", { id: "tl-clip-label" });
    clipL.appendChild(svg("rect", { x: 0, y: y0, width: TL.labelW - 6, height: H }));
    defs.appendChild(clip); defs.appendChild(clipL); frag.appendChild(defs);
    var bg = svg("g", {}), labels = svg("g", { "clip-path": "url(#tl-clip-label)" });
    var plot = svg("g", { "clip-path": "url(#tl-clip-plot)" }), marks = svg("g", {});

    for (var r = r0; r <= r1; r++) {
      var row = TL.rows[r];
      if (row.vm === undefined) {
        bg.appendChild(svg("rect", { "class": "host-row", x: 0, y: row.y, width: W, height: row.h }));
        labels.appendChild(svg("text", { "class": "host-label", x: 6, y: row.y + 15 },
          word("host_vms", { host: str(row.host), n: row.count })));
        continue;
      }
      var v = D.vms[row.vm];
      bg.appendChild(svg("rect", { "class": "lane-bg" + (r % 2 ? " odd" : "") + (row.vm === TL.selVm ? " selected" : ""),
        x: 0, y: row.y, width: W, height: row.h }));
      var label = svg("text", { "class": "vm-label h-" + v[2], x: 8, y: row.y + 15, "data-k": "l", "data-v": row.vm });
      var icon = svg("tspan", {}, (HEALTH_ICON[v[2]] || "?") + " ");
      icon.setAttribute("fill", { critical: "#D55E00", warning: "#E69F00", healthy: "#009E73" }[v[2]] || "#8a939c");
      label.appendChild(icon);
      label.appendChild(svg("tspan", {}, v[0]));
      labels.appendChild(label);
      if (v[8]) labels.appendChild(svg("text", { "class": "health-note", x: 22, y: row.y + 29, "data-k": "l", "data-v": row.vm }, v[8]));
      laneMarks(marks, row, row.y);
    }
    tks.forEach(function (tk) {
      var x = X(tk.t);
      if (x > TL.labelW) plot.appendChild(svg("line", { "class": "grid-line", x1: x, x2: x, y1: y0, y2: y1 }));
    });
    D.outages.forEach(function (o, n) {
      var x1 = clampX(X(o[0])), x2 = clampX(X(o[1] < 0 ? D.t1 : o[1]));
      if (x2 > TL.labelW && x1 < W) plot.appendChild(svg("rect", { "class": "outage-band", x: x1, y: y0,
        width: Math.max(2, x2 - x1), height: H, "data-k": "o", "data-n": n }));
    });
    plot.appendChild(marks);
    frag.appendChild(bg); frag.appendChild(plot); frag.appendChild(labels);
    frag.appendChild(svg("line", { "class": "label-sep", x1: TL.labelW - 1, x2: TL.labelW - 1, y1: y0, y2: y1 }));
    s.replaceChildren(frag);
    TL.drawn = win; TL.stale = false;
    drawAxis(tks);
    var vmRows = TL.rows.filter(function (x) { return x.vm !== undefined; }).length;
    TL.foot.textContent = word("foot", { n: vmRows, from: fmtTime(TL.a), to: fmtTime(TL.b),
                                      duration: fmtDuration(TL.b - TL.a) });
  }

  var pending = false;
  /* One redraw at the next frame; `force` when the view or the selection changed. The flag lives in
   * TL.stale, so a redraw made in between (a filter renders at once) clears it. */
  function schedule(force) {
    if (force) TL.stale = true;
    if (pending) return;
    pending = true;
    requestAnimationFrame(function () { pending = false; render(false); });
  }

  function setView(a, b) {
    var full = D.t1, padding = Math.max(60, full * 0.02);
    var span = Math.max(60, Math.min(b - a, full + 2 * padding));
    a = Math.max(-padding, Math.min(a, full + padding - span));
    TL.a = a; TL.b = a + span;
    schedule(true);
  }
  function resetView() { var p = Math.max(60, D.t1 * 0.02); setView(-p, D.t1 + p); }
  function zoom(factor, atT) {
    if (atT === undefined) atT = (TL.a + TL.b) / 2;
    setView(atT - (atT - TL.a) * factor, atT + (TL.b - atT) * factor);
  }

  /* ---------------- hover, click, detail panel */
  var tip = el("div", { "class": "tooltip", role: "tooltip" });
  tip.hidden = true;
  document.body.appendChild(tip);

  function cycleLines(i, n) {
    var c = D.cycles[i][n];
    var lines = [c[4] || word("cycle"), (D.types[c[3]] ? label("cycle_type", D.types[c[3]]) : word("unknown_type")) + " \u00B7 " +
      (D.outcomes[c[2]] ? label("outcome", D.outcomes[c[2]]) : word("unknown")),
      fmtTime(c[0]) + " \u2192 " + (c[1] < 0 ? word("not_ended") : fmtTime(c[1]))];
    if (c[7] >= 0 || c[1] >= 0) lines.push(word("duration_line", { duration: fmtDuration(c[7] >= 0 ? c[7] : c[1] - c[0]) }));
    if (c[6] >= 0) lines.push(word("uploaded_line", { bytes: fmtBytes(c[6]) }) + (c[8] >= 0 ? word("rate_suffix", { rate: c[8] }) : ""));
    if (c[5] >= 0) lines.push(word("error_line", { title: errorTitle(str(c[5])) }));
    if (c[9] >= 0) lines.push(word("failed_state_line", { state: str(c[9]) }));
    return lines;
  }
  function taskLines(i, n) {
    var t = D.tasks[i][n];
    return [str(t[2]) || word("task"), (t[6] ? t[6] + " \u00B7 " : "") + (str(t[3]) || (t[1] < 0 ? word("no_end") : "")),
      fmtTime(t[0]) + " \u2192 " + (t[1] < 0 ? word("not_ended") : fmtTime(t[1]))]
      .concat(t[4] >= 0 ? [word("fault_line", { fault: str(t[4]) })] : [],
              t[5] >= 0 ? [word("initiator_line", { initiator: str(t[5]) })] : []);
  }
  function errorLines(i, n) {
    var e = D.errors[i][n];
    return [errorTitle(str(e[1])) || word("error"), fmtTime(e[0]) + (e[2] >= 0 ? " \u00B7 " + str(e[2]) : ""), e[3]];
  }
  function outageLines(n) {
    var o = D.outages[n];
    return [word("outage_line", { cause: causeTitle(str(o[2])) }), fmtTime(o[0]) + " \u2192 " + fmtTime(o[1]), word("open_card_tip")];
  }
  function describe(target) {
    var k = target.getAttribute("data-k"), i = +target.getAttribute("data-v"), n = +target.getAttribute("data-n");
    if (k === "c") return cycleLines(i, n);
    if (k === "t") return taskLines(i, n);
    if (k === "e") return errorLines(i, n);
    if (k === "o") return outageLines(n);
    if (k === "l") { var v = D.vms[i]; return [v[0], str(v[1]), word("health_line", { health: label("health", v[2]) })].concat(v[8] ? [v[8]] : [], [word("details_tip")]); }
    return null;
  }
  function onHover(ev) {
    var target = ev.target.closest ? ev.target.closest("[data-k]") : null;
    var lines = target && !TL.panning ? describe(target) : null;
    if (!lines) { tip.hidden = true; return; }
    tip.textContent = lines.join("\n");
    tip.hidden = false;
    var x = ev.clientX + 14, y = ev.clientY + 14, w = tip.offsetWidth, h = tip.offsetHeight;
    if (x + w > window.innerWidth - 4) x = ev.clientX - w - 10;
    if (y + h > window.innerHeight - 4) y = ev.clientY - h - 10;
    tip.style.left = x + "px"; tip.style.top = y + "px";
  }

  function dl(pairs) {
    var list = el("dl");
    pairs.forEach(function (p) {
      if (p[1] === null || p[1] === undefined || p[1] === "") return;
      list.appendChild(el("dt", {}, p[0]));
      var dd = el("dd");
      if (p[1] instanceof Node) dd.appendChild(p[1]); else dd.textContent = String(p[1]);
      list.appendChild(dd);
    });
    return list;
  }
  function verdictBlock(finding) {
    var info = D.findings[finding], card = byId(info[0]);
    var box = el("div", { "class": "verdict sev-" + info[3] });
    box.appendChild(el("strong", {}, info[1]));
    box.appendChild(el("div", {}, word("cause_line", { cause: causeTitle(info[2]) }) +
      (info[4] ? word("confidence_part", { confidence: label("confidence", info[4]) }) : "") + " \u00B7 " + label("severity", info[3])));
    if (info[5]) box.appendChild(el("div", { "class": "muted" }, info[5]));
    var link = el("a", { href: "#" + info[0] }, word("open_card"));
    link.addEventListener("click", function (ev) { ev.preventDefault(); showCard(info[0]); });
    box.appendChild(link);
    var evidence = card && card.querySelector(".evidence-block");
    if (evidence) box.appendChild(evidence.cloneNode(true));
    return box;
  }
  function showDetail(title, nodes) {
    var d = TL.detail;
    if (!d) return;
    var h = el("h3", {}, title);
    d.replaceChildren.apply(d, [h].concat(nodes));
  }
  function nearby(list, s, e, at) {
    var out = [];
    for (var n = 0; n < list.length; n++) {
      var start = list[n][0], end = at === 1 ? (list[n][1] < 0 ? D.t1 : list[n][1]) : start;
      if (end >= s - 300 && start <= e + 300) out.push(n);
    }
    return out;
  }
  function showCycle(i, n) {
    var c = D.cycles[i][n], v = D.vms[i], e = c[1] < 0 ? D.t1 : c[1];
    var nodes = [dl([[word("vm"), v[0]], [word("host"), str(v[1])], [word("type"), D.types[c[3]] ? label("cycle_type", D.types[c[3]]) : ""],
      [word("outcome"), D.outcomes[c[2]] ? label("outcome", D.outcomes[c[2]]) : word("unknown")], [word("start"), fmtTime(c[0])],
      [word("end"), c[1] < 0 ? word("not_ended_bundle") : fmtTime(c[1])],
      [word("duration"), fmtDuration(c[7] >= 0 ? c[7] : e - c[0])], [word("uploaded"), c[6] >= 0 ? fmtBytes(c[6]) : ""],
      [word("rate"), c[8] >= 0 ? c[8] + " MB/s" : ""], [word("error_label"), c[5] >= 0 ? errorTitle(str(c[5])) : ""],
      [word("failed_state"), c[9] >= 0 ? str(c[9]) : ""]])];
    if (c[10].length) {
      nodes.push(el("h4", {}, c[10].length > 1 ? word("verdicts") : word("verdict")));
      c[10].forEach(function (k) { nodes.push(verdictBlock(k)); });
    } else if (c[2] === 1) {
      nodes.push(el("p", { "class": "muted" }, word("no_verdict_cycle")));
    }
    var tasks = nearby(D.tasks[i] || [], c[0], e, 1), errs = nearby(D.errors[i] || [], c[0], e, 0);
    nodes.push(el("h4", {}, word("tasks_around")));
    nodes.push(listOf(tasks.map(function (k) { return taskLines(i, k).join(" \u00B7 "); }), word("none")));
    nodes.push(el("h4", {}, word("errors_around")));
    nodes.push(listOf(errs.map(function (k) { return errorLines(i, k).join(" \u00B7 "); }), word("none")));
    showDetail(c[4] || word("cycle_title"), nodes);
  }
  function listOf(texts, empty) {
    if (!texts.length) return el("p", { "class": "muted" }, empty);
    var ul = el("ul");
    texts.forEach(function (t) { ul.appendChild(el("li", {}, t)); });
    return ul;
  }
  function showVm(i) {
    var v = D.vms[i], cy = D.cycles[i] || [];
    var failed = cy.filter(function (c) { return c[2] === 1; }).length;
    var health = label("health", v[2]);
    var nodes = [dl([[word("host"), str(v[1])], [word("health"), v[8] ? health + " (" + v[8] + ")" : health], [word("cycles"), cy.length],
      [word("failed"), failed], [word("in_a_row"), v[7] >= 0 ? v[7] : ""], [word("last_success"), v[6]],
      [word("tasks"), (D.tasks[i] || []).length], [word("errors"), (D.errors[i] || []).length]])];
    nodes.push(el("h4", {}, v[5].length ? word("verdicts") : word("no_verdict_vm")));
    v[5].forEach(function (k) { nodes.push(verdictBlock(k)); });
    showDetail(v[0], nodes);
  }

  function highlightCards(i) {
    cards.forEach(function (c) { c.el.classList.toggle("highlight", i >= 0 && c.vms.indexOf(i) >= 0); });
  }
  function showCard(id) {
    var c = cardById[id];
    if (!c) return;
    if (c.el.hidden) { byId("f-clear").click(); }
    if (c.el.classList.contains("over-limit")) { cardsExpanded = true; applyFilters(); }
    c.el.scrollIntoView({ block: "start" });
    c.el.classList.add("highlight");
  }
  function ensureVisible(i) {
    if (!vmVisible(i)) byId("f-clear").click();
    for (var r = 0; r < TL.rows.length; r++) {
      if (TL.rows[r].vm === i) {
        var y = TL.rows[r].y, view = TL.lanes.clientHeight;
        if (y < TL.lanes.scrollTop || y + TL.laneH > TL.lanes.scrollTop + view) TL.lanes.scrollTop = Math.max(0, y - view / 3);
        return;
      }
    }
  }
  function selectVm(i, scroll) {
    TL.selVm = i;
    Object.keys(rowsByVm).forEach(function (k) { rowsByVm[k].classList.toggle("selected", +k === i); });
    highlightCards(i);
    if (!TL.ready) { var r = rowsByVm[i]; if (r) r.scrollIntoView({ block: "center" }); return; }
    ensureVisible(i);
    showVm(i);
    schedule(true);
    if (scroll) byId("timeline").scrollIntoView({ block: "start" });
  }
  function revealCycle(i, n) {  // keep the zoom when the cycle is in view, else centre it
    var c = D.cycles[i][n], e = c[1] < 0 ? D.t1 : c[1], span = TL.b - TL.a;
    if (c[0] >= TL.a && e <= TL.b) return;
    if (e - c[0] > span * 0.8) span = (e - c[0]) * 3;
    var mid = (c[0] + e) / 2;
    setView(mid - span / 2, mid + span / 2);
  }
  function selectCycle(i, n, scroll) {
    TL.selCycle = [i, n];
    TL.selVm = i;
    highlightCards(i);
    if (scroll) {
      revealCycle(i, n);
      ensureVisible(i);
      byId("timeline").scrollIntoView({ block: "start" });
    }
    showCycle(i, n);
    schedule(true);
  }

  function onClick(ev) {
    if (TL.dragged) { TL.dragged = false; return; }
    var target = ev.target.closest ? ev.target.closest("[data-k]") : null;
    if (!target) return;
    var k = target.getAttribute("data-k"), i = +target.getAttribute("data-v"), n = +target.getAttribute("data-n");
    if (k === "c") selectCycle(i, n, false);
    else if (k === "l") selectVm(i, false);
    else if (k === "o") showCard(D.findings[D.outages[n][3]][0]);
    else if (k === "t") { TL.selVm = i; showDetail(str(D.tasks[i][n][2]) || word("task"), [listOf(taskLines(i, n).slice(1), ""), el("p", { "class": "muted" }, word("vm_line", { name: D.vms[i][0] }))]); }
    else if (k === "e") { TL.selVm = i; showDetail(errorTitle(str(D.errors[i][n][1])), [dl([["VM", D.vms[i][0]], ["Time", fmtTime(D.errors[i][n][0])], ["Source", str(D.errors[i][n][2])]]), el("code", { "class": "logline" }, D.errors[i][n][3])]); }
  }

  function initTimeline() {
    if (!TL.svg || D.empty) return;
    for (var i = 0; i < D.cycles.length; i++)
      for (var n = 0; n < D.cycles[i].length; n++) if (D.cycles[i][n][4]) cycleIndex[D.cycles[i][n][4]] = [i, n];
    TL.ready = true;
    var p = Math.max(60, D.t1 * 0.02);
    TL.a = -p; TL.b = D.t1 + p;
    buildRows();

    TL.lanes.addEventListener("scroll", function () { schedule(false); }, { passive: true });
    // the lanes' box, not the window: print layout and the detail panel's column change it too
    if (window.ResizeObserver) new ResizeObserver(function () { schedule(true); }).observe(TL.lanes);
    else window.addEventListener("resize", function () { schedule(true); });
    [TL.svg, TL.axis].forEach(function (s) {
      s.addEventListener("mousemove", onHover);
      s.addEventListener("mouseleave", function () { tip.hidden = true; });
      s.addEventListener("click", onClick);
    });
    TL.lanes.addEventListener("wheel", function (ev) {
      var x = ev.clientX - TL.lanes.getBoundingClientRect().left;
      if (ev.ctrlKey || ev.metaKey) {
        ev.preventDefault();
        zoom(ev.deltaY > 0 ? 1.25 : 0.8, x > TL.labelW ? T(x) : undefined);
      } else if (ev.shiftKey || Math.abs(ev.deltaX) > Math.abs(ev.deltaY)) {
        ev.preventDefault();
        var d = (ev.shiftKey ? ev.deltaY || ev.deltaX : ev.deltaX) / (TL.width - TL.labelW) * (TL.b - TL.a);
        setView(TL.a + d, TL.b + d);
      }
    }, { passive: false });
    TL.axis.addEventListener("wheel", function (ev) {
      ev.preventDefault();
      var x = ev.clientX - TL.axis.getBoundingClientRect().left;
      zoom(ev.deltaY > 0 ? 1.25 : 0.8, x > TL.labelW ? T(x) : undefined);
    }, { passive: false });
    TL.axis.addEventListener("dblclick", function (ev) {
      var x = ev.clientX - TL.axis.getBoundingClientRect().left;
      zoom(0.5, x > TL.labelW ? T(x) : undefined);
    });
    TL.lanes.addEventListener("mousedown", function (ev) {
      if (ev.button !== 0) return;
      var startX = ev.clientX, a = TL.a, b = TL.b;
      TL.dragged = false;
      function move(e) {
        var dx = e.clientX - startX;
        if (!TL.dragged && Math.abs(dx) < 4) return;
        TL.dragged = true; TL.panning = true; TL.lanes.classList.add("panning"); tip.hidden = true;
        var dt = -dx / (TL.width - TL.labelW) * (b - a);
        setView(a + dt, b + dt);
      }
      function up() {
        TL.panning = false; TL.lanes.classList.remove("panning");
        window.removeEventListener("mousemove", move); window.removeEventListener("mouseup", up);
        setTimeout(function () { TL.dragged = false; }, 0);
      }
      window.addEventListener("mousemove", move);
      window.addEventListener("mouseup", up);
    });
    TL.lanes.addEventListener("keydown", function (ev) {
      var span = TL.b - TL.a;
      if (ev.key === "+" || ev.key === "=") zoom(0.8);
      else if (ev.key === "-") zoom(1.25);
      else if (ev.key === "ArrowLeft") setView(TL.a - span / 10, TL.b - span / 10);
      else if (ev.key === "ArrowRight") setView(TL.a + span / 10, TL.b + span / 10);
      else return;
      ev.preventDefault();
    });
    byId("tl-zoom-in").addEventListener("click", function () { zoom(0.5); });
    byId("tl-zoom-out").addEventListener("click", function () { zoom(2); });
    byId("tl-reset").addEventListener("click", resetView);
    var local = byId("tl-local");
    if (local) {
      if (!tzOffset) { local.disabled = true; if (D.tz) local.parentNode.title = word("unknown_tz"); }
      local.addEventListener("change", function () { TL.local = local.checked; schedule(true); });
    }
    render(true);
  }

  /* ------------------------------------------------------------------ links from cards and table */
  document.addEventListener("click", function (ev) {
    var b = ev.target.closest ? ev.target.closest(".cycle-link, .vm-link") : null;
    if (!b) return;
    if (b.classList.contains("cycle-link")) {
      var at = cycleIndex[b.dataset.cycle];
      if (at) selectCycle(at[0], at[1], true);
    } else if (b.dataset.vm !== "") {
      selectVm(+b.dataset.vm, true);
    }
  });

  /* ------------------------------------------------------------------ print */
  var openedForPrint = [];
  function beforePrint() {
    if (TL.all) return;
    TL.all = true;
    document.querySelectorAll("details:not([open])").forEach(function (d) { d.open = true; openedForPrint.push(d); });
    tip.hidden = true;
    render(true);
  }
  function afterPrint() {
    if (!TL.all) return;
    TL.all = false;
    openedForPrint.forEach(function (d) { d.open = false; });
    openedForPrint = [];
    render(true);
  }
  window.addEventListener("beforeprint", beforePrint);
  window.addEventListener("afterprint", afterPrint);
  var printQuery = window.matchMedia ? window.matchMedia("print") : null;
  if (printQuery && printQuery.addEventListener) printQuery.addEventListener("change", function (q) { if (q.matches) beforePrint(); else afterPrint(); });

  /* sticky offsets below the toolbar, whose height depends on how its controls wrap */
  var toolbar = document.querySelector(".toolbar");
  function measureToolbar() {
    if (toolbar) document.documentElement.style.setProperty("--bar", toolbar.offsetHeight + "px");
  }
  window.addEventListener("resize", measureToolbar);
  measureToolbar();

  initTimeline();
  applyFilters();
  document.documentElement.setAttribute("data-ready", String(Math.round(performance.now())));
}

/* The data island is gzip-compressed JSON in base64 (page.packed_json): inflated in the page with
 * DecompressionStream, from a Blob, so that nothing is fetched (the CSP allows no connection). */
(function () {
  "use strict";
  var island = document.getElementById("data");
  if (island.getAttribute("data-encoding") !== "gzip+base64") { startReport(JSON.parse(island.textContent)); return; }
  if (typeof DecompressionStream === "undefined") {
    document.documentElement.setAttribute("data-error", "this browser cannot inflate the report's data (DecompressionStream)");
    return;
  }
  var packed = atob(island.textContent.trim()), bytes = new Uint8Array(packed.length);
  for (var i = 0; i < packed.length; i++) bytes[i] = packed.charCodeAt(i);
  new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"))).text()
    .then(function (text) { startReport(JSON.parse(text)); });
})();
