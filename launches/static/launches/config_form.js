/* The launch config form's context preview: asked of the server on every change, without a reload.
 *
 * The server computes every length for the form's current values (the model's native context, the
 * wanted context native x factor lowered to the cap, the limit learned for the host's GPU with these
 * memory options, what the launch serves); this script only words and shows them.
 */
"use strict";
(function () {
  const PREVIEW_FIELDS = [
    "model", "host", "gpu_indices", "gpu_memory_utilization", "dtype", "quantization",
    "kv_cache_dtype", "tensor_parallel_size", "max_num_batched_tokens", "enforce_eager",
    "enable_yarn", "yarn_factor", "context_cap",
  ];
  const WARN_FACTOR = 2.0;

  const field = (name) => document.getElementById("id_" + name);
  const fmt = (n) => Math.round(n).toLocaleString("en-US");
  const fmtK = (n) => (n % 1024 === 0 || n >= 10240 ? Math.round(n / 1024) : (n / 1024).toFixed(1)) + "K";

  function setText(box, role, text) {
    const el = box.querySelector('[data-role="' + role + '"]');
    el.textContent = text || "";
    if (el.tagName === "DIV") el.hidden = !text;
  }

  // ``facts``: the server's preview (``LaunchConfigViews.preview_data``), for the values being edited
  // or, on a read-only page (viewers), the saved ones.
  function render(box, facts) {
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
    const validFactor = facts.factor_valid !== false;
    const factor = facts.factor || 1;
    const typed = facts.yarn_factor || 1;
    const yarnOn = Boolean(facts.enable_yarn);
    const requested = facts.wanted_context;
    if (requested) {
      let text = "Requested context: " + fmt(native) + " × " + factor.toFixed(1) + " = " + fmt(facts.scaled_context) + " tokens";
      if (facts.lowered_to_cap) text += ", lowered to the cap: " + fmt(requested) + " tokens";
      setText(box, "requested", text);
    } else {
      setText(box, "requested", facts.facts_error
        ? "Requested context: unknown, the model's config.json could not be read: " + facts.facts_error
        : "Requested context: unknown until the model's config.json has been read.");
    }
    // What the factor asks for (the requested context above, one number) beside what this GPU serves.
    const gpu = facts.profile || "this GPU";
    let seed = "";
    if (limit && requested && factor > 1) {
      const asks = "YaRN ×" + factor.toFixed(1) + " asks for " + fmt(requested) + " tokens; ";
      seed = ceiling
        ? asks + gpu + " holds " + fmt(limit) + " of this model, so the launch serves " + fmt(facts.serves) + "."
        : asks + "at least " + fmt(limit) + " fit on " + gpu + "; the launch measures how many more.";
    }
    setText(box, "seed", seed);
    let note = facts.problem || "";
    if (!validFactor) note = "The YaRN factor must be between 1.0 and 8.0 in steps of 0.5.";
    else if (!yarnOn && typed !== 1) note = "YaRN is off: the factor " + typed.toFixed(1) + " is kept but not applied.";
    else if (!ceiling && facts.above_hw_limit) note = "Above the " + fmt(limit) + " tokens known to fit, the launch measures this GPU's limit.";
    else if (ceiling && facts.above_hw_limit && !yarnOn) note = "The launch starts at what " + gpu + " holds of this model: " + fmt(limit) + " tokens.";
    setText(box, "note", note);
    // What saving would refuse first (the form's own sentence), then a factor that may hurt quality.
    setText(box, "warning", facts.yarn_problem ? facts.yarn_problem : yarnOn && validFactor && factor > WARN_FACTOR
      ? "Factor " + factor.toFixed(1) + " is above " + WARN_FACTOR.toFixed(1) + ": YaRN stretches positions far beyond training, and quality can drop. Run Test YaRN before relying on it."
      : "");
    // Only where the operator asked for more than fits (YaRN on): an untouched config simply starts
    // at the learned limit, which the note says.
    setText(box, "cap", factor > 1 && ceiling && facts.above_hw_limit
      ? "The factor asks for more than " + gpu + " holds: the launch serves " + fmt(limit) + " tokens, not " + fmt(requested) + ". Run Test YaRN to see what the factor gains here."
      : "");
  }

  // "save your changes first" only while a field differs from the value the page was loaded with;
  // meanwhile Launch, Test YaRN and Re-detect (which use the saved config) are disabled.
  function watchUnsaved(form) {
    const notice = document.querySelector('[data-role="save-first"]');
    if (!form || !notice) return;
    const actions = Array.from(document.querySelectorAll("button.launch-action"));
    actions.forEach((button) => { button.dataset.savedTitle = button.title; });
    const value = (el) => (el.type === "checkbox" || el.type === "radio" ? String(el.checked)
      : el.multiple ? Array.from(el.selectedOptions, (o) => o.value).join("\n") : el.value);
    const fields = Array.from(form.elements).filter((el) => el.name && el.name !== "csrfmiddlewaretoken" && el.type !== "submit" && el.type !== "button");
    const saved = new Map(fields.map((el) => [el, value(el)]));
    const update = () => {
      const unsaved = fields.some((el) => value(el) !== saved.get(el));
      notice.hidden = !unsaved;
      actions.forEach((button) => {
        button.disabled = unsaved;
        button.title = unsaved ? "Save your changes first" : button.dataset.savedTitle;
      });
    };
    form.addEventListener("input", update);
    form.addEventListener("change", update);
    update();
  }

  function init() {
    const box = document.getElementById("context-preview");
    if (!box) return;
    const initialNode = document.getElementById("context-preview-initial");
    const initial = initialNode ? JSON.parse(initialNode.textContent) : {};
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
          render(box, data);
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
    watchUnsaved(box.closest("form"));
    // An add form, or a form returned with errors, may differ from the saved row: ask once at load.
    render(box, initial);
    if (field("model")) fetchFacts();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
