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

  // The prompt's counter: characters against the catalog's limit, in the warning colour near it (the box stops
  // accepting text at the limit: its maxlength). Line breaks count once, as the server counts them.
  function count(form) {
    var box = form.querySelector("textarea[name=prompt]");
    var counter = document.getElementById("prompt-count");
    if (!box || !counter) return;
    var max = parseInt(counter.getAttribute("data-max"), 10) || 0;
    var used = box.value.replace(/\r\n/g, "\n").length;
    counter.querySelector("[data-count]").textContent = used.toLocaleString("en-US");
    counter.classList.toggle("near", used >= max * 0.9 && used < max);
    counter.classList.toggle("full", used >= max);
  }

  // "Render ×N": the button says how many takes it renders.
  function labelButton(form) {
    var select = form.querySelector("[data-variants]");
    var button = form.querySelector("[data-render-button]");
    if (!select || !button) return;
    var n = parseInt(select.value, 10) || 1;
    button.textContent = n > 1 ? "Render ×" + n : "Render";
  }

  function initForms(root) {
    (root || document).querySelectorAll("#studio-form").forEach(function (form) {
      applyModel(form);
      count(form);
      labelButton(form);
    });
  }

  document.addEventListener("input", function (evt) {
    if (evt.target.matches && evt.target.matches("#studio-form textarea[name=prompt]")) count(evt.target.form);
  });
  document.addEventListener("change", function (evt) {
    if (evt.target.matches && evt.target.matches("[data-variants]")) labelButton(evt.target.form);
  });

  // Prompt memory: picking a recent or saved prompt fills the form (prompt, model, parameters) and re-prices it.
  function setField(form, name, value) {
    form.querySelectorAll("[name='" + name + "']").forEach(function (input) {
      if (input.type === "checkbox" || input.type === "file" || input.type === "hidden") return;
      if (input.tagName === "SELECT") {
        var wanted = String(value);
        if (Array.prototype.some.call(input.options, function (o) { return o.value === wanted; })) input.value = wanted;
      } else {
        input.value = value === null || value === undefined ? "" : String(value);
      }
    });
  }

  document.addEventListener("click", function (evt) {
    var pick = evt.target.closest && evt.target.closest("[data-fill]");
    var form = document.getElementById("studio-form");
    if (!pick || !form) return;
    var fill;
    try { fill = JSON.parse(pick.getAttribute("data-fill")); } catch (e) { return; }
    setField(form, "model", fill.model);
    applyModel(form);
    ["duration_seconds", "size", "resolution", "aspect_ratio", "seed", "style_preset"].forEach(function (name) {
      var params = fill.params || {};
      if (Object.prototype.hasOwnProperty.call(params, name)) setField(form, name, params[name]);
      else if (name === "seed") setField(form, name, "");
    });
    form.querySelector("textarea[name=prompt]").value = fill.prompt || "";
    count(form);
    // The estimate listens for changes on the form: re-price what it now holds.
    form.dispatchEvent(new Event("change", { bubbles: true }));
    form.querySelector("textarea[name=prompt]").focus();
  });

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

  // A prompt saved: clear its name, ready for the next one (a refused save keeps it, to fix).
  document.addEventListener("htmx:afterRequest", function (evt) {
    if (evt.target.id === "prompt-save" && evt.detail.successful) evt.target.reset();
  });

  document.addEventListener("DOMContentLoaded", function () {
    initForms(document);
    tick();
    etas();
  });
  document.addEventListener("htmx:afterSettle", function () { initForms(document); });
  document.addEventListener("htmx:oobAfterSwap", function () { initForms(document); });
})();
