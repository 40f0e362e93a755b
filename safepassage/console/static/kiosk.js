// Kiosk mode (templates/kiosk_*.html): an untouched screen goes back to the start and forgets what it
// showed; the print buttons. The start replaces the page in the history, so "back" does not return
// to it; a page brought back from the back-forward cache goes to the start at once. No data is read
// beyond the page's own attributes.
"use strict";
(function () {
  const body = document.body;
  const start = body.dataset.start || "/kiosk";
  const seconds = Number(body.dataset.idleSeconds) || 90;
  let timer = 0;
  function forget() {
    window.location.replace(start);
  }
  function arm() {
    window.clearTimeout(timer);
    timer = window.setTimeout(forget, seconds * 1000);
  }
  ["pointerdown", "keydown", "input", "touchstart", "wheel"].forEach(function (name) {
    document.addEventListener(name, arm, { passive: true });
  });
  arm();
  window.addEventListener("pageshow", function (event) {
    if (event.persisted && window.location.pathname !== start) {
      forget();
    }
  });
  document.querySelectorAll("[data-print]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      window.print();
    });
  });
  document.querySelectorAll("a.kiosk-finish").forEach(function (link) {
    link.addEventListener("click", function (event) {
      event.preventDefault();
      forget();
    });
  });
})();
