// essentry-sync console: small enhancements only; every page works without this script.
(function () {
  "use strict";
  // Live progress of a running cycle: poll its progress endpoint and update the page in place;
  // reload once it has finished, to show the report.
  var box = document.getElementById("progress");
  if (box && box.getAttribute("data-finished") === "no") {
    var url = box.getAttribute("data-progress-url");
    var order = ["starting", "reading", "planning", "applying", "finished"];
    var set = function (id, v) { var el = document.getElementById(id); if (el) { el.textContent = String(v); } };
    var tick = function () {
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { if (!r.ok) { throw new Error(String(r.status)); } return r.json(); })
        .then(function (run) {
          var p = run.progress;
          set("p-phase", p.phase);
          set("p-requests", p.graph_requests);
          set("p-users", p.users_read);
          set("p-planned", p.changes_planned);
          set("p-applied", p.changes_applied);
          var at = order.indexOf(p.phase);
          box.querySelectorAll(".phases li").forEach(function (li) {
            var i = order.indexOf(li.getAttribute("data-phase"));
            li.className = i < at ? "done" : (i === at ? "current" : "");
          });
          if (run.finished) { window.location.reload(); } else { window.setTimeout(tick, 400); }
        })
        .catch(function () { window.setTimeout(tick, 2000); });
    };
    tick();
  }
  // Confirmation before a destructive form (the checkbox already guards it without JS).
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (e) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { e.preventDefault(); }
    });
  });
})();
