// owlet portal: live updates of a tenant's overview.
// Listens to /t/TENANT/live (server-sent events: only "the log grew, these
// kinds arrived") and re-fetches the server-rendered, escaped fragments
// #board and #attention with htmx. No sensor data is handled here, so none
// can become markup in this script. No inline script anywhere (CSP).
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.EventSource) { return; }
  var pending = null;
  function refresh(id) {
    var el = document.getElementById(id);
    if (!el || !window.htmx) { return; }
    window.htmx.ajax("GET", el.getAttribute("data-src"), { target: "#" + id, swap: "outerHTML" });
  }
  function schedule() {
    // Events come in bursts: one refresh per 200 ms is enough (and keeps
    // the "within 2 s" promise).
    if (pending) { return; }
    pending = window.setTimeout(function () {
      pending = null;
      refresh("board");
      refresh("attention");
    }, 200);
  }
  var source = new EventSource(live.getAttribute("data-src"));
  source.addEventListener("stored", schedule);
  source.onopen = function () { live.classList.add("on"); live.classList.remove("off"); };
  source.onerror = function () { live.classList.add("off"); live.classList.remove("on"); };
}());
