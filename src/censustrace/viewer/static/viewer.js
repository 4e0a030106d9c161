// censustrace viewer: a little progressive enhancement; every page works without it.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // Print buttons (subject access responses, the Article 30 record).
  for (const button of document.querySelectorAll("[data-print]")) {
    button.hidden = false;
    button.addEventListener("click", () => window.print());
  }
  // Copy a checksum to the clipboard.
  for (const button of document.querySelectorAll("[data-copy]")) {
    button.hidden = false;
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(button.getAttribute("data-copy"));
        button.textContent = "Copied";
      } catch (_) {
        button.textContent = "Copy failed";
      }
    });
  }
  // Forms that must not be re-sent from history (subject access): clear the field after sending.
  for (const form of document.querySelectorAll("form[data-forget]")) {
    form.addEventListener("submit", () => {
      window.setTimeout(() => { for (const input of form.querySelectorAll("input[data-secret]")) input.value = ""; }, 0);
    });
  }
});

// Lineage graphs (share page): zoom, pan, fit to view, focus on the selected node and a detail panel,
// by mouse, touch or keyboard. The SVG is laid out by Graphviz on the server and already fits its box
// (viewBox + preserveAspectRatio), so the graph is readable before this runs; this only moves the
// viewBox.
document.addEventListener("DOMContentLoaded", () => {
  for (const frame of document.querySelectorAll("[data-graph]")) {
    const view = frame.querySelector(".graph-view");
    const tools = frame.querySelector(".graph-tools");
    const panel = frame.querySelector(".graph-panel");
    const focusButton = frame.querySelector("[data-zoom=focus]");
    if (!view) continue;
    if (tools) tools.hidden = false;
    const svgs = Array.from(view.querySelectorAll("svg.graph"));
    const home = new Map(svgs.map((svg) => [svg, svg.getAttribute("viewBox").split(/\s+/).map(Number)]));
    const visible = () => svgs.find((svg) => svg.getBoundingClientRect().width > 0) || svgs[0];
    const box = (svg) => svg.getAttribute("viewBox").split(/\s+/).map(Number);
    const setBox = (svg, b) => svg.setAttribute("viewBox", b.map((v) => v.toFixed(1)).join(" "));
    let selected = null;

    const zoom = (factor, cx, cy) => {
      const svg = visible();
      const [x, y, w, h] = box(svg);
      const px = cx === undefined ? x + w / 2 : cx;
      const py = cy === undefined ? y + h / 2 : cy;
      const full = home.get(svg);
      const nw = Math.min(Math.max(w / factor, full[2] / 40), full[2] * 4);
      const nh = nw * (h / w);
      setBox(svg, [px - (px - x) * (nw / w), py - (py - y) * (nh / h), nw, nh]);
    };
    const fit = () => { for (const svg of svgs) setBox(svg, home.get(svg)); };
    const pan = (dx, dy) => {
      const svg = visible();
      const [x, y, w, h] = box(svg);
      setBox(svg, [x + dx * w, y + dy * h, w, h]);
    };
    const focusOn = (id) => {
      // Centre the node and zoom so it fills about half of the view (never zooming out).
      const svg = visible();
      const node = Array.from(svg.querySelectorAll("g.node")).find((g) => g.id.slice(2) === id);
      if (!node) return;
      const r = node.getBoundingClientRect();
      const inverse = svg.getScreenCTM().inverse();
      const corner = (x, y) => { const p = svg.createSVGPoint(); p.x = x; p.y = y; return p.matrixTransform(inverse); };
      const a = corner(r.left, r.top);
      const b = corner(r.right, r.bottom);
      const [, , cw, ch] = box(svg);
      const aspect = svg.clientHeight / Math.max(svg.clientWidth, 1);
      let w = Math.min(cw, (b.x - a.x) * 2);
      if (w * aspect < (b.y - a.y) * 2) w = Math.min(cw, ((b.y - a.y) * 2) / aspect);
      const h = w * aspect;
      setBox(svg, [(a.x + b.x) / 2 - w / 2, (a.y + b.y) / 2 - h / 2, w, h]);
    };
    const select = (id) => {
      selected = id;
      for (const svg of svgs) for (const g of svg.querySelectorAll("g.node")) g.classList.toggle("selected", g.id.slice(2) === id);
      if (panel) {
        for (const section of panel.querySelectorAll(".node-detail")) section.classList.toggle("selected", section.id === `node-${id}`);
      }
      if (focusButton) focusButton.disabled = false;
    };
    // Graphviz writes each node as <g id="w-<id>" class="node gnode ..."> holding <a xlink:href="#node-<id>">.
    for (const svg of svgs) {
      for (const link of svg.querySelectorAll("a")) {
        link.addEventListener("click", (event) => {
          const g = link.closest("g.node");
          if (!g) return;
          event.preventDefault();
          select(g.id.slice(2));
        });
      }
    }
    if (location.hash.startsWith("#node-")) select(location.hash.slice(6));
    for (const button of frame.querySelectorAll("[data-zoom]")) {
      button.addEventListener("click", () => {
        const what = button.getAttribute("data-zoom");
        if (what === "in") zoom(1.25);
        else if (what === "out") zoom(0.8);
        else if (what === "fit") fit();
        else if (what === "focus" && selected) focusOn(selected);
      });
    }
    view.addEventListener("wheel", (event) => {
      event.preventDefault();
      const svg = visible();
      const point = svg.createSVGPoint();
      point.x = event.clientX; point.y = event.clientY;
      const at = point.matrixTransform(svg.getScreenCTM().inverse());
      zoom(event.deltaY < 0 ? 1.15 : 1 / 1.15, at.x, at.y);
    }, { passive: false });
    let drag = null;
    view.addEventListener("pointerdown", (event) => {
      if (event.target.closest("a")) return;
      drag = { x: event.clientX, y: event.clientY };
      view.classList.add("dragging");
      view.setPointerCapture(event.pointerId);
    });
    view.addEventListener("pointermove", (event) => {
      if (!drag) return;
      const svg = visible();
      const [, , w] = box(svg);
      const scale = w / Math.max(svg.clientWidth, 1);
      const [x, y, bw, bh] = box(svg);
      setBox(svg, [x - (event.clientX - drag.x) * scale, y - (event.clientY - drag.y) * scale, bw, bh]);
      drag = { x: event.clientX, y: event.clientY };
    });
    const stop = () => { drag = null; view.classList.remove("dragging"); };
    view.addEventListener("pointerup", stop);
    view.addEventListener("pointercancel", stop);
    view.addEventListener("keydown", (event) => {
      const keys = { "+": () => zoom(1.25), "=": () => zoom(1.25), "-": () => zoom(0.8), "0": fit,
        ArrowLeft: () => pan(-0.1, 0), ArrowRight: () => pan(0.1, 0), ArrowUp: () => pan(0, -0.1), ArrowDown: () => pan(0, 0.1) };
      if (event.key === "Enter" && document.activeElement && document.activeElement.closest("g.node")) {
        event.preventDefault();
        select(document.activeElement.closest("g.node").id.slice(2));
        return;
      }
      const act = keys[event.key];
      if (act && !event.altKey && !event.ctrlKey && !event.metaKey) { event.preventDefault(); act(); }
    });
  }
});
