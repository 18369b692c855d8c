// Live updates over server-sent events: job trees (progress bars, states) and queue counts.
(function () {
  function setText(el, text) { if (el && el.textContent !== String(text)) el.textContent = text; }

  function updateTree(tree) {
    setText(document.getElementById("tree-state"), tree.state);
    var treeBar = document.getElementById("tree-progress");
    if (treeBar && tree.progress !== undefined) treeBar.value = tree.progress;
    (tree.nodes || []).forEach(function (node) {
      var row = document.querySelector('[data-job="' + CSS.escape(node.message_id) + '"]');
      if (!row) return;
      var bar = row.querySelector("progress");
      if (bar) bar.value = node.progress;
      setText(row.querySelector(".pct"), Math.round(node.progress * 100) + "%");
      var state = row.querySelector(".state");
      if (state) { setText(state, node.state); state.className = "state state-" + node.state; }
      setText(row.querySelector(".status"), node.status || "");
      setText(row.querySelector(".attempts"), node.attempts);
      // The asked job's own table moves with its row (the end of the tree reloads the rest).
      var detail = document.querySelector('[data-job-detail="' + CSS.escape(node.message_id) + '"]');
      if (!detail) return;
      var detailState = detail.querySelector(".state");
      if (detailState) { setText(detailState, node.state); detailState.className = "state state-" + node.state; }
      setText(detail.querySelector(".status"), node.status || "");
      setText(detail.querySelector(".attempts"), node.attempts);
      if (node.deliveries !== undefined) setText(detail.querySelector(".deliveries"), node.deliveries);
      if (node.worker) setText(detail.querySelector(".worker"), node.worker);
    });
  }

  function updateQueues(data) {
    var activity = document.getElementById("activity");
    if (activity && data.activity) {
      ["jobs_per_minute", "jobs_last_hour", "failures_last_hour"].forEach(function (k) {
        setText(activity.querySelector("." + k), data.activity[k]);
      });
    }
    (data.queues || []).forEach(function (q) {
      var row = document.querySelector('[data-queue="' + CSS.escape(q.queue) + '"]');
      if (!row) return;
      ["queued", "in_flight", "delayed", "dead"].forEach(function (k) { setText(row.querySelector("." + k), q[k]); });
      var workers = row.querySelector(".workers");
      if (workers) {
        setText(workers, q.workers.length ? q.workers.length : "none");
        workers.className = "workers" + (q.workers.length ? "" : " none");
      }
    });
  }

  var body = document.body;
  if (body.dataset.treeEvents) {
    var trees = new EventSource(body.dataset.treeEvents);
    trees.addEventListener("tree", function (e) { updateTree(JSON.parse(e.data)); });
    // The tree has ended: reload once so the result, error and timings show in full.
    trees.addEventListener("end", function () { trees.close(); if (body.dataset.live === "1") location.reload(); });
  }
  if (body.dataset.queueEvents) {
    var queues = new EventSource(body.dataset.queueEvents);
    queues.addEventListener("queues", function (e) { updateQueues(JSON.parse(e.data)); });
  }
})();
