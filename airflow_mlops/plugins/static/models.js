// airflow-mlops Models view: the two actions of the model page (roll back, promote with a reason).
// Served from /mlops/static under a CSP that allows no inline script. Each action is a JSON POST with the
// X-Requested-With header (which a cross-site form cannot send) and the page's request id, so a double
// click or a retried request moves the alias once. The server re-checks the user's rights.
"use strict";

(function () {
  const body = document.body;
  const model = body.dataset.model;
  if (!model) {
    return;
  }
  const result = document.getElementById("action-result");

  function show(text, ok) {
    if (result) {
      result.textContent = text;
      result.className = ok ? "ok" : "error";
    }
  }

  async function act(path, payload, describe) {
    const buttons = document.querySelectorAll("#actions button");
    buttons.forEach((b) => { b.disabled = true; });
    try {
      const response = await fetch(path, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-Requested-With": "airflow-mlops" },
        body: JSON.stringify({ name: model, request_id: body.dataset.requestId, ...payload }),
      });
      const data = await response.json().catch(() => ({}));
      if (!response.ok) {
        const detail = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail || data);
        show(`Refused (${response.status}): ${detail}`, false);
        buttons.forEach((b) => { b.disabled = false; });
        return;
      }
      show(describe(data), true);
      // Reload so the timeline shows the recorded move; a new page gets a new request id.
      setTimeout(() => window.location.reload(), 800);
    } catch (err) {
      show(`The request failed: ${err}`, false);
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  const rollback = document.getElementById("rollback");
  if (rollback) {
    rollback.addEventListener("click", () => {
      const reason = (document.getElementById("rollback-reason") || {}).value || "";
      act("/mlops/api/models/rollback", { reason }, (d) =>
        d.moved
          ? `${d.alias} rolled back from v${d.previous_version} to v${d.version}`
          : `${d.alias} already rolled back to v${d.version}`);
    });
  }

  const promote = document.getElementById("promote");
  if (promote) {
    promote.addEventListener("submit", (event) => {
      event.preventDefault();
      const form = new FormData(promote);
      const reason = String(form.get("reason") || "").trim();
      if (!reason) {
        show("Give a reason: it is kept in the model's history.", false);
        return;
      }
      act("/mlops/api/models/promote", { version: String(form.get("version")), reason }, (d) =>
        d.moved
          ? `${d.alias} promoted: v${d.previous_version} → v${d.version}`
          : `${d.alias} already on v${d.version}`);
    });
  }
})();
