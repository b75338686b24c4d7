// llm-connect dashboard: the only script. It refreshes the live part of a page in place, submits filter
// forms when a choice changes and asks before a destructive button. Everything works without it (the
// server renders whole pages); it is loaded from this origin only (the pages' Content-Security-Policy).
"use strict";

(function () {
  const HEADER = { "X-Requested-With": "llmc-refresh" };

  function editing(main) {
    const el = document.activeElement;
    return !!el && main.contains(el) && (el.tagName === "INPUT" || el.tagName === "SELECT");
  }

  function refresh(main, seconds) {
    let busy = false;
    async function tick() {
      if (busy || document.hidden || editing(main)) return;  // never pull a form from under the user
      busy = true;
      try {
        const resp = await fetch(window.location.href, { headers: HEADER, credentials: "same-origin", cache: "no-store" });
        if (resp.status === 401) { window.location.reload(); return; }  // the session ended: to the login page
        if (resp.ok) {
          const html = await resp.text();
          main.innerHTML = html;  // the server's own escaped HTML
          wire(main);
          main.dataset.refreshedAt = String(Date.now());
        }
      } catch (err) {
        // offline for a moment: try again on the next tick
      } finally {
        busy = false;
      }
    }
    window.setInterval(tick, seconds * 1000);
  }

  function wire(root) {
    root.querySelectorAll("form[data-autosubmit]").forEach(function (form) {
      form.querySelectorAll("select").forEach(function (sel) {
        sel.addEventListener("change", function () { form.requestSubmit ? form.requestSubmit() : form.submit(); });
      });
    });
    root.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (ev) {
        if (!window.confirm(form.dataset.confirm)) ev.preventDefault();
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    wire(document);
    const main = document.querySelector("main[data-refresh]");
    if (main) {
      const seconds = Math.max(2, parseInt(main.dataset.refresh, 10) || 10);
      refresh(main, seconds);
    }
  });
})();
