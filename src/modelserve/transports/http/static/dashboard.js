// modelserve dashboard: refreshes the server-rendered tables and draws the charts (uPlot) every
// 2 s from the JSON API (docs/dashboard.md). Without JavaScript the tables still read.
(function () {
  "use strict";
  var REFRESH_MS = 2000;
  var COLORS = ["#0a58ca", "#b42318", "#1a7f37", "#8250df", "#bf8700", "#0b7285"];

  function text(value) {
    if (value === null || value === undefined) return "\u2014";
    return String(value);
  }

  function get(url) {
    return fetch(url, { headers: { accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error(url + ": " + r.status); return r.json(); });
  }

  function cell(tag, value, key) {
    var el = document.createElement(tag);
    el.textContent = text(value);
    if (key) el.setAttribute("data-key", key);
    return el;
  }

  var COLUMNS = ["version", "state", "runtime", "format", "validation", "requests_per_s",
    "p50_ms", "p99_ms", "error_rate", "queue_depth"];

  function renderOverview(doc) {
    var tbody = document.querySelector("#models tbody");
    if (!tbody) return;
    var rows = doc.models.map(function (m) {
      var tr = document.createElement("tr");
      var th = document.createElement("th");
      th.scope = "row";
      var a = document.createElement("a");
      a.href = "/ui/models/" + encodeURIComponent(m.model);
      a.textContent = m.model;
      th.appendChild(a);
      tr.appendChild(th);
      COLUMNS.forEach(function (key) {
        var td = cell("td", m[key], key);
        if (key === "state" && m.reason) td.title = m.reason;
        if (key === "validation" && m.validation) {
          td.title = m.validation_detail || "";
          td.className = m.validation === "passed" ? "ok" : "alert";
        }
        tr.appendChild(td);
      });
      return tr;
    });
    if (rows.length) tbody.replaceChildren.apply(tbody, rows);
    var s = doc.server;
    var facts = {
      "Health": s.ready ? "ready" : (s.live ? "live, not ready" : "not live"),
      "Uptime": uptime(s.uptime_s),
      "CPU": s.cpu_percent + " %",
      "Memory (RSS)": (s.rss_bytes / 1048576).toFixed(1) + " MiB",
      "Load average": s.load_average.map(function (v) { return v.toFixed(2); }).join(" ")
    };
    Object.keys(facts).forEach(function (k) {
      var dd = document.querySelector('#server dd[data-field="' + k + '"]');
      if (dd) dd.textContent = facts[k];
    });
    var sinks = document.querySelector("#sinks tbody");
    if (sinks && doc.payload_sinks.length) {
      sinks.replaceChildren.apply(sinks, doc.payload_sinks.map(function (p) {
        var tr = document.createElement("tr");
        tr.appendChild(cell("th", p.sink));
        tr.firstChild.scope = "row";
        ["sent", "dropped", "failed", "queue"].forEach(function (k) { tr.appendChild(cell("td", p[k])); });
        return tr;
      }));
    }
  }

  function uptime(seconds) {
    var s = Math.floor(seconds), h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60;
    return h + "h " + String(m).padStart(2, "0") + "m " + String(s % 60).padStart(2, "0") + "s";
  }

  // ---- model page ----------------------------------------------------------------------------

  var CHARTS = {
    requests: { fields: ["requests_per_s"], unit: "req/s" },
    latency: { fields: ["p50_ms", "p95_ms", "p99_ms"], unit: "ms" },
    errors: { fields: ["errors_per_s"], unit: "err/s" },
    batch: { fields: ["batch_size"], unit: "rows" }
  };
  var plots = {};

  function chartData(doc, spec) {
    // one x axis: the union of every version's seconds
    var times = {};
    doc.versions.forEach(function (v) { v.series.t.forEach(function (t) { times[t] = true; }); });
    var xs = Object.keys(times).map(Number).sort(function (a, b) { return a - b; });
    var data = [xs], series = [{}], color = 0;
    doc.versions.forEach(function (v) {
      var at = {};
      v.series.t.forEach(function (t, i) { at[t] = i; });
      spec.fields.forEach(function (field) {
        data.push(xs.map(function (t) { return t in at ? v.series[field][at[t]] : null; }));
        var label = "v" + v.version + (spec.fields.length > 1 ? " " + field.replace("_ms", "") : "");
        series.push({ label: label, stroke: COLORS[color++ % COLORS.length], width: 1.5,
          spanGaps: false });
      });
    });
    return { data: data, series: series };
  }

  function drawCharts(doc) {
    if (typeof uPlot === "undefined") return;
    Object.keys(CHARTS).forEach(function (key) {
      var box = document.getElementById("chart-" + key);
      if (!box) return;
      var built = chartData(doc, CHARTS[key]);
      var width = Math.max(260, box.clientWidth || 300);
      var plot = plots[key];
      if (plot && plot.series.length === built.series.length) {
        plot.setData(built.data);
        if (Math.abs(plot.width - width) > 4) plot.setSize({ width: width, height: 220 });
        return;
      }
      if (plot) plot.destroy();
      plots[key] = new uPlot({ width: width, height: 220, series: built.series,
        axes: [{}, { label: CHARTS[key].unit, size: 60 }], scales: { x: { time: true } } },
        built.data, box);
      box.setAttribute("data-points", String(built.data[0].length));
    });
    Object.keys(plots).forEach(function (key) {
      var box = document.getElementById("chart-" + key);
      var total = 0;
      doc.versions.forEach(function (v) { total += v.series.t.length; });
      if (box) box.setAttribute("data-points", String(total));
    });
  }

  // the page's tables (versions, monitoring): the page again, its [data-live] elements swapped in
  // where their content changed (buttons and focus sit outside them and stay)
  function refreshLive() {
    return fetch(location.pathname, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { if (!r.ok) throw new Error(location.pathname + ": " + r.status); return r.text(); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live]").forEach(function (el) {
          var next = fresh.getElementById(el.id);
          if (next && next.innerHTML !== el.innerHTML) el.replaceWith(document.importNode(next, true));
        });
      });
  }

  function loop() {
    var page = window.MS_PAGE, job;
    if (page === "overview") job = get("/ui/api/summary").then(renderOverview);
    else if (page === "model") {
      job = Promise.all([
        get("/ui/api/models/" + encodeURIComponent(window.MS_MODEL)).then(drawCharts),
        refreshLive()
      ]);
    } else return;
    job.catch(function (e) { console.warn(e); }).then(function () { setTimeout(loop, REFRESH_MS); });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", loop);
  else loop();
})();
