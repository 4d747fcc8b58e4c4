// The office's upload area: drop files or pick them, several at once. Each
// file goes up on its own as a resumable (tus) upload to /api/v1/uploads,
// in chunks (XMLHttpRequest, for upload progress), going on where it
// stopped after a dropped connection; its name (which may name the
// patient) travels in a header, never in the URL. Each shows its own
// progress bar and result: the digest the server computed, whether the
// photo's location was removed, or why it was refused and what to do.
"use strict";

(() => {
  const area = document.getElementById("upload");
  if (!area) return;
  const caseId = area.dataset.case;
  const input = document.getElementById("files");
  const zone = document.getElementById("drop-zone");
  const list = document.getElementById("upload-list");
  const csrf = document.querySelector('meta[name="csrf-token"]').content;

  // What the office should do about a refusal, by the API's error code.
  const ADVICE = {
    unsupported_media_type: "Relay takes JPEG, PNG and DICOM files.",
    media_type_mismatch: "The file's content does not match its type; export it again from the camera or scanner.",
    invalid_image: "The photo is damaged or incomplete; copy it again from the camera and retry.",
    too_many_pixels: "The image is too large; export it at a smaller size.",
    invalid_dicom: "The DICOM file is damaged or incomplete; export it again from the modality or PACS.",
    unsafe_preamble: "The DICOM file carries an executable header and was refused for safety; export it again.",
    empty_body: "The file is empty; pick the right file.",
    incomplete_body: "The upload was cut off; check the connection and retry.",
    payload_too_large: "The file is larger than this site accepts; ask your administrator.",
    invalid_state: "The case no longer accepts images.",
    insufficient_storage: "The server is out of space; nothing was stored. Try again later.",
    unavailable: "The server's storage is unavailable; nothing was stored. Try again in a minute.",
  };

  function typeOf(file) {
    if (file.type === "image/jpeg" || file.type === "image/png" || file.type === "application/dicom") {
      return file.type;
    }
    const name = file.name.toLowerCase();
    if (name.endsWith(".dcm") || name.endsWith(".dicom") || !name.includes(".")) return "application/dicom";
    if (name.endsWith(".jpg") || name.endsWith(".jpeg")) return "image/jpeg";
    if (name.endsWith(".png")) return "image/png";
    // The server recognises the bytes, or refuses them with advice.
    return "application/octet-stream";
  }

  function row(file) {
    const li = document.createElement("li");
    li.className = "upload-row";
    const name = document.createElement("strong");
    name.textContent = file.name;
    const bar = document.createElement("progress");
    bar.max = 100;
    bar.value = 0;
    bar.setAttribute("aria-label", `Uploading ${file.name}`);
    const result = document.createElement("span");
    result.className = "result";
    result.textContent = "waiting…";
    li.append(name, bar, result);
    list.append(li);
    return { li, bar, result };
  }

  // Bytes per PATCH: a dropped link costs at most this much again.
  const CHUNK = 8 * 1024 * 1024;
  // Tries per chunk before the file is given up (the bytes sent are kept).
  const TRIES = 5;

  function b64(text) {
    return btoa(String.fromCharCode(...new TextEncoder().encode(text)));
  }

  // One request, as a promise of the XMLHttpRequest once it has loaded (or
  // null when the connection broke).
  function send(method, url, headers, body, onprogress) {
    return new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      xhr.open(method, url);
      xhr.setRequestHeader("X-CSRF-Token", csrf);
      xhr.setRequestHeader("Tus-Resumable", "1.0.0");
      xhr.setRequestHeader("Accept", "application/json");
      for (const [k, v] of Object.entries(headers)) xhr.setRequestHeader(k, v);
      if (onprogress) xhr.upload.onprogress = onprogress;
      xhr.onload = () => resolve(xhr);
      xhr.onerror = () => resolve(null);
      xhr.send(body);
    });
  }

  function json(xhr) {
    try {
      return JSON.parse(xhr.responseText);
    } catch (_) {
      return null;
    }
  }

  function refused(li, bar, result, file, xhr) {
    li.classList.add("failed");
    bar.value = 0;
    const body = xhr ? json(xhr) : null;
    const code = body && body.error;
    let message = (body && body.message) || (xhr ? `the server answered ${xhr.status}` : "the connection broke off");
    if (message.startsWith(`${file.name}: `)) message = message.slice(file.name.length + 2);
    result.textContent = `Refused: ${message}. ${ADVICE[code] || "Check the file and try again."}`;
    result.setAttribute("role", "alert");
    return false;
  }

  // Resumable (tus): the file goes up in chunks; after a dropped
  // connection the server says how far it got and the upload goes on from
  // there. The file's name travels in a header, never in the URL.
  async function upload(file) {
    const { li, bar, result } = row(file);
    const meta = `case ${b64(caseId)},filename ${b64(file.name)},filetype ${b64(typeOf(file))}`;
    const created = await send("POST", "/api/v1/uploads", { "Upload-Length": String(file.size), "Upload-Metadata": meta }, null);
    if (!created || created.status !== 201) return refused(li, bar, result, file, created);
    const at = created.getResponseHeader("Location");
    let offset = 0;
    let last = null;
    let tries = 0;
    while (true) {
      const end = Math.min(offset + CHUNK, file.size);
      const base = offset;
      last = await send("PATCH", at, { "Content-Type": "application/offset+octet-stream", "Upload-Offset": String(offset) },
        file.slice(offset, end), (e) => {
          if (e.lengthComputable && file.size > 0) {
            bar.value = Math.round(((base + e.loaded) / file.size) * 100);
            result.textContent = `${bar.value} %`;
          }
        });
      if (last && last.status === 204) {
        offset = Number(last.getResponseHeader("Upload-Offset"));
        tries = 0;
        if (offset >= file.size) break;
        continue;
      }
      if (last && last.status >= 400 && last.status < 500 && last.status !== 409) {
        return refused(li, bar, result, file, last);
      }
      // A broken connection or a server fault: ask where the upload stands.
      tries += 1;
      if (tries > TRIES) return refused(li, bar, result, file, last);
      result.textContent = "connection lost, resuming…";
      await new Promise((r) => setTimeout(r, 500 * 2 ** tries));
      const head = await send("HEAD", at, {}, null);
      if (head && head.status === 200) offset = Number(head.getResponseHeader("Upload-Offset"));
    }
    const image = last.getResponseHeader("Location");
    const receipt = image ? await send("GET", image, {}, null) : null;
    const body = receipt && receipt.status === 200 ? json(receipt) : null;
    if (!body) return refused(li, bar, result, file, receipt);
    bar.value = 100;
    li.classList.add("done");
    li.dataset.image = body.id;
    result.textContent = "";
    const ok = document.createElement("span");
    ok.className = "badge ok";
    ok.textContent = "stored";
    const digest = document.createElement("code");
    digest.className = "digest";
    digest.textContent = `sha256 ${body.sha256}`;
    result.append(ok, " ", digest);
    if (body.sha256 !== body.stored_sha256) {
      const gps = document.createElement("span");
      gps.className = "badge ok gps";
      gps.textContent = "location removed";
      result.append(" ", gps);
    }
    return true;
  }

  async function uploadAll(files) {
    const all = Array.from(files);
    if (all.length === 0) return;
    const empty = document.getElementById("no-images");
    if (empty) empty.remove();
    // Two at a time: progress stays readable and the server is not flooded.
    let next = 0;
    const lane = async () => {
      while (next < all.length) {
        const file = all[next];
        next += 1;
        await upload(file);
      }
    };
    await Promise.all([lane(), lane()]);
    const done = document.createElement("li");
    done.className = "upload-summary";
    done.textContent = "Uploads finished. Reload the page to see the thumbnails.";
    list.append(done);
  }

  input.addEventListener("change", () => {
    uploadAll(input.files);
    input.value = "";
  });
  zone.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      input.click();
    }
  });
  ["dragenter", "dragover"].forEach((type) =>
    zone.addEventListener(type, (e) => {
      e.preventDefault();
      zone.classList.add("over");
    }));
  ["dragleave", "drop"].forEach((type) =>
    zone.addEventListener(type, () => zone.classList.remove("over")));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    uploadAll(e.dataTransfer.files);
  });
})();
