// The specialist's image viewer. Photos open at full resolution (the
// stored original) with zoom (wheel, buttons, + − 0) and pan (drag,
// arrows). A DICOM series is a stack of rendered frames: the wheel and
// ↑ ↓ / Page Up Page Down / Home End move through it, the position is
// shown, and the window (center/width) comes from the file, a preset, or a
// drag (horizontal: width, vertical: level). While dragging, an SVG
// transfer function previews the new window on the current rendering; on
// release the server renders the frame with exactly that window.
"use strict";

(() => {
  const stage = document.getElementById("stage");
  if (!stage) return;
  const img = document.getElementById("stage-img");
  const empty = document.getElementById("stage-empty");
  const note = document.getElementById("stage-note");
  const position = document.getElementById("position");
  const readout = document.getElementById("wl-readout");
  const preset = document.getElementById("wl-preset");
  const viewer = document.getElementById("viewer");
  const dragButton = viewer.querySelector('[data-tool="drag-mode"]');

  // The live window preview: a linear transfer on every colour channel.
  const SVG = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "hidden-svg");
  svg.setAttribute("aria-hidden", "true");
  const filter = document.createElementNS(SVG, "filter");
  filter.id = "wl-preview";
  filter.setAttribute("color-interpolation-filters", "sRGB");
  const transfer = document.createElementNS(SVG, "feComponentTransfer");
  const funcs = ["feFuncR", "feFuncG", "feFuncB"].map((name) => {
    const f = document.createElementNS(SVG, name);
    f.setAttribute("type", "linear");
    transfer.append(f);
    return f;
  });
  filter.append(transfer);
  svg.append(filter);
  document.body.append(svg);

  const view = {
    kind: null, // "photo" | "series"
    scale: 1,
    x: 0,
    y: 0,
    slices: [], // [{ id, frame }]
    index: 0,
    fileWindow: null, // [center, width] from the file, when known
    window: null, // [center, width] chosen, or null for the file's
    drag: "wl", // what a drag does in a series: "wl" or "pan"
  };

  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));

  function apply() {
    img.style.transform = `translate(${view.x}px, ${view.y}px) scale(${view.scale})`;
    stage.dataset.scale = view.scale.toFixed(3);
  }

  function fit() {
    if (!img.naturalWidth) return;
    const box = stage.getBoundingClientRect();
    view.scale = Math.min(box.width / img.naturalWidth, box.height / img.naturalHeight);
    view.x = (box.width - img.naturalWidth * view.scale) / 2;
    view.y = (box.height - img.naturalHeight * view.scale) / 2;
    apply();
  }

  function zoom(factor, cx, cy) {
    const box = stage.getBoundingClientRect();
    const px = cx === undefined ? box.width / 2 : cx;
    const py = cy === undefined ? box.height / 2 : cy;
    const next = clamp(view.scale * factor, 0.05, 32);
    const f = next / view.scale;
    view.x = px - (px - view.x) * f;
    view.y = py - (py - view.y) * f;
    view.scale = next;
    apply();
  }

  function pan(dx, dy) {
    view.x += dx;
    view.y += dy;
    apply();
  }

  function currentWindow() {
    return view.window || view.fileWindow;
  }

  function showWindow() {
    const w = currentWindow();
    if (view.kind !== "series") {
      readout.textContent = "";
    } else if (w) {
      readout.textContent = `W ${Math.round(w[1])} · L ${Math.round(w[0])}${view.window ? "" : " (file)"}`;
    } else {
      readout.textContent = "Window from the file";
    }
    stage.dataset.window = view.window ? view.window.map(Math.round).join(",") : "";
  }

  function frameUrl(slice) {
    const base = `/api/v1/images/${slice.id}/frames/${slice.frame}/rendered`;
    return view.window ? `${base}?window=${view.window.map(Math.round).join(",")}` : base;
  }

  let keepView = false;
  let retry = null;

  function load(url, keep) {
    keepView = keep;
    clearTimeout(retry);
    note.textContent = "";
    img.src = url;
  }

  img.addEventListener("load", () => {
    empty.hidden = true;
    img.hidden = false;
    img.style.filter = "";
    stage.dataset.loaded = img.getAttribute("src");
    if (!keepView) fit();
    else apply();
  });
  img.addEventListener("error", () => {
    // A frame is rendered on first request; 202 until derive is done.
    note.textContent = "Still preparing this image…";
    const url = img.getAttribute("src");
    retry = setTimeout(() => {
      if (img.getAttribute("src") === url) img.src = `${url}${url.includes("?") ? "&" : "?"}r=${Date.now()}`;
    }, 1500);
  });

  function showSlice(index, keep) {
    if (view.kind !== "series" || view.slices.length === 0) return;
    view.index = clamp(index, 0, view.slices.length - 1);
    position.textContent = `Image ${view.index + 1} / ${view.slices.length}`;
    stage.dataset.slice = String(view.index + 1);
    stage.dataset.slices = String(view.slices.length);
    load(frameUrl(view.slices[view.index]), keep);
    // Warm the neighbours so scrolling stays smooth.
    [view.index + 1, view.index - 1].forEach((n) => {
      if (n >= 0 && n < view.slices.length) new Image().src = frameUrl(view.slices[n]);
    });
  }

  function open(button) {
    document.querySelectorAll(".thumb-button").forEach((b) => b.setAttribute("aria-current", "false"));
    button.setAttribute("aria-current", "true");
    view.kind = button.dataset.kind;
    viewer.classList.toggle("is-series", view.kind === "series");
    stage.dataset.kind = view.kind;
    if (view.kind === "photo") {
      position.textContent = button.dataset.label || "";
      showWindow();
      load(button.dataset.full, false);
      return;
    }
    view.slices = button.dataset.slices.split(" ").filter(Boolean).map((s) => {
      const [id, frame] = s.split("/");
      return { id, frame: Number(frame) };
    });
    const fileWindow = button.dataset.window
      ? button.dataset.window.split(",").map(Number)
      : button.dataset.modality === "CT" ? [40, 400] : null;
    view.fileWindow = fileWindow;
    view.window = null;
    preset.value = "";
    showWindow();
    showSlice(0, false);
  }

  function setWindow(w) {
    view.window = w ? [w[0], Math.max(1, w[1])] : null;
    showWindow();
    if (view.kind === "series") showSlice(view.index, true);
  }

  // Previews `next` on the image rendered with `from`, exactly where the
  // two windows overlap: out = in × (w0 / w) + (c0 − w0/2 − c + w/2) / w.
  function preview(from, next) {
    const slope = from[1] / next[1];
    const intercept = (from[0] - from[1] / 2 - next[0] + next[1] / 2) / next[1];
    funcs.forEach((f) => {
      f.setAttribute("slope", String(slope));
      f.setAttribute("intercept", String(intercept));
    });
    img.style.filter = "url(#wl-preview)";
  }

  // ---- input --------------------------------------------------------------

  document.querySelectorAll(".thumb-button").forEach((b) => b.addEventListener("click", () => {
    open(b);
    stage.focus();
  }));

  viewer.querySelectorAll("[data-tool]").forEach((b) => b.addEventListener("click", () => {
    const tool = b.dataset.tool;
    if (tool === "zoom-in") zoom(1.25);
    if (tool === "zoom-out") zoom(0.8);
    if (tool === "fit") fit();
    if (tool === "drag-mode") setDrag(view.drag === "wl" ? "pan" : "wl");
  }));

  function setDrag(mode) {
    view.drag = mode;
    dragButton.setAttribute("aria-pressed", String(mode === "wl"));
    dragButton.textContent = mode === "wl" ? "W/L drag" : "Pan drag";
  }

  preset.addEventListener("change", () => {
    setWindow(preset.value ? preset.value.split(",").map(Number) : null);
  });

  stage.addEventListener("wheel", (e) => {
    if (!view.kind) return;
    e.preventDefault();
    const box = stage.getBoundingClientRect();
    if (view.kind === "series" && !e.ctrlKey) {
      showSlice(view.index + (e.deltaY > 0 ? 1 : -1), true);
    } else {
      zoom(e.deltaY > 0 ? 0.85 : 1.18, e.clientX - box.left, e.clientY - box.top);
    }
  }, { passive: false });

  stage.addEventListener("keydown", (e) => {
    if (!view.kind) return;
    const series = view.kind === "series";
    const step = 40;
    const keys = {
      "+": () => zoom(1.25),
      "=": () => zoom(1.25),
      "-": () => zoom(0.8),
      "0": () => fit(),
      ArrowLeft: () => pan(step, 0),
      ArrowRight: () => pan(-step, 0),
      ArrowUp: () => (series ? showSlice(view.index - 1, true) : pan(0, step)),
      ArrowDown: () => (series ? showSlice(view.index + 1, true) : pan(0, -step)),
      PageUp: () => series && showSlice(view.index - 1, true),
      PageDown: () => series && showSlice(view.index + 1, true),
      Home: () => series && showSlice(0, true),
      End: () => series && showSlice(view.slices.length - 1, true),
      w: () => series && setDrag("wl"),
      p: () => setDrag("pan"),
    };
    const action = keys[e.key];
    if (action) {
      e.preventDefault();
      action();
    }
  });

  let dragging = null;
  stage.addEventListener("pointerdown", (e) => {
    if (!view.kind || e.button !== 0) return;
    stage.setPointerCapture(e.pointerId);
    const windowing = view.kind === "series" && view.drag === "wl";
    const from = currentWindow() || [128, 256];
    dragging = { x: e.clientX, y: e.clientY, windowing, from, next: from, moved: false };
    stage.classList.add("dragging");
  });
  stage.addEventListener("pointermove", (e) => {
    if (!dragging) return;
    const dx = e.clientX - dragging.x;
    const dy = e.clientY - dragging.y;
    if (Math.abs(dx) + Math.abs(dy) > 1) dragging.moved = true;
    if (dragging.windowing) {
      // Sensitivity follows the window: a full stage drag about doubles it.
      const k = Math.max(dragging.from[1], 20) / 200;
      dragging.next = [dragging.from[0] + dy * k, Math.max(1, dragging.from[1] + dx * k)];
      preview(dragging.from, dragging.next);
      readout.textContent = `W ${Math.round(dragging.next[1])} · L ${Math.round(dragging.next[0])}`;
    } else {
      pan(dx, dy);
      dragging.x = e.clientX;
      dragging.y = e.clientY;
    }
  });
  const endDrag = () => {
    if (!dragging) return;
    const done = dragging;
    dragging = null;
    stage.classList.remove("dragging");
    if (done.windowing && done.moved) {
      preset.value = "";
      setWindow(done.next);
    }
  };
  stage.addEventListener("pointerup", endDrag);
  stage.addEventListener("pointercancel", endDrag);
  window.addEventListener("resize", () => view.kind && fit());

  const first = document.querySelector(".thumb-button");
  if (first) open(first);
})();
