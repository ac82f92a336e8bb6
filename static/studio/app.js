// What every page shares (base.html loads it before any page script): failed requests become toasts, toasts fade,
// and the formats the ticking clocks need, mirroring studio/formatting.py. No inline scripts: the CSP allows only
// files from 'self'.
var studio = (function () {
  "use strict";

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  // formatting.duration: "42 s", "3 min 05 s", "1 h 02 min"; hours === false keeps counting minutes.
  function duration(seconds, hours) {
    var total = Math.max(0, Math.round(seconds));
    var h = hours === false ? 0 : Math.floor(total / 3600), rest = total - h * 3600;
    var m = Math.floor(rest / 60), s = rest % 60;
    if (h) return h + " h " + pad(m) + " min";
    return m ? m + " min " + pad(s) + " s" : s + " s";
  }

  // formatting.clip_time: a moment in a clip, truncated to the tenth: 12.34 -> "0:12.3".
  function clipTime(seconds) {
    var tenths = Math.floor(seconds * 10), minutes = Math.floor(tenths / 600), rest = tenths % 600;
    return minutes + ":" + pad(Math.floor(rest / 10)) + "." + (rest % 10);
  }

  var TOAST_MS = 8000;

  function fade(toast) { setTimeout(function () { toast.remove(); }, TOAST_MS); }

  // Failed requests (403 CSRF, 404, 500, network) become a toast instead of a silent button.
  function toast(text, kind) {
    var box = document.getElementById("toasts");
    if (!box) return;
    var div = document.createElement("div");
    div.className = "toast " + (kind || "error");
    div.setAttribute("role", "alert");
    div.textContent = text;
    box.appendChild(div);  // the observer below fades it
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

  // Toasts added after the page loaded fade on their own, whether this script or an answer (messages, out of band)
  // added them.
  var observer = new MutationObserver(function (records) {
    records.forEach(function (r) {
      r.addedNodes.forEach(function (n) {
        if (n.nodeType !== 1) return;
        if (n.classList.contains("toast")) fade(n);
        else n.querySelectorAll(".toast").forEach(fade);
      });
    });
  });
  document.addEventListener("DOMContentLoaded", function () {
    var box = document.getElementById("toasts");
    if (box) observer.observe(box, { childList: true, subtree: true });
  });

  return { duration: duration, clipTime: clipTime, toast: toast };
})();
