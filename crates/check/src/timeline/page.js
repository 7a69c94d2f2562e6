"use strict";
// Draws the lanes of a ditto timeline from the encoded operations (see data.rs for the format),
// and zooms them: drag across the plots or the lanes, or use the buttons.
(function () {
  const meta = JSON.parse(document.getElementById("meta").textContent);
  const text = document.getElementById("ops").textContent;
  const n = meta.n;
  const lanes = meta.lanes.length;

  // ---- Decoding ------------------------------------------------------------------------
  const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const digit = new Int8Array(128).fill(0);
  for (let i = 0; i < 64; i++) digit[ALPHABET.charCodeAt(i)] = i;
  let pos = 0;
  function next() {
    let v = 0, scale = 1, d;
    do {
      d = digit[text.charCodeAt(pos++)];
      v += (d & 31) * scale;
      scale *= 32;
    } while (d & 32);
    return v;
  }
  const lane = new Int32Array(n);
  const start = new Float64Array(n);
  const end = new Float64Array(n);
  const returned = new Uint8Array(n);
  const kind = new Uint8Array(n); // 0 read, 1 write
  const outcome = new Uint8Array(n); // 0 ok, 1 fail, 2 unknown
  const lit = new Int32Array(n).fill(-1);
  const off = new Float64Array(n);
  const index = meta.permuted ? new Int32Array(n) : null;
  const server = meta.servers ? new Int32Array(n) : null;
  const lastWrite = new Int32Array(lanes).fill(-1);
  let clock = 0;
  for (let p = 0; p < n; p++) {
    const l = next();
    lane[p] = l;
    clock += next();
    start[p] = clock;
    const dur = next();
    returned[p] = dur > 0 ? 1 : 0;
    end[p] = dur > 0 ? clock + dur - 1 : meta.end;
    const c = next();
    const code = c % 6, mode = (c - code) / 6;
    kind[p] = code >= 3 ? 1 : 0;
    outcome[p] = code % 3;
    if (mode === 1) {
      const z = next();
      const w = lastWrite[l];
      lit[p] = lit[w];
      off[p] = off[w] + (z % 2 ? -(z + 1) / 2 : z / 2);
    } else if (mode === 2) {
      lit[p] = next();
    } else if (mode === 3) {
      const w = p - next();
      lit[p] = lit[w];
      off[p] = off[w];
    }
    if (kind[p] === 1 && mode !== 0) lastWrite[l] = p;
    if (index) index[p] = next();
    if (server) server[p] = next();
  }
  function value(p) {
    if (lit[p] < 0) return null;
    const base = meta.literals[lit[p]];
    return off[p] === 0 ? base : (BigInt(base) + BigInt(off[p])).toString();
  }
  const historyIndex = p => (index ? index[p] : p);
  const highlighted = new Uint8Array(n);
  for (const p of meta.highlight) highlighted[p] = 1;

  // Per lane: its operations in invocation order, the longest that returned, the ones that
  // never returned (drawn to the end), and the unknown ones with the earliest give-up so far.
  const byLane = [], maxDur = new Float64Array(lanes), open = [], unknownStart = [], unknownMinEnd = [];
  for (let l = 0; l < lanes; l++) {
    byLane.push([]);
    open.push([]);
    unknownStart.push([]);
    unknownMinEnd.push([]);
  }
  for (let p = 0; p < n; p++) {
    const l = lane[p];
    if (!returned[p]) {
      open[l].push(p);
    } else {
      byLane[l].push(p);
      maxDur[l] = Math.max(maxDur[l], end[p] - start[p]);
      if (outcome[p] === 2) {
        const m = unknownMinEnd[l];
        unknownStart[l].push(start[p]);
        m.push(m.length ? Math.min(m[m.length - 1], end[p]) : end[p]);
      }
    }
  }

  // ---- Geometry ------------------------------------------------------------------------
  const LEFT = meta.left, WIDTH = meta.width, RIGHT = meta.right;
  const AXIS = 36;
  const LANE = Math.max(4, Math.min(22, Math.floor(20000 / Math.max(lanes, 1))));
  const BAR = Math.max(3, LANE - 8);
  const cssW = LEFT + WIDTH + RIGHT, cssH = AXIS + lanes * LANE + 6;
  const canvas = document.getElementById("lanes");
  const ratio = window.devicePixelRatio || 1;
  canvas.style.width = cssW + "px";
  canvas.style.height = cssH + "px";
  canvas.width = Math.round(cssW * ratio);
  canvas.height = Math.round(cssH * ratio);
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  const FONT = "11px ui-monospace, monospace";
  const FILL = ["#4caf6a", "#5b8def", "#b0b0b0", "rgba(240,160,48,.6)"];
  const category = p => (outcome[p] === 1 ? 2 : outcome[p] === 2 ? 3 : kind[p]);

  let view = { s: meta.window[0], e: Math.max(meta.window[1], meta.window[0] + 1) };
  const X = t => LEFT + ((t - view.s) / (view.e - view.s)) * WIDTH;
  const T = x => view.s + ((x - LEFT) / WIDTH) * (view.e - view.s);
  const PX = t => LEFT + ((t - meta.start) / (meta.end - meta.start)) * WIDTH;
  const PT = x => meta.start + ((x - LEFT) / WIDTH) * (meta.end - meta.start);

  function roundStep(raw) {
    const magnitude = Math.pow(10, Math.floor(Math.log10(Math.max(raw, 1e-9))));
    for (const m of [1, 2, 5, 10]) if (m * magnitude >= raw * (1 - 1e-9)) return m * magnitude;
    return 10 * magnitude;
  }
  const seconds = (us, decimals) => (us / 1e6).toFixed(decimals) + " s";
  function lowerBound(ops, t) {
    let lo = 0, hi = ops.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (start[ops[mid]] < t) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
  // The longest text that fits in `width` pixels: the whole, or the end of the value after an
  // ellipsis, or the kind alone, or nothing.
  function fitted(head, tail, width) {
    const whole = tail === null ? head : head + " " + tail;
    if (ctx.measureText(whole).width <= width) return whole;
    if (tail !== null) {
      let lo = 1, hi = tail.length - 1, best = null;
      while (lo <= hi) {
        const k = (lo + hi) >> 1;
        const t = head + " \u2026" + tail.slice(tail.length - k);
        if (ctx.measureText(t).width <= width) {
          best = t;
          lo = k + 1;
        } else hi = k - 1;
      }
      if (best !== null && best.length >= head.length + 4) return best;
    }
    return ctx.measureText(head).width <= width ? head : null;
  }
  function laneLabel(l) {
    const info = meta.lanes[l];
    const servers = info.servers.map(s => ":" + s).join(",");
    return "client " + info.client + (servers ? " " + servers : "");
  }
  const laneHit = (l, f) => meta.lanes[l].servers.some(s => f.servers.includes(s));

  // ---- Drawing -------------------------------------------------------------------------
  function draw() {
    const span = view.e - view.s;
    ctx.clearRect(0, 0, cssW, cssH);
    ctx.font = FONT;
    ctx.textBaseline = "middle";
    for (let l = 0; l < lanes; l++) {
      const y = AXIS + l * LANE;
      ctx.fillStyle = l % 2 ? "#f0f0f0" : "#fafafa";
      ctx.fillRect(0, y, cssW, LANE);
      if (LANE >= 10) {
        const label = fitted(laneLabel(l), null, LEFT - 12) || fitted("c" + meta.lanes[l].client, null, LEFT - 12);
        if (label) {
          ctx.fillStyle = "#333";
          ctx.fillText(label, 6, y + LANE / 2);
        }
      }
    }
    // Time axis: a round step whose labels all fit with room to spare.
    let step = roundStep((span * 80) / WIDTH);
    let decimals = Math.max(0, Math.min(6, 6 - Math.floor(Math.log10(step))));
    const widest = ctx.measureText(seconds(view.e, decimals)).width + 14;
    while ((step / span) * WIDTH < widest) step = roundStep(step * 1.5);
    decimals = Math.max(0, Math.min(6, 6 - Math.floor(Math.log10(step))));
    ctx.textAlign = "center";
    for (let t = Math.ceil(view.s / step) * step; t <= view.e; t += step) {
      const x = X(t), label = seconds(t, decimals);
      ctx.fillStyle = "#ddd";
      ctx.fillRect(Math.round(x), AXIS - 4, 1, lanes * LANE + 4);
      if (x + ctx.measureText(label).width / 2 > cssW) continue;
      ctx.fillStyle = "#666";
      ctx.fillText(label, x, 9);
    }
    ctx.textAlign = "left";
    ctx.save();
    ctx.beginPath();
    ctx.rect(LEFT, 0, WIDTH, cssH);
    ctx.clip();
    // Faults: shaded across every lane, marked on the lanes of the servers they hit, and
    // named above the lanes where there is room.
    let freeFrom = -Infinity;
    for (const f of meta.faults) {
      if (f.e < view.s || f.s > view.e) continue;
      const x1 = X(f.s), x2 = Math.max(X(f.e), x1 + 1);
      ctx.fillStyle = "rgba(230,120,20,.14)";
      ctx.fillRect(x1, AXIS, x2 - x1, lanes * LANE);
      for (let l = 0; l < lanes; l++) {
        if (!laneHit(l, f)) continue;
        ctx.fillStyle = "rgba(230,120,20,.22)";
        ctx.fillRect(x1, AXIS + l * LANE, x2 - x1, LANE);
        ctx.fillStyle = "rgba(230,120,20,.8)";
        ctx.fillRect(x1, AXIS + l * LANE + 1, x2 - x1, 2);
      }
      ctx.fillStyle = "rgba(230,120,20,.7)";
      ctx.fillRect(x1, AXIS - 6, x2 - x1, 4);
      const lx = Math.max(x1, LEFT + 2);
      const w = ctx.measureText(f.kind).width;
      if (lx >= freeFrom && lx + w < LEFT + WIDTH) {
        ctx.fillStyle = "#b05a00";
        ctx.fillText(f.kind, lx, AXIS - 14);
        freeFrom = lx + w + 8;
      }
    }
    // Operations: bars where they are wide enough to see, otherwise the pixel columns they
    // keep busy, in the colour of the most telling operation there (unknown, failed, write,
    // read). Highlighted ones are always drawn, on top.
    const columns = Math.ceil(WIDTH) + 1;
    const busy = new Uint8Array(lanes * columns);
    const bars = [], marked = [];
    let shown = 0;
    const visit = (p, l) => {
      const x1 = X(start[p]), x2 = X(end[p]);
      shown++;
      if (highlighted[p]) marked.push(p);
      if (x2 - x1 >= 3) {
        bars.push(p);
        return;
      }
      const c1 = Math.max(0, Math.floor(x1 - LEFT)), c2 = Math.min(columns - 1, Math.floor(x2 - LEFT));
      const bit = 1 << category(p);
      for (let c = c1; c <= c2; c++) busy[l * columns + c] |= bit;
    };
    for (let l = 0; l < lanes; l++) {
      const ops = byLane[l];
      for (let i = lowerBound(ops, view.s - maxDur[l]); i < ops.length; i++) {
        const p = ops[i];
        if (start[p] > view.e) break;
        if (end[p] >= view.s) visit(p, l);
      }
      for (const p of open[l]) if (start[p] <= view.e) visit(p, l);
    }
    // A busy stretch: writes in the upper half, reads in the lower (one of them the whole
    // height if alone), and a strip at the bottom where some failed or were unknown.
    const half = Math.floor(BAR / 2), strip = Math.max(2, Math.floor(BAR / 4));
    for (let l = 0; l < lanes; l++) {
      const y = AXIS + l * LANE + (LANE - BAR) / 2;
      let c = 0;
      while (c < columns) {
        const mask = busy[l * columns + c];
        let d = c + 1;
        while (d < columns && busy[l * columns + d] === mask) d++;
        const x = LEFT + c, w = d - c;
        const reads = mask & 1, writes = mask & 2, failed = mask & 4, unknown = mask & 8;
        if (reads && writes) {
          ctx.fillStyle = FILL[1];
          ctx.fillRect(x, y, w, half);
          ctx.fillStyle = FILL[0];
          ctx.fillRect(x, y + half, w, BAR - half);
        } else if (reads || writes) {
          ctx.fillStyle = FILL[writes ? 1 : 0];
          ctx.fillRect(x, y, w, BAR);
        }
        if (failed || unknown) {
          ctx.fillStyle = unknown ? "#e08a00" : "#888";
          if (reads || writes) ctx.fillRect(x, y + BAR - strip, w, strip);
          else ctx.fillRect(x, y, w, BAR);
        }
        c = d;
      }
    }
    for (const p of bars) {
      const l = lane[p];
      const y = AXIS + l * LANE + (LANE - BAR) / 2;
      const x1 = Math.max(X(start[p]), LEFT - 4), x2 = Math.min(X(end[p]), LEFT + WIDTH + 4);
      const w = x2 - x1, cat = category(p);
      ctx.fillStyle = FILL[cat];
      ctx.fillRect(x1, y, w, BAR);
      ctx.lineWidth = 1;
      if (cat === 3) {
        ctx.setLineDash([4, 2]);
        ctx.strokeStyle = "#b07000";
        ctx.strokeRect(x1 + 0.5, y + 0.5, w - 1, BAR - 1);
        ctx.setLineDash([]);
      } else if (w >= 6) {
        ctx.strokeStyle = "rgba(0,0,0,.35)";
        ctx.strokeRect(x1 + 0.5, y + 0.5, w - 1, BAR - 1);
      }
      if (w >= 16 && BAR >= 10) {
        const ok = outcome[p] === 0 || kind[p] === 1;
        const label = fitted(kind[p] ? "W" : "R", ok ? value(p) : null, w - 6);
        if (label) {
          ctx.fillStyle = "#000";
          ctx.fillText(label, Math.max(x1, LEFT) + 3, y + BAR / 2 + 0.5);
        }
      }
    }
    // An unknown operation may still take effect until the end: a dashed line from when its
    // client gave up on it.
    ctx.strokeStyle = "rgba(224,138,0,.9)";
    ctx.lineWidth = 1;
    ctx.setLineDash([3, 3]);
    for (let l = 0; l < lanes; l++) {
      const starts = unknownStart[l];
      let lo = 0, hi = starts.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (starts[mid] <= view.e) lo = mid + 1;
        else hi = mid;
      }
      if (lo === 0) continue;
      const from = Math.max(X(unknownMinEnd[l][lo - 1]), LEFT);
      if (from < LEFT + WIDTH) {
        const y = AXIS + (l + 1) * LANE - 2.5;
        ctx.beginPath();
        ctx.moveTo(from, y);
        ctx.lineTo(LEFT + WIDTH, y);
        ctx.stroke();
      }
    }
    ctx.setLineDash([]);
    ctx.lineWidth = 3;
    ctx.strokeStyle = "#e00000";
    for (const p of marked) {
      const y = AXIS + lane[p] * LANE + (LANE - BAR) / 2;
      const x1 = X(start[p]), x2 = Math.max(X(end[p]), x1 + 4);
      ctx.strokeRect(x1 - 1.5, y - 1.5, x2 - x1 + 3, BAR + 3);
    }
    ctx.restore();
    for (const id of ["sel-throughput", "sel-latency"]) {
      const rect = document.getElementById(id);
      if (!rect) continue;
      const whole = view.s <= meta.start && view.e >= meta.end;
      rect.setAttribute("x", PX(view.s).toFixed(1));
      rect.setAttribute("width", whole ? 0 : Math.max(1, PX(view.e) - PX(view.s)).toFixed(1));
    }
    const d = Math.max(0, 6 - Math.floor(Math.log10(Math.max(span, 1))) + 1);
    document.getElementById("readout").textContent =
      "lanes show " + seconds(view.s, Math.min(6, d)) + " to " + seconds(view.e, Math.min(6, d)) +
      ": " + shown + " of " + n + " operations";
  }

  // ---- Zooming -------------------------------------------------------------------------
  // The window shown, also kept in the address (#from,to in seconds) so that a link shows the
  // same stretch.
  function setView(s, e) {
    const full = meta.end - meta.start;
    const width = Math.min(Math.max(e - s, 10), full);
    const c = (s + e) / 2;
    s = Math.max(meta.start, Math.min(c - width / 2, meta.end - width));
    view = { s: s, e: s + width };
    draw();
    const hash = "#" + (view.s / 1e6).toFixed(6) + "," + (view.e / 1e6).toFixed(6);
    if (window.history && history.replaceState) history.replaceState(null, "", hash);
  }
  function viewFromAddress() {
    const m = /^#(-?[0-9.]+),(-?[0-9.]+)$/.exec(window.location.hash);
    if (m && Number(m[2]) > Number(m[1])) setView(Number(m[1]) * 1e6, Number(m[2]) * 1e6);
  }
  window.addEventListener("hashchange", viewFromAddress);
  function dragOn(element, toTime, onMove, onDone) {
    element.addEventListener("mousedown", down => {
      if (down.button !== 0) return;
      const box = element.getBoundingClientRect();
      const x0 = down.clientX - box.left;
      if (x0 < LEFT || x0 > LEFT + WIDTH) return;
      down.preventDefault();
      const move = ev => onMove(x0, Math.max(LEFT, Math.min(LEFT + WIDTH, ev.clientX - box.left)));
      const up = ev => {
        window.removeEventListener("mousemove", move);
        window.removeEventListener("mouseup", up);
        const x1 = Math.max(LEFT, Math.min(LEFT + WIDTH, ev.clientX - box.left));
        onDone();
        if (Math.abs(x1 - x0) > 4) setView(toTime(Math.min(x0, x1)), toTime(Math.max(x0, x1)));
      };
      window.addEventListener("mousemove", move);
      window.addEventListener("mouseup", up);
    });
  }
  const drag = document.getElementById("drag");
  drag.style.height = cssH + "px";
  dragOn(
    canvas,
    T,
    (a, b) => {
      drag.style.display = "block";
      drag.style.left = Math.min(a, b) + "px";
      drag.style.width = Math.abs(b - a) + "px";
      tip.style.display = "none";
    },
    () => (drag.style.display = "none")
  );
  for (const id of ["throughput", "latency"]) {
    const svg = document.getElementById(id);
    if (!svg) continue;
    dragOn(
      svg,
      PT,
      (a, b) => {
        for (const sel of ["sel-throughput", "sel-latency"]) {
          const rect = document.getElementById(sel);
          rect.setAttribute("x", Math.min(a, b).toFixed(1));
          rect.setAttribute("width", Math.abs(b - a).toFixed(1));
        }
      },
      () => {}
    );
  }
  const button = id => document.getElementById(id);
  button("whole").onclick = () => setView(meta.start, meta.end);
  button("out").onclick = () => setView(view.s - (view.e - view.s) / 2, view.e + (view.e - view.s) / 2);
  button("left").onclick = () => setView(view.s - (view.e - view.s) / 2, view.e - (view.e - view.s) / 2);
  button("right").onclick = () => setView(view.s + (view.e - view.s) / 2, view.e + (view.e - view.s) / 2);
  if (meta.highlight.length) {
    button("violation").hidden = false;
    button("violation").onclick = () => setView(meta.window[0], meta.window[1]);
  }
  for (const a of document.querySelectorAll(".involved a[data-op]")) {
    a.addEventListener("click", ev => {
      ev.preventDefault();
      canvas.scrollIntoView({ block: "nearest" });
      const i = Number(a.dataset.op);
      let p = i;
      if (index) for (let q = 0; q < n; q++) if (index[q] === i) p = q;
      const pad = Math.max((end[p] - start[p]) * 2, 200);
      setView(start[p] - pad, Math.min(end[p], start[p] + 1e7) + pad);
    });
  }

  // ---- Details on hover ----------------------------------------------------------------
  const tip = document.getElementById("tip");
  function opAt(x, y) {
    const l = Math.floor((y - AXIS) / LANE);
    if (l < 0 || l >= lanes || x < LEFT || x > LEFT + WIDTH) return -1;
    const t = T(x), slack = (4 * (view.e - view.s)) / WIDTH;
    let best = -1, bestScore = Infinity;
    const consider = p => {
      if (start[p] - slack > t || end[p] + slack < t) return;
      const score = (highlighted[p] ? 0 : 1e15) + (end[p] - start[p]);
      if (score < bestScore) {
        best = p;
        bestScore = score;
      }
    };
    const ops = byLane[l];
    for (let i = lowerBound(ops, t - slack - maxDur[l]); i < ops.length && start[ops[i]] <= t + slack; i++) consider(ops[i]);
    for (const p of open[l]) consider(p);
    return best;
  }
  const ms = us => (us / 1000).toFixed(3) + " ms";
  function describe(p) {
    const info = meta.lanes[lane[p]];
    const at = server ? (server[p] ? " at :" + meta.servers[server[p] - 1] : "") : info.servers.length === 1 ? " at :" + info.servers[0] : "";
    const what = kind[p] ? "write " + value(p) : outcome[p] === 0 ? "read " + value(p) : "read";
    const result = ["ok", "failed: not applied", "outcome unknown: may take effect at any later time"][outcome[p]];
    const lines = ["#" + historyIndex(p) + " client " + info.client + at, what + ", " + result];
    if (returned[p]) {
      lines.push("invoked " + ms(start[p]) + ", " + (outcome[p] === 2 ? "gave up " : "returned ") + ms(end[p]) + " (" + ms(end[p] - start[p]) + ")");
    } else {
      lines.push("invoked " + ms(start[p]) + ", never returned");
    }
    if (highlighted[p]) lines.push("involved in the violation");
    return lines.join("\n");
  }
  canvas.addEventListener("mousemove", ev => {
    if (drag.style.display === "block") return;
    const box = canvas.getBoundingClientRect();
    const x = ev.clientX - box.left, y = ev.clientY - box.top;
    const p = opAt(x, y);
    if (p < 0) {
      tip.style.display = "none";
      return;
    }
    tip.textContent = describe(p);
    tip.style.display = "block";
    tip.style.left = Math.min(x + 14, cssW - tip.offsetWidth - 4) + "px";
    tip.style.top = y + 16 + "px";
  });
  canvas.addEventListener("mouseleave", () => (tip.style.display = "none"));

  draw();
  viewFromAddress();
})();
