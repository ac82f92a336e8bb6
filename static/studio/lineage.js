// The lineage page: the players play, pause and seek together. No inline scripts: the CSP allows only 'self'.
//
// Feedback guard: moving player B because the user moved player A makes B fire its own play/pause/seeked
// events, which must not be mirrored back (A would jump to B's clamped time, and so on). Every change this
// script makes is marked on the player it makes it to; the event that change fires clears the mark instead of
// being mirrored. Players already where they should be are left alone, so no event is asked for at all.
(function () {
  "use strict";

  var CLOSE_ENOUGH = 0.3; // seconds: players closer than this are in sync
  var marks = new WeakMap(); // player -> {play: n, pause: n, seek: time | null}

  function players() {
    return Array.prototype.slice.call(document.querySelectorAll("video[data-sync]"));
  }

  function syncing() {
    var box = document.querySelector("[data-sync-enabled]");
    return !box || box.checked;
  }

  function markOf(video) {
    var mark = marks.get(video);
    if (!mark) {
      mark = { play: 0, pause: 0, seek: null };
      marks.set(video, mark);
    }
    return mark;
  }

  // Where `video` should be when its leader is at `time`: the same moment, or its end if it is shorter.
  function targetFor(video, time) {
    return isFinite(video.duration) ? Math.min(time, video.duration) : time;
  }

  function seekTo(video, time) {
    if (video.readyState < 1) return; // no metadata yet: it starts where the others are when it plays
    var target = targetFor(video, time);
    if (Math.abs(video.currentTime - target) < CLOSE_ENOUGH) return;
    markOf(video).seek = target;
    video.currentTime = target;
  }

  function play(video) {
    if (!video.paused) return;
    markOf(video).play += 1;
    var started = video.play();
    if (started && started.catch) {
      started.catch(function () { markOf(video).play = 0; }); // refused (e.g. autoplay policy): no event comes
    }
  }

  function pause(video) {
    if (video.paused) return;
    markOf(video).pause += 1;
    video.pause();
  }

  function others(video) {
    return players().filter(function (other) { return other !== video; });
  }

  function onPlay(evt) {
    var video = evt.target, mark = markOf(video);
    if (mark.play > 0) { mark.play -= 1; return; } // our own echo
    if (!syncing()) return;
    others(video).forEach(function (other) {
      if (isFinite(other.duration) && video.currentTime >= other.duration - 0.05) return; // it has ended by then
      seekTo(other, video.currentTime);
      play(other);
    });
  }

  function onPause(evt) {
    var video = evt.target, mark = markOf(video);
    if (mark.pause > 0) { mark.pause -= 1; return; }
    if (video.ended || !syncing()) return; // a shorter clip reaching its end does not stop the others
    others(video).forEach(pause);
  }

  function onSeeked(evt) {
    var video = evt.target, mark = markOf(video);
    var ours = mark.seek !== null && Math.abs(video.currentTime - mark.seek) < CLOSE_ENOUGH;
    mark.seek = null;
    if (ours || !syncing()) return;
    others(video).forEach(function (other) { seekTo(other, video.currentTime); });
  }

  function updateToggle() {
    var toggle = document.querySelector("[data-sync-toggle]");
    if (!toggle) return;
    var playing = players().some(function (video) { return !video.paused && !video.ended; });
    toggle.textContent = playing ? "Pause all" : "Play all";
    toggle.setAttribute("aria-pressed", playing ? "true" : "false");
  }

  function playOrPauseAll() {
    var list = players();
    if (list.some(function (video) { return !video.paused && !video.ended; })) {
      list.forEach(pause);
    } else {
      var first = list[0];
      var start = !first || first.ended ? 0 : first.currentTime;
      list.forEach(function (video) {
        if (video.ended || (isFinite(video.duration) && start >= video.duration - 0.05)) {
          markOf(video).seek = 0; // a finished clip starts over with the rest
          video.currentTime = 0;
        } else {
          seekTo(video, start);
        }
        play(video);
      });
    }
    updateToggle();
  }

  function init() {
    players().forEach(function (video, index) {
      if (index > 0) video.muted = true; // one soundtrack at a time; each player can unmute its own
      video.addEventListener("play", onPlay);
      video.addEventListener("pause", onPause);
      video.addEventListener("seeked", onSeeked);
      ["play", "pause", "ended"].forEach(function (name) { video.addEventListener(name, updateToggle); });
    });
    var toggle = document.querySelector("[data-sync-toggle]");
    if (toggle) {
      toggle.hidden = players().length === 0;
      toggle.addEventListener("click", playOrPauseAll);
    }
    updateToggle();
  }

  // For the contact sheet's scrubber (variants.js): move every player at once, as this script's own seeks, so their
  // seeked events are not mirrored back while a later seek is under way.
  window.studioSync = { seekAll: function (time) { players().forEach(function (video) { seekTo(video, time); }); } };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
