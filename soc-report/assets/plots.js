// owlet plots: draws every element with a data-series="URL" attribute with
// uPlot, from the series JSON at that URL (soc-report/src/series.rs).
//
// Loaded as a file (CSP script-src 'self'; no inline script, no eval). Text
// from the data (labels, zone) goes through textContent only, never parsed
// as markup: labels are sensor and check names, data from outside.
(function () {
  "use strict";

  var COLOURS = ["#2f6690", "#b3261e", "#1b6e3a", "#8a5a00", "#6a3d9a", "#00838f", "#c2185b", "#455a64"];

  function fmt(unit) {
    return function (u, v) {
      return v == null ? "-" : v.toLocaleString(undefined, { maximumFractionDigits: 2 }) + " " + unit;
    };
  }

  function build(el, json) {
    var data = [json.t];
    var series = [{ label: "time" }];
    var bands = [];
    json.lines.forEach(function (line, i) {
      var colour = COLOURS[i % COLOURS.length];
      data.push(line.values);
      series.push({ label: line.label, stroke: colour, width: 1.5, spanGaps: false, value: fmt(line.unit) });
      if (line.normal) {
        var hi = data.length;
        data.push(line.normal.high);
        series.push({ label: line.label + " normal p95", stroke: colour, width: 0, dash: [4, 4], value: fmt(line.unit) });
        data.push(line.normal.low);
        series.push({ label: line.label + " normal p5", stroke: colour, width: 0, dash: [4, 4], value: fmt(line.unit) });
        bands.push({ series: [hi, hi + 1], fill: colour + "22" });
      }
    });
    var unit = json.lines.length ? json.lines[0].unit : "";
    var width = el.clientWidth || 800;
    var opts = {
      title: json.title,
      width: width,
      height: Number(el.getAttribute("data-height")) || 300,
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1000), json.time_zone); },
      series: series,
      bands: bands,
      axes: [{}, { values: function (u, vals) { return vals.map(function (v) { return v + " " + unit; }); }, size: 70 }],
      scales: { x: { time: true } },
    };
    var caption = document.createElement("p");
    caption.className = "plot-zone";
    caption.textContent = "Times in " + json.time_zone + " (" + json.from + " – " + json.to + ")";
    el.textContent = "";
    el.appendChild(caption);
    return new uPlot(opts, data, el);
  }

  function load(el) {
    var url = el.getAttribute("data-series");
    if (!url) return;
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (!r.ok) throw new Error(r.status + " " + r.statusText);
        return r.json();
      })
      .then(function (json) { build(el, json); })
      .catch(function (e) {
        el.textContent = "Cannot load this plot: " + e.message;
        el.classList.add("plot-error");
      });
  }

  function all() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-series]"), load);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", all);
  } else {
    all();
  }
})();
