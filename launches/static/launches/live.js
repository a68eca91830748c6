/* The live launch page: polls events.json about every 700 ms and shows attempts and log lines as
 * they arrive. Everything from the server is inserted as text, never as HTML. */
"use strict";
(function () {
  const POLL_MS = 700;
  const MAX_LOG_LINES = 2000; // a chatty vLLM must not make the page unusable

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }
  const fmt = (n) => (n === null || n === undefined ? "?" : Number(n).toLocaleString("en-US"));

  function init() {
    const root = document.getElementById("launch-live");
    if (!root) return;
    const url = root.dataset.eventsUrl;
    const attemptsBox = root.querySelector('[data-role="attempts"]');
    const statusEl = root.querySelector('[data-role="status"]');
    const resultEl = root.querySelector('[data-role="result"]');
    const connection = root.querySelector('[data-role="connection"]');
    const attempts = new Map();
    let after = 0;
    let failures = 0;

    function attemptBlock(number) {
      if (attempts.has(number)) return attempts.get(number);
      const box = el("section", "module attempt running");
      box.dataset.attempt = number;
      const heading = el("h2", null, "Attempt " + number);
      const verdict = el("p", "verdict", "running…");
      const argv = el("details", "argv");
      argv.appendChild(el("summary", null, "command"));
      const code = el("code");
      argv.appendChild(code);
      const log = el("pre", "log");
      box.append(heading, verdict, argv, log);
      attemptsBox.appendChild(box);
      const parts = { box, heading, verdict, code, log, lines: 0 };
      attempts.set(number, parts);
      return parts;
    }

    function appendLines(parts, lines) {
      const atBottom = parts.log.scrollTop + parts.log.clientHeight >= parts.log.scrollHeight - 4;
      parts.log.appendChild(document.createTextNode(lines.join("\n") + "\n"));
      parts.lines += lines.length;
      while (parts.lines > MAX_LOG_LINES && parts.log.firstChild) {
        parts.lines -= (parts.log.firstChild.textContent.match(/\n/g) || []).length;
        parts.log.removeChild(parts.log.firstChild);
      }
      if (atBottom) parts.log.scrollTop = parts.log.scrollHeight;
    }

    function showResult(kind, text) {
      resultEl.hidden = false;
      resultEl.className = "live-result " + kind;
      resultEl.textContent = text;
    }

    function apply(event) {
      const data = event.data || {};
      if (event.kind === "attempt_started") {
        const parts = attemptBlock(data.attempt);
        const asked = data.requested_len ? fmt(data.requested_len) + " tokens" : "automatic length";
        parts.heading.textContent = "Attempt " + data.attempt + " — " + asked;
        parts.code.textContent = (data.argv || []).join(" ");
      } else if (event.kind === "log") {
        appendLines(attemptBlock(data.attempt), data.lines || []);
      } else if (event.kind === "attempt_finished") {
        const parts = attemptBlock(data.attempt);
        parts.box.classList.remove("running");
        parts.box.classList.add(data.outcome === "ready" ? "ok" : "failed");
        let took = "";
        if (data.started_at && data.ended_at) {
          took = " (" + ((Date.parse(data.ended_at) - Date.parse(data.started_at)) / 1000).toFixed(1) + " s)";
        }
        parts.verdict.textContent = (event.verdict || data.outcome) + took;
        if (data.exit_code !== null && data.exit_code !== undefined) parts.verdict.title = "exit code " + data.exit_code;
      } else if (event.kind === "limit_learned") {
        const kv = data.kv_capacity_tokens ? " (KV cache: " + fmt(data.kv_capacity_tokens) + " tokens)" : "";
        // "fits" carries no number: the length asked for fitted, which says nothing about what is above it.
        attemptsBox.appendChild(el("p", "learned", data.learned_from === "fits"
          ? "The length asked for fits this GPU" + kv + "."
          : "Learned: this GPU holds " + fmt(data.max_model_len) + " tokens of this model" + kv + "."));
      } else if (event.kind === "ready") {
        showResult("ok", "Serving at " + data.url + " with a context of " + fmt(data.max_model_len) + " tokens.");
      } else if (event.kind === "failed") {
        showResult("failed", "Failed: " + (data.reason || data.outcome));
      }
    }

    function showStatus(answer) {
      statusEl.textContent = answer.status_display;
      root.querySelector('[data-role="restarts"]').textContent = answer.restarts || "";
      statusEl.className = "status status-" + answer.status;
      root.dataset.status = answer.status;
      root.querySelectorAll("[data-stage]").forEach((stage) => {
        const order = ["queued", "starting", "ready"];
        const now = order.indexOf(answer.status === "stopping" ? "ready" : answer.status);
        stage.classList.toggle("done", now > order.indexOf(stage.dataset.stage) || answer.status === "ready");
        stage.classList.toggle("current", stage.dataset.stage === answer.status);
      });
      if (answer.terminal) {
        const stop = document.querySelector('[data-role="stop-link"]');
        if (stop) stop.hidden = true;
        if (resultEl.hidden) showResult(answer.status === "stopped" ? "ok" : "failed", answer.status_display + (answer.reason ? ": " + answer.reason : "."));
      }
      if (answer.status === "ready" && answer.server_url && resultEl.hidden) {
        showResult("ok", "Serving at " + answer.server_url + " with a context of " + fmt(answer.context_length) + " tokens.");
      }
    }

    function poll() {
      fetch(url + "?after=" + after, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then((response) => (response.ok ? response.json() : Promise.reject(response.status)))
        .then((answer) => {
          failures = 0;
          connection.textContent = "";
          answer.events.forEach(apply);
          after = answer.last_seq;
          showStatus(answer);
          if (answer.more) poll();
          else if (!answer.terminal) setTimeout(poll, POLL_MS);
        })
        .catch((problem) => {
          failures += 1;
          connection.textContent = "Lost contact with the site (" + problem + "); trying again…";
          setTimeout(poll, Math.min(POLL_MS * 2 ** failures, 10000));
        });
    }
    poll();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
