// jobq-web: refreshes each element marked data-live="URL" every data-every seconds (5 by default) with
// the HTML fragment the dashboard serves at URL (relative to the page's <base>). Nothing else: every
// page works without it.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const el of document.querySelectorAll("[data-live]")) {
    const every = Math.max(1, Number(el.dataset.every) || 5) * 1000;
    const url = new URL(el.dataset.live, document.baseURI);
    setInterval(async () => {
      if (document.hidden) return;
      try {
        const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
        if (response.ok) el.innerHTML = await response.text();
      } catch (_) {
        // Offline for a moment: the next tick tries again.
      }
    }, every);
  }
});
