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

  document.addEventListener("DOMContentLoaded", function () {
    initForms(document);
    tick();
  });
  document.addEventListener("htmx:afterSettle", function () { initForms(document); });
  document.addEventListener("htmx:oobAfterSwap", function () { initForms(document); });
})();
