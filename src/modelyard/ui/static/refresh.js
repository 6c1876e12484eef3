// Refreshes each element with data-refresh="URL" every data-every seconds (default 2)
// with the HTML the server renders there, so a page updates without a reload.
// A file of its own, not inline: the page works under Content-Security-Policy script-src 'self'.
(function () {
  "use strict";
  function follow(el) {
    var every = Math.max(1, Number(el.dataset.every || 2)) * 1000;
    var busy = false;
    setInterval(function () {
      if (busy || document.hidden) return;
      busy = true;
      fetch(el.dataset.refresh, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (r) {
          if (r.redirected || !r.ok) {  // the session ended, or the server answers an error
            el.dataset.stale = "true";
            el.dataset.why = r.redirected ? "your session ended: reload the page to sign in again"
              : "the server answered " + r.status;
            return null;
          }
          return r.text();
        })
        .then(function (html) {
          if (html !== null) { el.innerHTML = html; el.dataset.stale = "false"; el.dataset.updated = String(Date.now()); }
        })
        .catch(function () { el.dataset.stale = "true"; el.dataset.why = "the server does not answer"; })
        .finally(function () { busy = false; });
    }, every);
  }
  document.querySelectorAll("[data-refresh]").forEach(follow);
})();
