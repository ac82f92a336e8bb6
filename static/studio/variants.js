// The contact sheet: one scrubber and one clock for every take. lineage.js (loaded first) keeps the players
// themselves together: moving one player, by its controls or from here, moves the others. No inline scripts.
(function () {
  "use strict";

  function init() {
    var scrub = document.querySelector("[data-sync-scrub]");
    var clock = document.querySelector("[data-sync-clock]");
    var players = Array.prototype.slice.call(document.querySelectorAll("video[data-sync]"));
    if (!scrub || !players.length) {
      if (scrub) scrub.disabled = true;
      return;
    }
    var dragging = false;

    function longest() {
      return players.reduce(function (most, v) { return isFinite(v.duration) ? Math.max(most, v.duration) : most; }, 0);
    }

    function show() {
      var leader = players[0];
      scrub.max = String(longest() || 0);
      if (!dragging) scrub.value = String(leader.currentTime);
      if (clock) clock.textContent = studio.clipTime(leader.currentTime);
    }

    // Dragging moves every take to the same moment (the end of a shorter one), through lineage.js's marked seeks.
    scrub.addEventListener("input", function () {
      dragging = true;
      var time = parseFloat(scrub.value) || 0;
      if (window.studioSync) window.studioSync.seekAll(time);
      if (clock) clock.textContent = studio.clipTime(time);
    });
    scrub.addEventListener("change", function () { dragging = false; });

    players.forEach(function (v) {
      ["loadedmetadata", "timeupdate", "seeked"].forEach(function (name) { v.addEventListener(name, show); });
    });
    show();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
