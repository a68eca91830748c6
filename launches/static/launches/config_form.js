/* The launch config form's context preview: recomputed on every change, without a reload.
 *
 * The server sends what the form cannot know (the model's native context and the limit learned for
 * the host's GPU with these memory options); the arithmetic is done here so the preview follows each
 * keystroke. The server validates the same rules when the form is saved.
 */
"use strict";
(function () {
  const PREVIEW_FIELDS = [
    "model", "host", "gpu_indices", "gpu_memory_utilization", "dtype", "quantization",
    "kv_cache_dtype", "tensor_parallel_size", "max_num_batched_tokens", "enforce_eager",
  ];
  const LIVE_FIELDS = ["enable_yarn", "yarn_factor", "context_cap"];
  const WARN_FACTOR = 2.0;

  const field = (name) => document.getElementById("id_" + name);
  const fmt = (n) => Math.round(n).toLocaleString("en-US");
  const fmtK = (n) => (n % 1024 === 0 || n >= 10240 ? Math.round(n / 1024) : (n / 1024).toFixed(1)) + "K";

  function readValues(initial) {
    // On a read-only page (viewers) there are no inputs: use the saved values instead.
    const yarn = field("enable_yarn");
    const factor = field("yarn_factor");
    const cap = field("context_cap");
    return {
      enableYarn: yarn ? yarn.checked : Boolean(initial.enable_yarn),
      factor: factor ? parseFloat(factor.value) : Number(initial.yarn_factor || 1),
      cap: cap ? parseInt(cap.value, 10) || null : initial.context_cap || null,
    };
  }

  function setText(box, role, text) {
    const el = box.querySelector('[data-role="' + role + '"]');
    el.textContent = text || "";
    if (el.tagName === "DIV") el.hidden = !text;
  }

  function render(box, facts, initial) {
    const values = readValues(initial);
    const native = facts.native_context;
    const limit = facts.hw_limit;
    // A measured ceiling caps the launch; a length that merely fitted is only known to fit.
    const ceiling = limit && facts.hw_limit_is_ceiling !== false;
    const hw = !limit ? "HW limit: not yet measured" : ceiling ? "HW limit: " + fmtK(limit) : "HW limit: at least " + fmtK(limit) + " fits";
    const where = facts.profile ? " (" + facts.profile + ")" : facts.model ? " (host's GPU not reported)" : "";
    if (!facts.model) {
      setText(box, "info", "Choose a model and a host to see the context this config asks for.");
      ["requested", "seed", "note", "warning", "cap"].forEach((role) => setText(box, role, ""));
      return;
    }
    setText(box, "info", "Model: " + (native ? fmtK(native) + " native" : "native context unknown") + " | " + hw + where);
    const validFactor = values.factor >= 1 && values.factor <= 8 && Math.abs(values.factor * 2 - Math.round(values.factor * 2)) < 1e-9;
    const factor = values.enableYarn && validFactor ? values.factor : 1;
    let requested = null;
    if (native) {
      requested = Math.floor(native * factor);
      let text = "Requested context: " + fmt(native) + " × " + factor.toFixed(1) + " = " + fmt(requested) + " tokens";
      if (values.cap && values.cap < requested) {
        requested = values.cap;
        text += ", lowered to the cap: " + fmt(requested) + " tokens";
      }
      setText(box, "requested", text);
    } else {
      setText(box, "requested", facts.facts_error
        ? "Requested context: unknown, the model's config.json could not be read: " + facts.facts_error
        : "Requested context: unknown until the model's config.json has been read.");
    }
    // What the factor asks for (the requested context above, one number) beside what this GPU serves.
    const gpu = facts.profile || "this GPU";
    let seed = "";
    if (limit && requested && values.enableYarn && validFactor && factor > 1) {
      const asks = "YaRN ×" + factor.toFixed(1) + " asks for " + fmt(requested) + " tokens; ";
      seed = ceiling
        ? asks + gpu + " holds " + fmt(limit) + " of this model, so the launch serves " + fmt(Math.min(requested || limit, limit)) + "."
        : asks + "at least " + fmt(limit) + " fit on " + gpu + "; the launch measures how many more.";
    }
    setText(box, "seed", seed);
    let note = facts.problem || "";
    if (!validFactor) note = "The YaRN factor must be between 1.0 and 8.0 in steps of 0.5.";
    else if (!values.enableYarn && values.factor !== 1) note = "YaRN is off: the factor " + values.factor.toFixed(1) + " is kept but not applied.";
    else if (limit && !ceiling && requested && requested > limit) note = "Above the " + fmt(limit) + " tokens known to fit, the launch measures this GPU's limit.";
    else if (ceiling && requested && requested > limit && !values.enableYarn) note = "The launch starts at what " + gpu + " holds of this model: " + fmt(limit) + " tokens.";
    setText(box, "note", note);
    setText(box, "warning", values.enableYarn && validFactor && values.factor > WARN_FACTOR
      ? "Factor " + values.factor.toFixed(1) + " is above " + WARN_FACTOR.toFixed(1) + ": YaRN stretches positions far beyond training, and quality can drop. Run Test YaRN before relying on it."
      : "");
    // Only where the operator asked for more than fits (YaRN on): an untouched config simply starts
    // at the learned limit, which the note says.
    setText(box, "cap", values.enableYarn && validFactor && factor > 1 && ceiling && requested && requested > limit
      ? "The factor asks for more than " + gpu + " holds: the launch serves " + fmt(limit) + " tokens, not " + fmt(requested) + ". Run Test YaRN to see what the factor gains here."
      : "");
  }

  function init() {
    const box = document.getElementById("context-preview");
    if (!box) return;
    const initialNode = document.getElementById("context-preview-initial");
    const initial = initialNode ? JSON.parse(initialNode.textContent) : {};
    let facts = initial;
    let pending = null;
    let generation = 0;

    function fetchFacts() {
      const params = new URLSearchParams();
      PREVIEW_FIELDS.forEach((name) => {
        const el = field(name);
        if (!el) return;
        if (el.type === "checkbox") { if (el.checked) params.set(name, "on"); } else params.set(name, el.value);
      });
      const mine = ++generation;
      fetch(box.dataset.previewUrl + "?" + params.toString(), { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then((response) => (response.ok ? response.json() : Promise.reject(response.status)))
        .then((data) => {
          if (mine !== generation) return; // an older answer arriving late must not win
          facts = data;
          render(box, facts, initial);
        })
        .catch(() => setText(box, "note", "The preview could not load the model's facts; the form still works."));
    }

    PREVIEW_FIELDS.forEach((name) => {
      const el = field(name);
      if (!el) return;
      const again = () => { clearTimeout(pending); pending = setTimeout(fetchFacts, 150); };
      el.addEventListener("change", again);
      el.addEventListener("input", again);
    });
    LIVE_FIELDS.forEach((name) => {
      const el = field(name);
      if (!el) return;
      el.addEventListener("input", () => render(box, facts, initial));
      el.addEventListener("change", () => render(box, facts, initial));
    });
    // An add form, or a form returned with errors, may differ from the saved row: ask once at load.
    render(box, facts, initial);
    if (field("model")) fetchFacts();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
