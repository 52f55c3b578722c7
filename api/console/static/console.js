// payops console: live refresh of Now, approval countdowns, charts (uPlot). No inline script (CSP).
"use strict";

function refreshLoop(el) {
  const url = el.dataset.refresh;
  const every = parseInt(el.dataset.interval || "5000", 10);
  async function tick() {
    try {
      const res = await fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } });
      if (res.status === 401) { window.location = "/console/sign-in"; return; }
      if (res.ok) { el.innerHTML = await res.text(); }
    } catch (e) { /* offline for a moment: the "last updated" time shows how old the page is */ }
    setTimeout(tick, every);
  }
  setTimeout(tick, every);
}

function countdowns() {
  const now = Date.now() / 1000;
  document.querySelectorAll("time.countdown").forEach((t) => {
    const left = parseFloat(t.dataset.expires) - now;
    t.textContent = left > 0 ? `in ${Math.floor(left / 60)} min ${Math.floor(left % 60)} s` : "expired";
  });
}

function drawChart(holder) {
  const source = document.getElementById(holder.dataset.chart);
  if (!source || typeof uPlot === "undefined") { return; }
  const d = JSON.parse(source.textContent);
  if (!d.x || d.x.length === 0) { holder.textContent = "No figures around this decision."; return; }
  const segment = d.segment && d.segment_rate.some((v) => v !== null);
  const series = [{}, { label: "all traffic failure %", stroke: "#5a636e", scale: "%" }];
  const data = [d.x, d.platform_rate];
  if (segment) {
    series.push({ label: d.segment + " failure %", stroke: "#b3261e", width: 2, scale: "%" });
    series.push({ label: "reference %", stroke: "#b3261e", dash: [6, 4], scale: "%" });
    series.push({ label: d.segment + " attempts", stroke: "#0b5cad", scale: "n" });
    data.push(d.segment_rate, d.segment_reference, d.segment_volume);
  } else {
    series.push({ label: "attempts", stroke: "#0b5cad", scale: "n" });
    data.push(d.platform_volume);
  }
  const width = Math.max(300, Math.min(holder.clientWidth || 800, 1200));
  const opts = {
    width: width, height: 260, series: series,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), d.zone || "UTC"),  // the console's one display zone
    scales: { x: { time: true }, "%": {}, n: {} },
    axes: [{}, { scale: "%", label: "failure %" }, { scale: "n", side: 1, label: "attempts", grid: { show: false } }],
    hooks: { draw: [(u) => {
      if (d.marker === null) { return; }
      const x = u.valToPos(d.marker, "x", true);
      const ctx = u.ctx; ctx.save(); ctx.strokeStyle = "#f2b705"; ctx.lineWidth = 2;
      ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke(); ctx.restore();
    }] },
  };
  new uPlot(opts, data, holder);
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-refresh]").forEach(refreshLoop);
  document.querySelectorAll("[data-chart]").forEach(drawChart);
  countdowns();
  setInterval(countdowns, 1000);
});
