// cxhub console: the few behaviours the server-rendered pages need. No inline scripts (CSP).
(function () {
  "use strict";
  var csrf = document.querySelector('meta[name="csrf-token"]');

  // every htmx request carries the session's CSRF token
  document.addEventListener("htmx:configRequest", function (e) {
    if (csrf) e.detail.headers["X-CSRF-Token"] = csrf.content;
  });

  // live updates: the server's feed becomes `cx:<topic>` events on <body>; elements refresh with
  // hx-trigger="cx:cases from:body"
  function listen() {
    var url = document.body.getAttribute("data-live");
    if (!url || !window.EventSource) return;
    var dot = document.getElementById("live-dot");
    var source = new EventSource(url);
    source.onopen = function () { if (dot) dot.classList.add("on"); };
    source.onerror = function () { if (dot) dot.classList.remove("on"); };
    ["cases", "touchpoints", "surveys", "outbox", "quarantine", "sources"].forEach(function (topic) {
      source.addEventListener(topic, function (ev) {
        var detail = {};
        try { detail = JSON.parse(ev.data); } catch (_) {}
        document.body.dispatchEvent(new CustomEvent("cx:" + topic, { detail: detail, bubbles: true }));
      });
    });
  }

  // SLA clocks: <time data-deadline="ISO" data-start="ISO"> counts down every second; classes
  // sla-ok / sla-warn (under a quarter of the time left) / sla-breach
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-deadline]").forEach(function (el) {
      if (el.hasAttribute("data-stopped")) return;
      var due = Date.parse(el.getAttribute("data-deadline"));
      var start = Date.parse(el.getAttribute("data-start") || "") || due - 3600e3;
      if (isNaN(due)) return;
      var left = Math.round((due - now) / 1000);
      var abs = Math.abs(left);
      var text = (left < 0 ? "-" : "") + (abs >= 3600 ? Math.floor(abs / 3600) + ":" : "") +
        pad(Math.floor((abs % 3600) / 60)) + ":" + pad(abs % 60);
      el.textContent = text;
      var frac = (due - now) / Math.max(due - start, 1);
      el.classList.toggle("sla-breach", left < 0);
      el.classList.toggle("sla-warn", left >= 0 && frac < 0.25);
      el.classList.toggle("sla-ok", left >= 0 && frac >= 0.25);
    });
  }

  // charts: <div data-chart="ID"> with <script type="application/json" id="ID"> holding ECharts
  // options; a click on a point follows `drill` (a URL template with {name} and {series})
  function charts(root) {
    if (!window.echarts) return;
    (root || document).querySelectorAll("[data-chart]").forEach(function (el) {
      if (el.getAttribute("data-ready")) return;
      var src = document.getElementById(el.getAttribute("data-chart"));
      if (!src) return;
      var options = JSON.parse(src.textContent);
      var chart = window.echarts.init(el, null, { renderer: "svg" });
      chart.setOption(options);
      el.setAttribute("data-ready", "1");
      var drill = el.getAttribute("data-drill");
      if (drill) {
        chart.on("click", function (p) {
          window.location.href = drill.replace("{name}", encodeURIComponent(p.name || ""))
            .replace("{series}", encodeURIComponent(p.seriesName || ""));
        });
      }
      window.addEventListener("resize", function () { chart.resize(); });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    listen();
    tick();
    setInterval(tick, 1000);
    charts(document);
  });
  document.addEventListener("htmx:afterSettle", function (e) { tick(); charts(e.target); });
})();
