// The detail page's behaviours: copy the prompt, seek the player to a pinned comment, pin a new comment to the
// player's current time, clear the comment form once posted. No inline scripts: the CSP allows only files.
(function () {
  "use strict";

  function player() { return document.getElementById("player"); }

  // The player's time, truncated to tenths: never a moment past the clip's end.
  function now() {
    var p = player();
    return p ? Math.floor((p.currentTime || 0) * 10) / 10 : 0;
  }

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    // Plain http off localhost has no clipboard API: select the text and copy the old way.
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    area.remove();
    return ok ? Promise.resolve() : Promise.reject(new Error("copy failed"));
  }

  document.addEventListener("click", function (evt) {
    var copy = evt.target.closest && evt.target.closest("[data-copy]");
    if (copy) {
      var source = document.querySelector(copy.getAttribute("data-copy"));
      if (!source) return;
      var label = copy.textContent;
      copyText(source.textContent).then(
        function () { copy.textContent = "Copied"; },
        function () { copy.textContent = "Select the prompt and copy it"; }
      );
      setTimeout(function () { copy.textContent = label; }, 1500);
      return;
    }
    var seek = evt.target.closest && evt.target.closest("[data-at]");
    var p = player();
    if (seek && p) {
      var at = parseFloat(seek.getAttribute("data-at"));
      if (isNaN(at)) return;
      p.currentTime = at;
      var playing = p.play();
      if (playing && playing.catch) playing.catch(function () {});  // autoplay refused: it still seeked
    }
  });

  // Capture phase: fill `at` before htmx (listening on the form) reads the form's values.
  document.addEventListener("submit", function (evt) {
    var form = evt.target;
    if (form.id !== "comment-form") return;
    var pin = form.querySelector("[data-pin]");
    form.querySelector("#comment-at").value = pin && pin.checked && player() ? now().toFixed(1) : "";
  }, true);

  document.addEventListener("timeupdate", function (evt) {
    if (evt.target.id !== "player") return;
    var label = document.querySelector("[data-pin-label]");
    if (label) label.textContent = studio.clipTime(now());  // as the clip_time filter shows it
  }, true);

  document.addEventListener("htmx:afterRequest", function (evt) {
    var form = evt.detail.elt;
    if (form && form.id === "comment-form" && evt.detail.successful) {
      form.querySelector("textarea").value = "";
      form.querySelector("#comment-at").value = "";
    }
  });
})();
