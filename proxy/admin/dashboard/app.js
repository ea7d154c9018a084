// Strangler migration dashboard: polls the admin JSON and redraws. No framework, no build step.
// Everything from the server goes in through textContent, never innerHTML: route names and
// reload errors come from files people edit.
"use strict";

(function () {
  const body = document.body;
  const source = body.dataset.source || "/-/dashboard.json";
  // At least 200 ms: a link to `?interval=1` would otherwise have an operator's tab poll the
  // admin port, which shares worker 0's event loop with proxied traffic, without pause. At
  // most an hour: a timer's delay is a 32-bit integer, so `Infinity` waits 0 ms and
  // 4294967297 (2**32 + 1) waits 1 ms.
  const asked = Number(new URLSearchParams(location.search).get("interval")) ||
    Number(body.dataset.interval) || 2000;
  const interval = Number.isFinite(asked) ? Math.min(Math.max(200, asked), 3600000) : 2000;
  let previous = null; // the last payload, to turn cumulative counts into rates

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined) continue;
      if (key === "class") node.className = value;
      else if (key === "title") node.title = value;
      // Through the CSSOM: the page's Content-Security-Policy refuses style attributes.
      else if (key === "style") node.style.cssText = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function pct(x, digits = 1) {
    return x === null || x === undefined ? "–" : (x * 100).toFixed(digits) + "%";
  }

  function rateClass(rate, warn, bad) {
    if (rate === null || rate === undefined) return "";
    return rate >= bad ? "bad" : rate >= warn ? "warn" : "good";
  }

  // Counts since the previous poll for one route, or null on the first poll / a restart.
  function delta(route) {
    if (!previous) return null;
    const before = previous.routes.find((r) => r.name === route.name);
    if (!before) return null;
    const d = {};
    for (const side of ["legacy", "extracted", "proxy"]) {
      const none = { requests: 0, errors: 0 };
      const now = route.sides[side] || none, then = before.sides[side] || none;
      const req = now.requests - then.requests, err = now.errors - then.errors;
      if (req < 0 || err < 0) return null; // counters reset: the proxy restarted
      d[side] = { requests: req, errors: err };
    }
    d.seconds = Math.max(0.001, current.now - previous.now);
    return d;
  }

  let current = null;

  function splitCell(route, d) {
    // Recent split when there was traffic since the last poll, else the cumulative one.
    let legacy = route.sides.legacy.requests, extracted = route.sides.extracted.requests;
    if (d && d.legacy.requests + d.extracted.requests > 0) {
      legacy = d.legacy.requests;
      extracted = d.extracted.requests;
    }
    const total = legacy + extracted;
    const share = total ? extracted / total : null;
    const bar = el("div", { class: "split" },
      el("span", { class: "legacy", style: `width:${total ? (100 * legacy / total).toFixed(1) : 0}%` }),
      el("span", { class: "extracted", style: `width:${total ? (100 * extracted / total).toFixed(1) : 0}%` }));
    return el("td", { class: "split-cell", "data-extracted-share": share === null ? "" : share.toFixed(4) },
      el("div", { style: "display:flex;align-items:center" }, bar,
        el("span", { class: "split-label" },
          total ? `${pct(1 - share, 0)} / ${pct(share, 0)}` : "no traffic")));
  }

  function errorCell(route, d, side) {
    const s = route.sides[side];
    let rate = s.error_rate;
    if (d && d[side].requests > 0) rate = d[side].errors / d[side].requests;
    return el("td", {
      class: `num errors-${side} ${rateClass(rate, 0.01, 0.05)}`,
      title: `${s.errors} of ${s.requests} requests failed (5xx) since start`,
    }, s.requests || (d && d[side].requests) ? pct(rate, 2) : "–");
  }

  // Answers the proxy gave itself (rate limits, auth refusals, an auth check that failed):
  // counted apart from both sides, red when they are 5xx (the auth check is down).
  function refusedCell(route, d) {
    const s = route.sides.proxy || { requests: 0, errors: 0, error_rate: null };
    const count = d ? d.proxy.requests : s.requests;
    const errors = d ? d.proxy.errors : s.errors;
    return el("td", {
      class: `num refused ${rateClass(count ? errors / count : null, 0.01, 0.05)}`,
      title: `${s.requests} answered by the proxy since start (429, auth refusals), ${s.errors} of them 5xx`,
    }, count ? String(count) : "–");
  }

  function routeRow(route) {
    const d = delta(route);
    const rps = d ? (d.legacy.requests + d.extracted.requests + d.proxy.requests) / d.seconds : null;
    const sh = route.shadow;
    const shadowText = sh.compared
      ? `${pct(sh.match_rate)} of ${sh.compared}` + (sh.dropped ? ` (${sh.dropped} dropped)` : "")
      : route.mode === "shadow" ? "no comparisons yet" : "–";
    return el("tr", { "data-route": route.name, "data-mode": route.mode },
      el("td", { class: "name" }, el("b", {}, route.name)),
      el("td", { class: "match" }, el("code", {}, route.match)),
      el("td", { class: `mode mode-${route.mode}` }, route.mode),
      el("td", { class: "target" }, route.target || "–"),
      el("td", { class: "num canary" },
        route.canary_percent === null || route.canary_percent === undefined ? "–" : `${route.canary_percent}%`),
      splitCell(route, d),
      el("td", { class: "num rps", title: `${route.requests} requests since start` },
        rps === null ? "–" : rps.toFixed(1)),
      errorCell(route, d, "legacy"),
      errorCell(route, d, "extracted"),
      refusedCell(route, d),
      el("td", { class: "num fallbacks" }, route.fallbacks || "–"),
      el("td", {
        class: `num shadow ${rateClass(sh.match_rate === null ? null : 1 - sh.match_rate, 0.001, 0.01)}`,
        title: `match ${sh.match}, mismatch ${sh.mismatch}, noise ${sh.noise}, errors ${sh.error}, dropped ${sh.dropped}`,
      }, shadowText));
  }

  function upstreamRow(up) {
    return el("tr", { "data-upstream": up.name },
      el("td", {}, el("b", {}, up.name)),
      el("td", {}, el("code", {}, up.url)),
      el("td", { class: `breaker breaker-${up.breaker}` }, up.breaker.replace("_", "-")),
      el("td", { class: "num" }, up.attempts),
      el("td", { class: `num ${rateClass(up.failure_rate, 0.01, 0.05)}` },
        up.attempts ? `${up.failed} (${pct(up.failure_rate)})` : "–"));
  }

  function reloadItem(r) {
    return el("li", { class: r.ok ? "ok" : "failed" },
      el("time", {}, r.at || ""), " ",
      el("b", { class: r.ok ? "good" : "bad" }, r.ok ? "applied" : "rejected"),
      // A rejected reload changed nothing: its version/generation is the one still serving.
      r.ok && r.version !== null && r.version !== undefined ? ` version ${r.version}` : "",
      r.ok && r.generation !== null && r.generation !== undefined ? ` generation ${r.generation}` : "",
      r.trigger ? ` (${r.trigger})` : "",
      r.error ? el("span", { class: "error" }, r.error) : null);
  }

  function replaceRows(selector, nodes) {
    const target = document.querySelector(selector);
    target.replaceChildren(...nodes);
  }

  function render(data) {
    current = data;
    document.getElementById("config-version").textContent = data.config.version;
    document.getElementById("config-source").textContent = data.config.source;
    document.getElementById("config-default").textContent = data.config.default;
    document.getElementById("updated").textContent = data.generated_at;
    document.getElementById("shadow-report").href = data.shadow_report_url || "/-/shadow";
    replaceRows("#routes tbody", data.routes.map(routeRow));
    replaceRows("#upstreams tbody", data.upstreams.map(upstreamRow));
    const reloads = data.reloads.length ? data.reloads.map(reloadItem) : [el("li", {}, "none since start")];
    replaceRows("#reloads", reloads);
    previous = data;
  }

  function setStatus(ok, text) {
    const s = document.getElementById("status");
    s.className = "status " + (ok ? "live" : "stale");
    s.textContent = text;
  }

  async function poll() {
    try {
      const resp = await fetch(source, { cache: "no-store", headers: { Accept: "application/json" } });
      if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
      render(await resp.json());
      setStatus(true, "live");
    } catch (err) {
      setStatus(false, `disconnected: ${err.message}`);
    } finally {
      setTimeout(poll, interval);
    }
  }

  poll();
})();
