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

  // --- browser notifications: opt-in, kept in this browser (localStorage), shown only while the tab is hidden ---
  var NOTIFY_KEY = "studio.notifications";
  var SEEN_KEY = "studio.notified";
  var supported = "Notification" in window;

  function notifying() {
    return supported && Notification.permission === "granted" && localStorage.getItem(NOTIFY_KEY) === "on";
  }

  function showToggle() {
    var button = document.querySelector("[data-testid=notify-toggle]");
    if (!button || !supported) return;
    var on = notifying();
    button.hidden = false;
    button.textContent = on ? "Notifications on" : "Turn on notifications";
    button.setAttribute("aria-pressed", on ? "true" : "false");
    button.title = on ? "Click to stop notifications from this browser"
      : "Be told when your renders finish or fail and when clips wait for your review, while this tab is hidden";
  }

  document.addEventListener("click", function (evt) {
    var button = evt.target.closest && evt.target.closest("[data-testid=notify-toggle]");
    if (!button) return;
    if (notifying()) { localStorage.setItem(NOTIFY_KEY, "off"); showToggle(); return; }
    Notification.requestPermission().then(function (permission) {
      if (permission === "granted") localStorage.setItem(NOTIFY_KEY, "on");
      else toast("This browser blocks the studio's notifications: allow them in the site settings to turn them on.");
      showToggle();
    });
  });

  // Keys already handled in this tab's session: a notice found by two polls (or two pages) is shown once.
  function seen() {
    try { return JSON.parse(sessionStorage.getItem(SEEN_KEY) || "[]"); } catch (e) { return []; }
  }

  function handleNotices(box) {
    var keys = seen();
    box.querySelectorAll("[data-key]").forEach(function (item) {
      var key = item.getAttribute("data-key");
      item.remove();
      if (keys.indexOf(key) !== -1) return;
      keys.push(key);
      if (!document.hidden || !notifying()) return;  // a visible page says it itself
      var shown = new Notification(item.getAttribute("data-title"), { body: item.getAttribute("data-body"), tag: key });
      var url = item.getAttribute("data-url");
      shown.onclick = function () { window.focus(); if (url) window.location.href = url; shown.close(); };
    });
    sessionStorage.setItem(SEEN_KEY, JSON.stringify(keys.slice(-200)));
  }

  // --- the page's poller (#poll, one per page): every 1-5 s while visible; while hidden, every 5 s with a render in
  // flight, every 15 s when notifications are on, else silent. The tab coming back polls at once. ---
  var lastPoll = 0;
  document.addEventListener("htmx:confirm", function (evt) {
    if (evt.target.id !== "poll") return;
    var now = Date.now();
    if (document.hidden) {
      var gap = evt.target.getAttribute("data-in-flight") === "1" ? 5000 : notifying() ? 15000 : Infinity;
      if (now - lastPoll < gap) { evt.preventDefault(); return; }
    }
    lastPoll = now;
  });
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && window.htmx) htmx.trigger(document.body, "studio:wake");
  });

  document.addEventListener("DOMContentLoaded", function () {
    showToggle();
    var box = document.getElementById("notices");
    if (!box) return;
    handleNotices(box);
    new MutationObserver(function () { handleNotices(box); }).observe(box, { childList: true });
  });

  return { duration: duration, clipTime: clipTime, toast: toast };
})();
