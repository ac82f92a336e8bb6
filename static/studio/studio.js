// The studio page's behaviours (studio.html loads it after app.js). No inline scripts: the CSP allows only
// files from 'self'.
(function () {
  "use strict";

  // Show and enable only the chosen model's fields: disabled inputs are not submitted.
  function applyModel(form) {
    var select = form.querySelector("[data-model-switch]");
    if (!select) return;
    form.querySelectorAll("[data-models]").forEach(function (el) {
      var on = el.getAttribute("data-models").split(" ").indexOf(select.value) !== -1;
      el.hidden = !on;
      el.querySelectorAll("input, select, textarea").forEach(function (input) { input.disabled = !on; });
    });
  }

  function initForms(root) {
    (root || document).querySelectorAll("#studio-form").forEach(applyModel);
  }

  // Capture phase: the fields must switch before htmx (listening on the form) reads them for the estimate.
  document.addEventListener("change", function (evt) {
    if (evt.target.matches && evt.target.matches("[data-model-switch]")) applyModel(evt.target.form);
  }, true);

  // Elapsed time on cards ticks every second between server refreshes, as the short_duration filter shows it.
  function tick() {
    document.querySelectorAll(".elapsed[data-start]").forEach(function (el) {
      var start = Date.parse(el.getAttribute("data-start"));
      var endAttr = el.getAttribute("data-end");
      var end = endAttr ? Date.parse(endAttr) : Date.now();
      if (!isNaN(start)) el.textContent = studio.duration((end - start) / 1000, false);
    });
  }
  setInterval(tick, 1000);

  // The ETA never jumps backwards: for each render the page keeps the earliest finish it has promised (now + the
  // server's estimate), counts down to it, and moves it only earlier. Past it, "almost done".
  var finishBy = {};
  function etas() {
    var now = Date.now();
    document.querySelectorAll(".eta[data-eta]").forEach(function (el) {
      var id = el.getAttribute("data-render");
      var fresh = el.getAttribute("data-eta");
      if (fresh !== null && fresh !== "") {
        var promised = now + Number(fresh) * 1000;
        if (!(id in finishBy) || promised < finishBy[id]) finishBy[id] = promised;
        el.setAttribute("data-eta", "");  // read once: from now on this page counts down
      }
      var left = Math.ceil((finishBy[id] - now) / 1000);
      el.textContent = left > 0 ? "about " + studio.duration(left, false) + " left" : "almost done";
    });
  }
  setInterval(etas, 1000);
  document.addEventListener("htmx:afterSwap", etas);
  document.addEventListener("htmx:oobAfterSwap", etas);

  document.addEventListener("DOMContentLoaded", function () {
    initForms(document);
    tick();
    etas();
  });
  document.addEventListener("htmx:afterSettle", function () { initForms(document); });
  document.addEventListener("htmx:oobAfterSwap", function () { initForms(document); });
})();
