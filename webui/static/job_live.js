// Live job page: follows /jobs/<id>/events (server-sent events) and updates
// the status, progress bar, step states and log panel without reloading.
// Without JavaScript the page refreshes itself instead (see <noscript>).
"use strict";

(function () {
  const root = document.getElementById("job");
  if (!root || !root.dataset.eventsUrl || !window.EventSource) return;

  const logs = document.getElementById("job-logs");
  const liveState = document.getElementById("live-state");
  let replaced = false; // the stream replays every line: it replaces the stored ones

  // Follow the bottom only while the reader is there; scrolling up stops it.
  function atBottom() {
    return logs.scrollHeight - logs.scrollTop - logs.clientHeight < 8;
  }

  function appendLog(entry) {
    const follow = atBottom();
    if (!replaced) {
      logs.textContent = "";
      replaced = true;
    }
    const span = document.createElement("span");
    span.className = "log-" + entry.stream;
    span.textContent = entry.line;
    logs.append(span, "\n");
    if (follow) logs.scrollTop = logs.scrollHeight;
  }

  function setBadge(el, status) {
    el.textContent = status;
    el.className = el.className.replace(/\bstatus-\S+/, "status-" + status);
  }

  // Seconds left at the pace so far, worded like the server's (see _format_eta).
  let startedAt = root.dataset.startedAt ? Date.parse(root.dataset.startedAt) : null;
  function eta(done, total) {
    if (!startedAt || done <= 0 || done >= total) return "";
    const left = (Date.now() - startedAt) / 1000 / done * (total - done);
    if (left < 60) return "about " + Math.max(1, Math.round(left)) + " s left";
    if (left < 3600) return "about " + Math.round(left / 60) + " min left";
    return "about " + (left / 3600).toFixed(1) + " h left";
  }

  function showStatus(data) {
    if (data.status === "running" && !startedAt) startedAt = Date.now();
    setBadge(document.getElementById("job-status"), data.status);
    const bar = document.getElementById("job-progress");
    bar.max = data.progress.total || 1;
    bar.value = data.progress.done;
    document.getElementById("job-progress-text").textContent =
      data.progress.done + "/" + data.progress.total;
    document.getElementById("job-eta").textContent =
      data.status === "running" ? eta(data.progress.done, data.progress.total) : "";
    for (const step of data.steps) {
      const badge = document.querySelector(
        'tr[data-step-position="' + step.position + '"] .step-status');
      if (badge) setBadge(badge, step.status);
    }
  }

  // EventSource reconnects by itself when a stream ends (the server ends each
  // one after JOBSYS_STREAM_MAX_S) and sends Last-Event-ID. A refused stream
  // (429 when too many live views are open) closes it for good: open a new
  // one later, resuming after the last event seen.
  let lastId = "";
  function seen(e) { if (e.lastEventId) lastId = e.lastEventId; }

  function follow() {
    const url = root.dataset.eventsUrl +
      (lastId ? "?last_event_id=" + encodeURIComponent(lastId) : "");
    const source = new EventSource(url);
    source.onopen = function () { liveState.textContent = "(live)"; };
    source.onerror = function () {
      if (source.readyState !== EventSource.CLOSED) {
        liveState.textContent = "(reconnecting…)";
        return;
      }
      liveState.textContent = "(live view paused: too many open; retrying in 15 s)";
      window.setTimeout(follow, 15000);
    };
    source.addEventListener("log", function (e) { seen(e); appendLog(JSON.parse(e.data)); });
    source.addEventListener("status", function (e) { seen(e); showStatus(JSON.parse(e.data)); });
    source.addEventListener("end", function () {
      // The job is over: load the final page (results, tasks, stored logs, actions).
      source.close();
      liveState.textContent = "(ended)";
      window.setTimeout(function () { window.location.reload(); }, 500);
    });
  }
  follow();
})();
