/* The live launch page: polls events.json about every 700 ms and shows attempts and log lines as
 * they arrive. Everything from the server is inserted as text, never as HTML. */
"use strict";
(function () {
  const POLL_MS = 700;
  const MAX_LOG_LINES = 2000; // a chatty vLLM must not make the page unusable
  const LOG_TAIL_MARK = "\nLast log lines:\n"; // how a crash's reason introduces vLLM's last lines

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }
  const fmt = (n) => (typeof n === "number" && isFinite(n) ? n.toLocaleString("en-US") : "?");
  // Times come as epoch seconds (the GPU worker) or ISO strings (the site); NaN when neither.
  const toMs = (value) => (typeof value === "number" ? value * 1000 : typeof value === "string" ? Date.parse(value) : NaN);
  const seconds = (ms) => (ms < 60000 ? (ms / 1000).toFixed(1) + " s" : Math.floor(ms / 60000) + " min " + Math.round((ms % 60000) / 1000) + " s");

  function init() {
    const root = document.getElementById("launch-live");
    if (!root) return;
    const url = root.dataset.eventsUrl;
    const attemptsBox = root.querySelector('[data-role="attempts"]');
    const statusEl = root.querySelector('[data-role="status"]');
    const resultEl = root.querySelector('[data-role="result"]');
    const connection = root.querySelector('[data-role="connection"]');
    const elapsedEl = root.querySelector('[data-role="elapsed"]');
    const createdMs = Date.parse(root.dataset.createdAt);
    const attempts = new Map();
    let ended = root.dataset.terminal === "true";
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
      const parts = { box, heading, verdict, code, log, lines: 0, startedMs: NaN, finished: false };
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

    function showResult(kind, text, url) {
      resultEl.hidden = false;
      resultEl.className = "live-result " + kind;
      if (resultEl.dataset.shown === kind + text) return; // unchanged: keep the copy button as it is
      resultEl.dataset.shown = kind + text;
      resultEl.textContent = "";
      // A crash's reason ends with vLLM's last log lines: those show as a log, not as the sentence.
      const tailAt = text.indexOf(LOG_TAIL_MARK);
      if (tailAt >= 0) {
        resultEl.append(text.slice(0, tailAt), el("p", "log-tail-title", "Last log lines:"), el("pre", "log-tail", text.slice(tailAt + LOG_TAIL_MARK.length)));
        return;
      }
      const at = url ? text.indexOf(url) : -1;
      if (at < 0) {
        resultEl.textContent = text;
        return;
      }
      // The server's URL as a link, with a button that copies it.
      const link = el("a", null, url);
      link.href = url;
      const copy = el("button", "copy-url", "Copy the URL");
      copy.type = "button";
      copy.addEventListener("click", () => {
        navigator.clipboard.writeText(url).then(() => { copy.textContent = "Copied"; }, () => { copy.textContent = "Select and copy the link"; });
      });
      resultEl.append(text.slice(0, at), link, text.slice(at + url.length), " ", copy);
    }

    function apply(event) {
      const data = event.data || {};
      if (event.late) {
        // Kept in the history only: the attempts show what the launch's saved rows say.
        const what = event.kind.replace(/_/g, " ") + (data.attempt ? " of attempt " + data.attempt : "") + (data.outcome ? " (" + data.outcome + ")" : "");
        attemptsBox.appendChild(el("p", "late-event", "Late event: " + what + " — " + event.late + "."));
      } else if (event.kind === "restarting") {
        attemptsBox.appendChild(el("p", "restarting", event.restart));
      } else if (event.kind === "attempt_started") {
        const parts = attemptBlock(data.attempt);
        const asked = typeof data.requested_len === "number" ? fmt(data.requested_len) + " tokens" : "automatic length (vLLM fits it to the GPU)";
        parts.heading.textContent = "Attempt " + data.attempt + " — " + asked;
        parts.code.textContent = event.command || (data.argv || []).join(" ");
        parts.startedMs = Date.parse(event.at);
      } else if (event.kind === "log") {
        appendLines(attemptBlock(data.attempt), data.lines || []);
      } else if (event.kind === "attempt_finished") {
        const parts = attemptBlock(data.attempt);
        parts.box.classList.remove("running");
        parts.box.classList.add(data.outcome === "ready" ? "ok" : data.outcome === "cancelled" ? "cancelled" : "failed");
        parts.finished = true;
        const tookMs = toMs(data.ended_at) - toMs(data.started_at);
        const took = isFinite(tookMs) && tookMs >= 0 ? " (" + seconds(tookMs) + ")" : "";
        // How vLLM's process ended (exit code, or killed by the launcher), for an attempt that did not serve.
        const ended = event.ended && event.ended !== "—" ? " · " + event.ended : "";
        parts.verdict.textContent = (event.verdict || data.outcome) + took + ended;
      } else if (event.kind === "limit_learned") {
        const kv = data.kv_capacity_tokens ? " (KV cache: " + fmt(data.kv_capacity_tokens) + " tokens)" : "";
        // "fits" carries no number: the length asked for fitted, which says nothing about what is above it.
        attemptsBox.appendChild(el("p", "learned", data.learned_from === "fits"
          ? "The length asked for fits this GPU" + kv + "."
          : "Learned: this GPU holds " + fmt(data.max_model_len) + " tokens of this model" + kv + "."));
      }
    }

    // While something runs: how long the launch and the current attempt have taken so far.
    function tick() {
      if (ended) return;
      const now = Date.now();
      if (elapsedEl && isFinite(createdMs)) elapsedEl.textContent = "for " + seconds(now - createdMs);
      attempts.forEach((parts) => {
        if (!parts.finished && isFinite(parts.startedMs)) parts.verdict.textContent = "running… " + seconds(Math.max(0, now - parts.startedMs));
      });
    }
    setInterval(tick, 1000);

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
      // Stop is offered only while there is something to stop.
      const stop = document.querySelector('[data-role="stop-link"]');
      if (stop) stop.hidden = !answer.can_stop;
      // One state at a time: serving, stopping, or how it ended, with the reason.
      if (answer.summary) showResult(answer.summary_kind, answer.summary, answer.status === "ready" ? answer.server_url : "");
      else resultEl.hidden = true;
      if (answer.terminal) {
        ended = true;
        if (elapsedEl) elapsedEl.textContent = "";
        attempts.forEach((parts) => {
          // The server says why an attempt still running was cut short (e.g. the GPU worker restarted).
          if (!parts.finished) parts.verdict.textContent = answer.interrupted || "Interrupted: the launch ended (" + answer.status_display.toLowerCase() + ").";
        });
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
