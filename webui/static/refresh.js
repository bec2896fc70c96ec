// Keeps a server-rendered page current: every few seconds it fetches the same
// URL and swaps in the parts marked data-refresh-part, so the reader keeps the
// scroll position, focus and ticked boxes that a full reload would lose.
// The page sets the pace with data-refresh-ms (and may change it, or drop it to
// stop). Without JavaScript the page's <noscript> meta refresh does the job.
"use strict";

(function () {
  const root = document.querySelector("[data-refresh-ms]");
  if (!root || !window.fetch || !window.DOMParser) return;
  let every = Number(root.dataset.refreshMs) || 5000;

  // Wait while the reader is in the middle of something inside a part.
  function busy() {
    const active = document.activeElement;
    if (active && active.closest("[data-refresh-part]") && active.matches("input, select, textarea")) {
      return true;
    }
    return document.querySelector("[data-refresh-part] input[type=checkbox]:checked") !== null;
  }

  async function refresh() {
    if (!document.hidden && !busy()) {
      try {
        const response = await fetch(window.location.href, {credentials: "same-origin"});
        if (response.ok && !response.redirected) {
          const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
          // Ask again: the reader may have ticked a box while the page was on its way.
          const swap = !busy();
          if (swap) {
            for (const part of document.querySelectorAll("[data-refresh-part]")) {
              const name = part.dataset.refreshPart;
              const next = fresh.querySelector('[data-refresh-part="' + name + '"]');
              if (next) part.replaceWith(document.importNode(next, true));
            }
          }
          const pace = fresh.querySelector("[data-refresh-ms]");
          if (!pace) return; // the page no longer wants refreshing
          every = Number(pace.dataset.refreshMs) || every;
          if (swap) root.dataset.refreshedAt = new Date().toISOString();
        }
      } catch (err) {
        // The server is restarting or the network is down: try again later.
      }
    }
    window.setTimeout(refresh, every);
  }

  window.setTimeout(refresh, every);
})();
