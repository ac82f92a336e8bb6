// The studio page's small behaviours. No inline scripts: the CSP allows only files from 'self'.
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

  // Elapsed time on cards ticks every second between server refreshes.
  function fmt(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    var m = Math.floor(seconds / 60), s = seconds % 60;
    return m ? m + " min " + (s < 10 ? "0" : "") + s + " s" : s + " s";
  }
  function tick() {
    document.querySelectorAll(".elapsed[data-start]").forEach(function (el) {
      var start = Date.parse(el.getAttribute("data-start"));
      var endAttr = el.getAttribute("data-end");
      var end = endAttr ? Date.parse(endAttr) : Date.now();
      if (!isNaN(start)) el.textContent = fmt((end - start) / 1000);
    });
  }
  setInterval(tick, 1000);

  // Poll less often while the tab is hidden: skip requests until 5 s have passed since the last one.
  var lastPoll = 0;
  document.addEventListener("htmx:confirm", function (evt) {
    if (evt.target.id !== "poller") return;
    var now = Date.now();
    if (document.hidden && now - lastPoll < 5000) { evt.preventDefault(); return; }
    lastPoll = now;
  });

  // A card the page does not show yet (e.g. submitted from the command line) goes to the top of the list.
  document.body.addEventListener("htmx:oobErrorNoTarget", function (evt) {
    var card = evt.detail.content;
    var list = document.getElementById("render-list");
    if (!list || !card || !card.classList || !card.classList.contains("card")) return;
    if (card.id && document.getElementById(card.id)) return;
    card.removeAttribute("hx-swap-oob");
    list.prepend(card);
    htmx.process(card);
  });

  // The poller may bring a new card before the submit's own answer does: keep one card per render, the first.
  function dedupeCards() {
    var list = document.getElementById("render-list");
    if (!list) return;
    var seen = {};
    list.querySelectorAll(":scope > .card[id]").forEach(function (card) {
      if (seen[card.id]) card.remove();
      else seen[card.id] = true;
    });
  }
  document.addEventListener("htmx:afterSwap", dedupeCards);
  document.addEventListener("htmx:oobAfterSwap", dedupeCards);

  // Failed requests (403 CSRF, 404, 500, network) become a toast instead of a silent button.
  function toast(text, kind) {
    var box = document.getElementById("toasts");
    if (!box) return;
    var div = document.createElement("div");
    div.className = "toast " + (kind || "error");
    div.setAttribute("role", "alert");
    div.textContent = text;
    box.appendChild(div);
    setTimeout(function () { div.remove(); }, 8000);
  }
  document.body.addEventListener("htmx:responseError", function (evt) {
    var xhr = evt.detail.xhr;
    var type = xhr.getResponseHeader("Content-Type") || "";
    var text = type.indexOf("text/plain") === 0 && xhr.responseText ? xhr.responseText.slice(0, 300)
      : "Something went wrong (" + xhr.status + "). Try again, or reload the page.";
    toast(text);
  });
  document.body.addEventListener("htmx:sendError", function () {
    toast("The studio could not be reached. Check your connection; nothing was lost.");
  });

  // Toasts fade on their own.
  var observer = new MutationObserver(function (records) {
    records.forEach(function (r) {
      r.addedNodes.forEach(function (n) {
        if (n.nodeType === 1 && n.classList.contains("toast")) setTimeout(function () { n.remove(); }, 8000);
        else if (n.nodeType === 1) n.querySelectorAll && n.querySelectorAll(".toast").forEach(function (t) {
          setTimeout(function () { t.remove(); }, 8000);
        });
      });
    });
  });

  document.addEventListener("DOMContentLoaded", function () {
    initForms(document);
    tick();
    var box = document.getElementById("toasts");
    if (box) observer.observe(box, { childList: true, subtree: true });
  });
  document.addEventListener("htmx:afterSettle", function () { initForms(document); });
  document.addEventListener("htmx:oobAfterSwap", function () { initForms(document); });
})();
