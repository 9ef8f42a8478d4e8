// Bulwark dashboard: breakers (with reset / force open) and the last hour's calls, retries,
// failures and error categories, refreshed every few seconds. Plain JS, no dependency; the
// browser sends the Basic credentials it was given for /dashboard on these same-origin
// requests. Data is only ever inserted as text (textContent), never as HTML.
"use strict";

(function () {
  const REFRESH_MS = 5000;
  const WINDOW_SECONDS = 3600;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const STATE_LABEL = { closed: "closed", half_open: "half open", open: "open" };

  let timer = null;
  let busy = false;

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function setStatus(message, isError) {
    const status = document.getElementById("status");
    status.textContent = message;
    status.classList.toggle("error", Boolean(isError));
  }

  async function api(path, options) {
    const response = await fetch(path, {
      credentials: "same-origin",
      cache: "no-store",
      ...options,
      headers: { Accept: "application/json", ...((options && options.headers) || {}) },
    });
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (!response.ok) {
      const message = body && body.error ? body.error.message : response.statusText;
      throw new Error(`${response.status}: ${message}`);
    }
    return body;
  }

  function since(iso) {
    if (!iso) return "—";
    const at = new Date(iso);
    const seconds = Math.max(0, Math.round((Date.now() - at.getTime()) / 1000));
    let ago;
    if (seconds < 60) ago = `${seconds} s ago`;
    else if (seconds < 3600) ago = `${Math.floor(seconds / 60)} min ago`;
    else ago = `${Math.floor(seconds / 3600)} h ago`;
    return `${at.toLocaleTimeString()} (${ago})`;
  }

  function breakerPath(key, action) {
    return `/v1/admin/breakers/${encodeURIComponent(key)}/${action}`;
  }

  async function act(key, action, button) {
    if (action === "open" && !window.confirm(`Force the breaker of ${key} open until reset?`)) {
      return;
    }
    button.disabled = true;
    try {
      await api(breakerPath(key, action), {
        method: "POST",
        headers: { "X-Bulwark-Dashboard": "1" },
      });
      setStatus(`${action === "reset" ? "Reset" : "Forced open"}: ${key}`);
    } catch (error) {
      setStatus(`Could not ${action === "reset" ? "reset" : "open"} ${key}: ${error.message}`, true);
    } finally {
      button.disabled = false;
    }
    await refresh();
  }

  function renderBreakers(breakers) {
    const rows = document.getElementById("breaker-rows");
    const fresh = breakers.map((breaker) => {
      const row = el("tr", { "data-key": breaker.key, "data-state": breaker.state });
      row.append(el("td", { class: "target" }, breaker.key));
      const state = el("td");
      const label = STATE_LABEL[breaker.state] || breaker.state;
      state.append(el("span", { class: `state ${breaker.state}` }, label));
      if (breaker.forced_open) state.append(document.createTextNode(" (forced)"));
      row.append(state);
      row.append(el("td", {}, breaker.state === "closed" ? "—" : since(breaker.opened_at)));
      row.append(el("td", {}, breaker.consecutive_failures));
      const error = breaker.last_error
        ? `${breaker.last_category ? `[${breaker.last_category}] ` : ""}${breaker.last_error}`
        : "—";
      row.append(el("td", { class: "error" }, error));
      const actions = el("td");
      const reset = el("button", { type: "button", class: "reset" }, "Reset");
      reset.addEventListener("click", () => act(breaker.key, "reset", reset));
      const open = el("button", { type: "button", class: "open danger" }, "Force open");
      open.addEventListener("click", () => act(breaker.key, "open", open));
      actions.append(reset, open);
      row.append(actions);
      return row;
    });
    rows.replaceChildren(...fresh);
    document.getElementById("no-breakers").hidden = breakers.length > 0;
  }

  function seriesChart(target, buckets, bucketSeconds) {
    const width = 360;
    const height = 120;
    const pad = { left: 28, right: 6, top: 6, bottom: 16 };
    const names = ["calls", "retries", "failures"];
    const max = Math.max(1, ...buckets.flatMap((b) => names.map((n) => b[n])));
    const innerW = width - pad.left - pad.right;
    const innerH = height - pad.top - pad.bottom;
    const x = (i) => pad.left + (buckets.length > 1 ? (i * innerW) / (buckets.length - 1) : 0);
    const y = (v) => pad.top + innerH - (v * innerH) / max;
    const chart = svg("svg", {
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-label": `calls, retries and failures of ${target}`,
    });
    chart.append(svg("line", { class: "axis", x1: pad.left, y1: y(0), x2: width - pad.right, y2: y(0) }));
    chart.append(svg("line", { class: "axis", x1: pad.left, y1: pad.top, x2: pad.left, y2: y(0) }));
    chart.append(svg("text", { x: 2, y: pad.top + 8 }, max));
    chart.append(svg("text", { x: 2, y: y(0) }, 0));
    const minutes = Math.round((buckets.length * bucketSeconds) / 60);
    chart.append(svg("text", { x: pad.left, y: height - 3 }, `-${minutes} min`));
    chart.append(svg("text", { x: width - pad.right - 22, y: height - 3 }, "now"));
    for (const name of names) {
      const points = buckets.map((b, i) => `${x(i).toFixed(1)},${y(b[name]).toFixed(1)}`);
      chart.append(svg("polyline", { class: name, points: points.join(" ") }));
    }
    return chart;
  }

  function renderCharts(stats) {
    const charts = document.getElementById("charts");
    const active = stats.targets.filter((t) => t.attempts > 0 || t.calls > 0);
    const fresh = active.map((target) => {
      const box = el("figure", { class: "chart", "data-target": target.target });
      box.append(el("h3", {}, target.target));
      box.append(
        el(
          "p",
          { class: "totals" },
          `${target.calls} calls · ${target.retries} retries · ${target.failures} failures · ` +
            `${target.refused} refused`,
        ),
      );
      box.append(seriesChart(target.target, target.buckets || [], stats.bucket_seconds || 60));
      return box;
    });
    charts.replaceChildren(...fresh);
    document.getElementById("no-activity").hidden = active.length > 0;
    const size = document.getElementById("bucket-size");
    size.textContent = stats.bucket_seconds ? `(per ${stats.bucket_seconds} s)` : "";
  }

  function renderCategories(stats) {
    const box = document.getElementById("categories");
    const counts = Object.entries(stats.failures_by_category || {}).sort((a, b) => b[1] - a[1]);
    document.getElementById("no-categories").hidden = counts.length > 0;
    if (counts.length === 0) {
      box.replaceChildren();
      return;
    }
    const total = counts.reduce((sum, [, n]) => sum + n, 0);
    const max = Math.max(...counts.map(([, n]) => n));
    const rowH = 22;
    const width = 640;
    const labelW = 150;
    const barW = width - labelW - 90;
    const chart = svg("svg", {
      viewBox: `0 0 ${width} ${counts.length * rowH + 4}`,
      role: "img",
      "aria-label": "failed attempts by error category",
    });
    counts.forEach(([name, n], i) => {
      const top = i * rowH + 2;
      chart.append(svg("text", { class: "bar-label", x: 0, y: top + 15 }, name));
      const w = Math.max(2, (n * barW) / max);
      chart.append(svg("rect", { class: "bar", x: labelW, y: top + 3, width: w, height: rowH - 8 }));
      const share = Math.round((100 * n) / total);
      chart.append(svg("text", { class: "bar-label", x: labelW + w + 6, y: top + 15 }, `${n} (${share}%)`));
    });
    box.replaceChildren(chart);
  }

  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      const [breakers, stats] = await Promise.all([
        api("/v1/admin/breakers"),
        api(`/v1/admin/stats?window=${WINDOW_SECONDS}`),
      ]);
      renderBreakers(breakers.breakers);
      renderCharts(stats);
      renderCategories(stats);
      document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
      setStatus(`updated ${new Date().toLocaleTimeString()}`);
    } catch (error) {
      setStatus(`Could not refresh: ${error.message}`, true);
    } finally {
      busy = false;
    }
  }

  function start() {
    refresh();
    timer = window.setInterval(refresh, REFRESH_MS);
    document.addEventListener("visibilitychange", () => {
      if (document.hidden) {
        window.clearInterval(timer);
      } else {
        refresh();
        timer = window.setInterval(refresh, REFRESH_MS);
      }
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
