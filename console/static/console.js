// Refresh the live part of the page (<main id="live">) by fetching the page again.
// No build step: plain browser JavaScript. Paused while a field has focus.
(function () {
  "use strict";
  var period = parseInt(document.body.dataset.refreshMs || "3000", 10);
  function busy() {
    var el = document.activeElement;
    return el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA");
  }
  function later() { window.setTimeout(refresh, period); }
  // The next refresh is timed from the end of this one, so a slow page never piles up.
  function refresh() {
    if (document.hidden || busy()) { later(); return; }
    fetch(window.location.href, { headers: { "X-Console-Refresh": "1" } })
      .then(function (answer) { return answer.ok ? answer.text() : null; })
      .then(function (html) {
        if (html === null) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("live");
        var live = document.getElementById("live");
        if (fresh && live) {
          live.innerHTML = fresh.innerHTML;
          document.getElementById("updated").textContent =
            "updated " + new Date().toLocaleTimeString();
        }
      })
      .catch(function () { document.getElementById("updated").textContent = "offline"; })
      .then(later);
  }
  document.addEventListener("submit", function (event) {
    var message = event.target.dataset.confirm;
    if (message && !window.confirm(message)) { event.preventDefault(); }
  });
  later();
}());
