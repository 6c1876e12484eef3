// Follows a running job's log on /ui/jobs/runs/ID: polls the page's log endpoint for
// the text after what the page shows, appends it, and stops when the run ends.
// A file, not an inline script, so a Content-Security-Policy "script-src 'self'"
// allows it; text goes in as text nodes, never as HTML.
(function () {
  "use strict";
  var log = document.getElementById("log");
  if (!log || !log.dataset.follow) {
    return;
  }
  var url = log.dataset.follow;
  var offset = Number(log.dataset.offset) || 0;
  var POLL_MS = 1000;
  var failures = 0;

  function atBottom() {
    return window.innerHeight + window.scrollY >= document.body.scrollHeight - 8;
  }

  function show(id, text) {
    var node = document.getElementById(id);
    if (node && text) {
      node.textContent = text;
      node.hidden = false;
    }
  }

  function finish(data) {
    show("run-status", data.status);
    show("run-ended", data.ended);
    show("run-error", data.error);
    var note = document.getElementById("log-following");
    if (note) {
      note.textContent = "The run ended: " + data.status + ".";
    }
    log.classList.remove("following");
    log.removeAttribute("data-follow");
  }

  function poll() {
    var options = { cache: "no-store", credentials: "same-origin", headers: { Accept: "application/json" } };
    fetch(url + "?offset=" + offset, options)
      .then(function (response) {
        if (response.redirected) {
          failures = 10; // signed out: the sign-in page is no log; stop asking
        }
        if (!response.ok || response.redirected) {
          throw new Error("HTTP " + response.status);
        }
        return response.json();
      })
      .then(function (data) {
        failures = 0;
        if (data.text) {
          var stick = atBottom();
          log.appendChild(document.createTextNode(data.text));
          if (stick) {
            window.scrollTo(0, document.body.scrollHeight);
          }
        }
        offset = data.offset;
        if (data.finished) {
          finish(data);
        } else {
          window.setTimeout(poll, POLL_MS);
        }
      })
      .catch(function () {
        failures += 1; // the server restarting, say: back off, give up after a while
        if (failures < 10) {
          window.setTimeout(poll, POLL_MS * failures);
        }
      });
  }

  window.setTimeout(poll, POLL_MS);
})();
