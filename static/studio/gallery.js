// The gallery's hover preview: a muted clip plays over the poster while the pointer (or focus) is on it.
// No inline scripts: the CSP allows only files from 'self'. Cards arrive by infinite scroll, so the listeners
// are delegated from the document (capture phase: mouseenter/mouseleave do not bubble, but they are captured).
(function () {
  "use strict";

  var PREVIEW_SECONDS = 4; // a short loop, not the whole clip

  function previewOf(thumb) {
    var video = thumb.querySelector("video");
    if (video) return video;
    video = document.createElement("video");
    video.muted = true;
    video.defaultMuted = true;
    video.setAttribute("muted", ""); // autoplay policies look at the attribute
    video.playsInline = true;
    video.loop = true;
    video.preload = "none";
    video.setAttribute("aria-hidden", "true");
    video.src = thumb.getAttribute("data-preview");
    video.addEventListener("playing", function () { thumb.classList.add("playing"); });
    video.addEventListener("timeupdate", function () {
      if (video.currentTime >= PREVIEW_SECONDS) video.currentTime = 0;
    });
    thumb.appendChild(video);
    return video;
  }

  function start(thumb) {
    var played = previewOf(thumb).play();
    if (played && played.catch) played.catch(function () { /* left before it started, or no clip */ });
  }

  function stop(thumb) {
    var video = thumb.querySelector("video");
    thumb.classList.remove("playing");
    if (!video) return;
    video.pause();
    try { video.currentTime = 0; } catch (e) { /* not loaded yet */ }
  }

  function thumbOf(evt) {
    var el = evt.target;
    return el && el.matches && el.matches("[data-preview]") ? el : null;
  }

  document.addEventListener("mouseenter", function (evt) { var t = thumbOf(evt); if (t) start(t); }, true);
  document.addEventListener("mouseleave", function (evt) { var t = thumbOf(evt); if (t) stop(t); }, true);
  document.addEventListener("focusin", function (evt) { var t = thumbOf(evt); if (t) start(t); });
  document.addEventListener("focusout", function (evt) { var t = thumbOf(evt); if (t) stop(t); });
})();
