// The report form: the draft saves itself to the server as the specialist
// types (PUT /api/v1/cases/{id}/report, a second after the last change;
// nothing is kept in the browser), the claim is renewed while the page is
// open, and signing asks for confirmation in a dialog first.
"use strict";

(() => {
  const form = document.getElementById("report-form");
  const actions = document.getElementById("case-actions");

  // Keep the claim while the case is open here (the lease is 30 minutes).
  if (actions && actions.dataset.mine === "true") {
    setInterval(() => {
      Relay.api("POST", `/api/v1/cases/${actions.dataset.case}/claim/renew`, undefined, true).catch((e) => Relay.alert(e.message));
    }, 10 * 60 * 1000);
  }
  if (!form) return;

  const caseId = form.dataset.case;
  const status = document.getElementById("autosave-status");
  const error = form.querySelector(".form-error");
  const dialog = document.getElementById("sign-dialog");
  let timer = null;
  let saving = Promise.resolve();
  let dirty = false;

  function draft() {
    const value = (name) => form.elements.namedItem(name).value;
    return {
      findings: value("findings"),
      impression: value("impression"),
      recommendation: value("recommendation"),
      in_person_visit: value("in_person_visit"),
      diagnosis_codes: value("diagnosis_codes").split(/[\s,;]+/).filter(Boolean),
    };
  }

  function save() {
    clearTimeout(timer);
    if (!dirty) return saving;
    dirty = false;
    status.textContent = "Saving…";
    form.dataset.saved = "saving";
    saving = saving
      .then(() => Relay.api("PUT", `/api/v1/cases/${caseId}/report`, draft()))
      .then((report) => {
        const at = new Date(report.updated_at);
        status.textContent = `Draft saved at ${at.toLocaleTimeString()}`;
        form.dataset.saved = report.updated_at;
        error.textContent = "";
      })
      .catch((e) => {
        dirty = true;
        status.textContent = "Not saved.";
        form.dataset.saved = "failed";
        error.textContent = e.message;
        throw e;
      });
    return saving;
  }

  form.addEventListener("input", () => {
    dirty = true;
    status.textContent = "Unsaved changes…";
    clearTimeout(timer);
    timer = setTimeout(() => save().catch(() => {}), 1000);
  });
  form.addEventListener("submit", (e) => e.preventDefault());
  window.addEventListener("beforeunload", (e) => {
    if (dirty) {
      save().catch(() => {});
      e.preventDefault();
    }
  });

  document.getElementById("sign-open").addEventListener("click", async () => {
    if (!form.elements.namedItem("impression").value.trim()) {
      error.textContent = "Write an impression before signing.";
      form.elements.namedItem("impression").focus();
      return;
    }
    dirty = true;
    try {
      await save();
    } catch (_) {
      return;
    }
    dialog.showModal();
    document.getElementById("sign-confirm").focus();
  });
  document.getElementById("sign-cancel").addEventListener("click", () => dialog.close());
  document.getElementById("sign-confirm").addEventListener("click", async (e) => {
    e.target.disabled = true;
    try {
      await Relay.api("POST", `/api/v1/cases/${caseId}/report/sign`);
      dirty = false;
      window.location.reload();
    } catch (err) {
      dialog.close();
      error.textContent = err.message;
      e.target.disabled = false;
    }
  });
})();
