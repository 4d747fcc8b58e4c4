// Relay's pages: what every page does. No dependencies, no build step.
//
// Changes go through the JSON API with the session cookie and the page's
// CSRF token in X-CSRF-Token. Nothing is kept in browser storage, and no
// patient data is put in a URL.
"use strict";

const Relay = (() => {
  const csrf = () => {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  };

  // An error the API answered, with its message for people.
  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || `the server answered ${status}`);
      this.status = status;
      this.code = body && body.error;
      this.field = body && body.field;
    }
  }

  // Calls the API; resolves to the JSON body, rejects with ApiError. A
  // `background` call (made by the page on its own, not by the person)
  // does not keep the session from timing out.
  async function api(method, url, body, background) {
    const headers = { "X-CSRF-Token": csrf(), Accept: "application/json" };
    if (background) headers["X-Relay-Background"] = "1";
    const init = { method, headers, credentials: "same-origin", cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(url, init);
    const text = await response.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch (_) {
      json = null;
    }
    if (response.status === 401) {
      window.location.assign("/sign-in");
    }
    if (!response.ok) throw new ApiError(response.status, json);
    return json;
  }

  function alert(message) {
    const box = document.getElementById("alerts");
    if (!box) return;
    box.textContent = message;
    box.classList.toggle("shown", Boolean(message));
  }

  function then(how, result) {
    if (!how || how === "reload") {
      window.location.reload();
    } else if (how === "case") {
      window.location.assign(`/office/cases/${result.id}`);
    } else if (how.startsWith("goto:")) {
      window.location.assign(how.slice(5));
    }
  }

  // <button data-action="POST /api/..." data-body='{}' data-confirm="…" data-then="reload">
  function wireActions(root) {
    root.querySelectorAll("button[data-action]").forEach((button) => {
      button.addEventListener("click", async () => {
        if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
        const [method, url] = button.dataset.action.split(" ");
        const body = button.dataset.body ? JSON.parse(button.dataset.body) : undefined;
        button.disabled = true;
        alert("");
        try {
          const result = await api(method, url, body);
          then(button.dataset.then, result);
        } catch (e) {
          alert(e.message);
          button.disabled = false;
        }
      });
    });
  }

  // Form fields named with dots become nested JSON; empty fields are left out.
  function formJson(form) {
    const out = {};
    for (const element of form.elements) {
      if (!element.name || element.disabled || element.type === "submit") continue;
      const value = element.value.trim();
      if (value === "") continue;
      const path = element.name.split(".");
      let at = out;
      for (const key of path.slice(0, -1)) at = at[key] = at[key] || {};
      at[path[path.length - 1]] = value;
    }
    return out;
  }

  // <form data-api-form="POST /api/..." data-then="…">: sent as JSON.
  function wireForms(root) {
    root.querySelectorAll("form[data-api-form]").forEach((form) => {
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const [method, url] = form.dataset.apiForm.split(" ");
        const error = form.querySelector(".form-error");
        form.querySelectorAll("[aria-invalid]").forEach((f) => f.removeAttribute("aria-invalid"));
        if (error) error.textContent = "";
        const submit = form.querySelector('[type="submit"]');
        if (submit) submit.disabled = true;
        try {
          const result = await api(method, url, formJson(form));
          then(form.dataset.then, result);
        } catch (e) {
          const field = e.field && form.elements.namedItem(e.field);
          if (field && field.setAttribute) {
            field.setAttribute("aria-invalid", "true");
            field.focus();
          }
          if (error) error.textContent = e.message;
          else alert(e.message);
          if (submit) submit.disabled = false;
        }
      });
    });
  }

  // Times arrive in UTC; show them in the reader's own zone.
  function localTimes(root) {
    const format = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
    root.querySelectorAll("time[datetime]").forEach((t) => {
      const at = new Date(t.getAttribute("datetime"));
      if (!Number.isNaN(at.getTime())) t.textContent = format.format(at);
    });
  }

  // Thumbnails derive has not made yet: ask until it has.
  function pendingThumbs(root) {
    root.querySelectorAll("img.pending[data-image]").forEach((img) => {
      let tries = 0;
      const poll = async () => {
        tries += 1;
        try {
          const image = await api("GET", `/api/v1/images/${img.dataset.image}`, undefined, true);
          if (image.derive_state === "ready") {
            img.src = img.dataset.src;
            img.classList.remove("pending");
            return;
          }
          if (image.derive_state !== "pending") {
            img.replaceWith(Object.assign(document.createElement("span"), {
              className: "thumb none", textContent: "no preview",
            }));
            return;
          }
        } catch (_) {
          // try again below
        }
        if (tries < 60) setTimeout(poll, 1000);
      };
      poll();
    });
  }

  // <div id="worklist" data-refresh="30">: re-read the page and swap the table.
  function refreshing() {
    const list = document.getElementById("worklist");
    if (!list || !list.dataset.refresh) return;
    const every = Number(list.dataset.refresh) * 1000;
    const refresh = async () => {
      try {
        const response = await fetch(window.location.pathname + window.location.search, {
          credentials: "same-origin", cache: "no-store", headers: { "X-Relay-Background": "1" },
        });
        if (response.status === 401 || response.redirected) {
          window.location.assign("/sign-in");
          return;
        }
        const doc = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = doc.getElementById("worklist");
        const stamp = doc.getElementById("refreshed");
        if (fresh) {
          list.innerHTML = fresh.innerHTML;
          localTimes(list);
        }
        const here = document.getElementById("refreshed");
        if (stamp && here) {
          here.innerHTML = stamp.innerHTML;
          localTimes(here);
        }
      } catch (_) {
        // offline for a moment: the next round tries again
      }
    };
    setInterval(refresh, every);
  }

  function start() {
    wireActions(document);
    wireForms(document);
    localTimes(document);
    pendingThumbs(document);
    refreshing();
  }

  return { api, alert, start, localTimes, ApiError };
})();

document.addEventListener("DOMContentLoaded", Relay.start);
