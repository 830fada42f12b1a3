// Plugboard's UI behaviour, on top of htmx: the dialog, elapsed times of operations in flight, and a
// lost connection shown rather than swallowed. No build step: this file is served as it is.
(function () {
  "use strict";
  var dialog = function () { return document.getElementById("pb-dialog"); };
  var offset = 0;   // server clock minus this browser's, in seconds, from the last live region

  function tick() {
    var now = Date.now() / 1000 + offset;
    document.querySelectorAll("[data-since]").forEach(function (el) {
      var elapsed = Math.max(0, Math.floor(now - parseFloat(el.dataset.since)));
      el.textContent = elapsed + " s";
      var slow = el.parentElement && el.parentElement.querySelector(".pb-slow");
      if (slow) { slow.hidden = elapsed < parseFloat(el.dataset.warnAfter || "5"); }
    });
  }

  function syncClock(root) {
    var live = root && root.closest ? (root.matches("[data-server-now]") ? root : root.querySelector("[data-server-now]")) : null;
    if (live) { offset = parseFloat(live.dataset.serverNow) - Date.now() / 1000; }
    tick();
  }

  function connection(lost) {
    var banner = document.getElementById("pb-connection");
    if (banner) { banner.hidden = !lost; }
  }

  document.addEventListener("DOMContentLoaded", function () {
    syncClock(document.body);
    setInterval(tick, 500);
  });

  document.addEventListener("htmx:afterSwap", function (evt) {
    var target = evt.detail.target;
    syncClock(target);
    if (target && target.id === "pb-dialog-body" && !dialog().open) {
      dialog().showModal();
      var first = dialog().querySelector("input:not([type=hidden]):not([disabled]), select, button");
      if (first) { first.focus(); }
    }
  });

  document.addEventListener("htmx:afterRequest", function (evt) {
    var xhr = evt.detail.xhr;
    if (xhr && xhr.status) { connection(false); }
  });

  // An action went through (the engine's answer carries HX-Trigger: pb-done): a dialog it came from closes.
  document.addEventListener("pb-done", function (evt) {
    if (dialog().open && dialog().contains(evt.target)) { dialog().close(); }
  });

  // An action may take seconds (a guest releasing a NIC): show its state while it runs.
  document.addEventListener("htmx:beforeRequest", function (evt) {
    if (evt.detail.requestConfig && evt.detail.requestConfig.verb === "post") {
      setTimeout(function () { htmx.trigger(document.body, "pb-refresh"); }, 400);
    }
  });

  // The engine could not be reached at all.
  document.addEventListener("htmx:sendError", function () { connection(true); });
  // The engine answered with an error: shown where the action was taken when the engine rendered it;
  // anything else (a proxy's page, a crash) is shown as a lost connection.
  document.addEventListener("htmx:responseError", function (evt) {
    var xhr = evt.detail.xhr;
    if (!xhr.getResponseHeader("X-PB-Rendered") && !xhr.getResponseHeader("HX-Redirect")) { connection(true); }
  });

  document.addEventListener("click", function (evt) {
    if (evt.target.closest("[data-close-dialog]")) { dialog().close(); }
  });
  document.addEventListener("close", function (evt) {
    if (evt.target === dialog()) { document.getElementById("pb-dialog-body").innerHTML = ""; }
  }, true);
})();
