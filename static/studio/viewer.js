// The full-window review viewer (templates/viewer.html): keys, frame steps, review then next, comments at the
// moment on screen, "Save this frame". Moving to another clip swaps #viewer-stage with htmx and replaces the URL,
// so the address bar always opens this clip in this list. No inline scripts: the CSP allows only files.
(function () {
  "use strict";

  var EPSILON = 0.001; // a frame's start plus this shows that frame in every browser (never the one before)
  // While a move or a decision is on its way, the stage on screen is about to go: a key pressed meanwhile (a fast
  // reviewer) waits for the next stage to be ready (htmx has processed its forms), then acts on it.
  var busy = false, waiting = null, shown = null;
  var QUEUED = ["ArrowRight", "ArrowLeft", "a", "A", "c", "C", "r", "R"];

  function stage() { return document.getElementById("viewer-stage"); }
  function video() { return document.getElementById("viewer-video"); }
  function fps() { return parseFloat(stage().getAttribute("data-fps")) || 24; }

  function typing(el) {
    return el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.tagName === "SELECT" || el.isContentEditable);
  }

  function go(url) {
    if (!url) return false;
    var v = video();
    if (v) v.pause();
    busy = true;
    htmx.ajax("GET", url, { target: "#viewer-stage", swap: "outerHTML" });
    return true;
  }

  function ready() {
    busy = false;
    var key = waiting;
    waiting = null;
    if (key) act(key);
  }

  function play(v) {
    var started = v.play();
    if (started && started.catch) started.catch(function () { /* autoplay refused: the space bar plays it */ });
  }

  // One frame on or back: from the start of the frame on screen to the start of the next (or previous) one.
  function step(frames) {
    var v = video();
    if (!v) return;
    v.pause();
    var rate = fps(), current = Math.floor(v.currentTime * rate + 1e-6);
    var last = Math.max(0, Math.floor((v.duration || parseFloat(stage().getAttribute("data-duration"))) * rate - 1e-6));
    var target = Math.min(last, Math.max(0, current + frames));
    v.currentTime = target / rate + EPSILON;
  }

  function decide(state) {
    var button = stage().querySelector(".review-actions button[value=" + state + "]");
    if (!button) {
      studio.toast("This clip is not yours to review: reviewers review their teammates' finished, shared clips.", "info");
      return;
    }
    busy = true;
    button.click();
  }

  function openComment() {
    var form = document.getElementById("viewer-comment"), v = video();
    if (!form || !v) return;
    v.pause();
    var at = Math.floor(v.currentTime * 10) / 10; // tenths, never past the end (as the detail page pins)
    form.querySelector("[data-comment-at-value]").value = at.toFixed(1);
    form.querySelector("[data-comment-at]").textContent = studio.clipTime(at);
    form.hidden = false;
    form.querySelector("textarea").focus();
  }

  function closeComment() {
    var form = document.getElementById("viewer-comment");
    if (!form) return;
    form.hidden = true;
    form.querySelector("textarea").value = "";
    document.activeElement.blur();
  }

  function saveFrame() {
    var link = stage().querySelector("[data-save-frame]");
    if (link) { refreshFrameLink(); link.click(); }
  }

  function refreshFrameLink() {
    var v = video(), link = stage() && stage().querySelector("[data-save-frame]");
    if (!v || !link) return;
    link.href = stage().getAttribute("data-frame") + "?t=" + v.currentTime.toFixed(4);
  }

  function fullscreen() {
    if (document.fullscreenElement) { document.exitFullscreen(); return; }
    var root = document.getElementById("viewer");
    if (root.requestFullscreen) root.requestFullscreen().catch(function () {});
  }

  document.addEventListener("keydown", function (evt) {
    if (!stage() || evt.ctrlKey || evt.metaKey || evt.altKey) return;
    if (typing(evt.target)) {
      if (evt.key === "Escape") { closeComment(); evt.preventDefault(); }
      else if (evt.key === "Enter" && !evt.shiftKey && evt.target.id === "viewer-comment-text") {
        evt.preventDefault();
        evt.target.form.requestSubmit();
      }
      return;
    }
    if (act(evt.key)) evt.preventDefault();
  });

  // What a key does on the stage; false for a key the viewer leaves alone.
  function act(key) {
    if (busy && QUEUED.indexOf(key) >= 0) { waiting = key; return true; }
    var v = video(), handled = true;
    switch (key) {
      case "ArrowRight": if (!go(stage().getAttribute("data-next"))) studio.toast("This is the last clip of the list.", "info"); break;
      case "ArrowLeft": if (!go(stage().getAttribute("data-previous"))) studio.toast("This is the first clip of the list.", "info"); break;
      case " ": if (v) { if (v.paused) play(v); else v.pause(); } break;
      case ".": step(1); break;
      case ",": step(-1); break;
      case "a": case "A": decide("approved"); break;
      case "c": case "C": decide("changes_requested"); break;
      case "r": case "R": decide("rejected"); break;
      case "m": case "M": openComment(); break;
      case "s": case "S": saveFrame(); break;
      case "f": case "F": fullscreen(); break;
      case "Escape": if (!document.fullscreenElement) window.location.assign(stage().getAttribute("data-close")); break;
      default: handled = false;
    }
    return handled;
  }

  // Mouse users get the same moves: the previous/next links swap the stage instead of loading a page.
  document.addEventListener("click", function (evt) {
    var link = evt.target.closest && evt.target.closest(".viewer-nav a[href]");
    if (link && !evt.ctrlKey && !evt.metaKey && !evt.shiftKey && evt.button === 0) {
      evt.preventDefault();
      go(link.getAttribute("href"));
      return;
    }
    var seek = evt.target.closest && evt.target.closest("#viewer-stage [data-at]");
    if (seek && video()) { video().currentTime = parseFloat(seek.getAttribute("data-at")) + EPSILON; }
    if (evt.target.closest && evt.target.closest("[data-save-frame]")) refreshFrameLink();
  });

  function showTime() {
    var v = video(), s = stage();
    if (!v || !s) return;
    var label = s.querySelector("[data-time]"), number = s.querySelector("[data-frame-number]");
    if (label) label.textContent = studio.clipTime(v.currentTime);
    if (number) number.textContent = Math.floor(v.currentTime * fps() + 1e-6);
  }
  document.addEventListener("timeupdate", showTime, true);
  document.addEventListener("seeked", showTime, true);

  // After a new stage arrives: the URL follows the clip, the clip plays (a key press allows sound), focus leaves
  // any button of the old stage. After a review decision: on to the next clip.
  document.addEventListener("htmx:afterSwap", function (evt) {
    if (evt.detail.target.id !== "viewer-stage" && evt.detail.elt.id !== "viewer-stage") return;
    var s = stage();
    history.replaceState(null, "", s.getAttribute("data-url"));
    document.title = s.querySelector("[data-testid=viewer-prompt]").textContent.slice(0, 60) + " · Viewer · Studio";
    if (video()) play(video());
  });
  document.addEventListener("htmx:afterSettle", function () {
    if (stage() && stage() !== shown) { shown = stage(); ready(); }
  });
  document.addEventListener("htmx:afterRequest", function (evt) {
    var form = evt.detail.elt;
    if (evt.detail.successful && form && form.id === "viewer-comment") closeComment();
    if (!evt.detail.successful) { busy = false; waiting = null; }  // the toast says why; the keys work again
  });
  // A decision's answer replaces the form that sent it, so this is decided before the swap, while it is attached.
  document.addEventListener("htmx:beforeSwap", function (evt) {
    var form = evt.detail.requestConfig && evt.detail.requestConfig.elt;
    if (!form || !form.closest || evt.detail.xhr.status >= 300) return;
    if (form.tagName !== "FORM" || !form.closest("#viewer-stage .review-actions")) return;
    var next = stage().getAttribute("data-next");
    setTimeout(function () {
      if (!go(next)) { studio.toast("Reviewed. That was the last clip of this list.", "info"); ready(); }
    }, 0);
  });

  document.addEventListener("DOMContentLoaded", function () {
    shown = stage();
    if (video()) play(video());
  });
})();
