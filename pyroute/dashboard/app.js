/* pyroute dashboard: plain JavaScript, no libraries. Reads Traefik's API (/api/...) and
   pyroute's additions (/api/pyroute/...); everything from the configuration is inserted as
   text (never as HTML). Polls /api/pyroute/generation and reloads its data when the
   configuration, a reload's result or a server's health changes. */
(function () {
  "use strict";
  var API = document.querySelector('meta[name="api-url"]').content;
  if (!API || API.indexOf("{{") === 0) { API = "../api/"; }
  var state = { key: null, routers: [], services: [], rates: null };

  function h(tag, attrs) {
    var el = document.createElement(tag);
    if (attrs) {
      for (var k in attrs) {
        if (k === "text") { el.textContent = attrs[k]; } else { el.setAttribute(k, attrs[k]); }
      }
    }
    for (var i = 2; i < arguments.length; i++) { add(el, arguments[i]); }
    return el;
  }
  function add(el, c) {
    if (c === null || c === undefined || c === false) { return; }
    if (Array.isArray(c)) { c.forEach(function (x) { add(el, x); }); }
    else if (typeof c === "string" || typeof c === "number") { el.appendChild(document.createTextNode(String(c))); }
    else { el.appendChild(c); }
  }
  function badge(text, cls) { return h("span", { "class": "badge " + (cls || text), text: text }); }
  function chips(list, cls) {
    return h("span", { "class": "chips" + (cls ? " " + cls : "") }, (list || []).map(function (x) { return h("span", { "class": "mono", text: x }); }));
  }
  function get(path) {
    return fetch(API + path, { cache: "no-store" }).then(function (r) {
      if (!r.ok) { throw new Error(path + ": HTTP " + r.status); }
      return r.json();
    });
  }
  function all(path) {
    // every page (Traefik's page/per_page and X-Next-Page)
    var out = [];
    function page(n) {
      return fetch(API + path + "?per_page=100&page=" + n, { cache: "no-store" }).then(function (r) {
        if (!r.ok) { throw new Error(path + ": HTTP " + r.status); }
        var next = parseInt(r.headers.get("X-Next-Page") || "1", 10);
        return r.json().then(function (items) {
          out = out.concat(items);
          return next > n ? page(next) : out;
        });
      });
    }
    return page(1);
  }
  function table(id, headers, rows) {
    var box = document.getElementById(id);
    box.textContent = "";
    if (!rows.length) { box.appendChild(h("p", { "class": "muted", text: "none" })); return; }
    box.appendChild(h("table", { id: id + "-table" },
      h("thead", null, h("tr", null, headers.map(function (t) { return h("th", { text: t }); }))),
      h("tbody", null, rows.map(function (r) {
        var tr = h("tr", r.attrs || null);
        r.cells.forEach(function (c, i) { tr.appendChild(h("td", { "data-label": headers[i] }, c)); });
        return tr;
      }))));
  }

  // -- sections ----------------------------------------------------------------------------
  function renderOverview(ov) {
    var cards = document.getElementById("cards");
    cards.textContent = "";
    [["Routers", ov.http.routers], ["Services", ov.http.services], ["Middlewares", ov.http.middlewares]]
      .forEach(function (c) {
        var s = c[1];
        cards.appendChild(h("div", { "class": "card", id: "card-" + c[0].toLowerCase() },
          h("div", { "class": "muted", text: "HTTP " + c[0] }),
          h("div", { "class": "n", text: String(s.total) }),
          h("div", { "class": "sub" },
            s.errors ? badge(s.errors + " error" + (s.errors > 1 ? "s" : ""), "error") : badge("no errors", "ok"), " ",
            s.warnings ? badge(s.warnings + " warning" + (s.warnings > 1 ? "s" : ""), "warning") : null)));
      });
  }
  function renderEntryPoints(eps) {
    table("entrypoints-list", ["Name", "Address", "Timeouts", "Forwarded headers"], eps.map(function (e) {
      var rt = (e.transport || {}).respondingTimeouts || {};
      var fh = e.forwardedHeaders || {};
      return { attrs: { "data-name": e.name }, cells: [
        h("strong", { text: e.name }), h("code", { text: e.address }),
        h("span", { "class": "mono", text: ["read " + (rt.readTimeout || "0s"), "write " + (rt.writeTimeout || "0s"), "idle " + (rt.idleTimeout || "0s")].join(", ") }),
        fh.insecure ? "trust all" : (fh.trustedIPs ? chips(fh.trustedIPs) : h("span", { "class": "muted", text: "none trusted" }))] };
    }));
  }
  function renderRouters() {
    var q = (document.getElementById("router-filter").value || "").toLowerCase();
    var rows = state.routers.filter(function (r) {
      return !q || r.name.toLowerCase().indexOf(q) >= 0 || (r.rule || "").toLowerCase().indexOf(q) >= 0;
    });
    table("routers-list", ["Status", "Router", "Rule", "Priority", "Entry points", "TLS", "Middlewares", "Service", "Traffic"], rows.map(function (r) {
      return { attrs: { "data-name": r.name, "class": "router is-" + r.status }, cells: [
        badge(r.status),
        h("div", null, h("code", { text: r.name }), (r.error || []).map(function (e) { return h("div", { "class": "err", text: e }); })),
        h("code", { text: r.rule || "" }),
        h("span", { text: r.priorityStr }),
        chips(r.using || r.entryPoints, "nowrap"),
        r.tls ? h("span", null, badge("TLS", "ok"), " ", h("span", { "class": "mono", text: "options " + (r.tls.options || "default") + (r.tls.certResolver ? ", resolver " + r.tls.certResolver : "") })) : h("span", { "class": "muted", text: "no" }),
        chips(r.middlewares),
        h("code", { text: r.service || "" }),
        rateCell("routers", r.name)] };
    }));
  }
  function renderServices() {
    table("services-list", ["Status", "Service", "Type", "Servers", "Used by", "Traffic"], state.services.map(function (s) {
      var servers = ((s.loadBalancer || {}).servers || []).map(function (srv) {
        var st = (s.serverStatus || {})[srv.url];
        return h("div", { "class": "server" }, st ? badge(st) : badge("not built", "muted"), " ", h("code", { text: srv.url }));
      });
      var children = [];
      ["weighted", "highestRandomWeight"].forEach(function (k) {
        ((s[k] || {}).services || []).forEach(function (c) {
          children.push(h("div", null, h("code", { text: c.name }), " ", h("span", { "class": "muted", text: "weight " + (c.weight === undefined ? 1 : c.weight) })));
        });
      });
      if (s.mirroring) {
        children.push(h("div", null, "main ", h("code", { text: s.mirroring.service })));
        (s.mirroring.mirrors || []).forEach(function (m) { children.push(h("div", null, "mirror ", h("code", { text: m.name }), " " + (m.percent || 0) + "%")); });
      }
      if (s.failover) {
        children.push(h("div", null, "main ", h("code", { text: s.failover.service }), ", fallback ", h("code", { text: s.failover.fallback })));
      }
      return { attrs: { "data-name": s.name, "class": "service is-" + s.status }, cells: [
        badge(s.status),
        h("div", null, h("code", { text: s.name }), (s.error || []).map(function (e) { return h("div", { "class": "err", text: e }); })),
        h("span", { text: s.type || "" }),
        h("div", null, servers, children, (!servers.length && !children.length) ? h("span", { "class": "muted", text: "-" }) : null),
        chips(s.usedBy),
        rateCell("services", s.name)] };
    }));
  }
  function renderMiddlewares(mws) {
    table("middlewares-list", ["Status", "Middleware", "Type", "Used by"], mws.map(function (m) {
      return { attrs: { "data-name": m.name, "class": "middleware is-" + m.status }, cells: [
        badge(m.status),
        h("div", null, h("code", { text: m.name }), (m.error || []).map(function (e) { return h("div", { "class": "err", text: e }); })),
        h("span", { text: m.type || "" }),
        (m.usedBy && m.usedBy.length) ? chips(m.usedBy) : h("span", { "class": "muted", text: "unused" })] };
    }));
  }
  function renderReload(rel) {
    var b = document.getElementById("reload");
    b.className = "badge " + (rel.ok ? "ok" : "bad");
    b.textContent = rel.ok ? "configuration #" + rel.generation + " (" + rel.trigger + ")" : "last reload refused";
    var box = document.getElementById("problems-list");
    box.textContent = "";
    box.appendChild(h("p", { id: "reload-summary" },
      rel.ok ? badge("applied", "ok") : badge("refused", "bad"), " ",
      rel.trigger + " at " + rel.time + " — serving configuration #" + rel.generation));
    if (rel.error) { box.appendChild(h("pre", { "class": "err mono", id: "reload-error", text: rel.error })); }
    var probs = rel.problems || [];
    var rows = probs.map(function (p) {
      var where = (p.file || "") + (p.line ? ":" + p.line : "");
      var obj = p.kind ? p.kind + " " + (p.namespace ? p.namespace + "/" : "") + (p.name || "") : "";
      return h("tr", { "class": "problem is-" + p.severity },
        h("td", { "data-label": "Severity" }, badge(p.severity, p.severity === "warning" ? "warning" : "error")),
        h("td", { "data-label": "Where" }, h("code", { text: where })),
        h("td", { "data-label": "Object" }, h("span", { text: obj })),
        h("td", { "data-label": "Field" }, h("code", { text: p.field || "" })),
        h("td", { "data-label": "Message" }, h("span", { text: p.message })));
    });
    if (rows.length) {
      box.appendChild(h("table", { id: "problems-table" },
        h("thead", null, h("tr", null, ["Severity", "Where", "Object", "Field", "Message"].map(function (t) { return h("th", { text: t }); }))),
        h("tbody", null, rows)));
    } else {
      box.appendChild(h("p", { "class": "muted", text: "no warnings or errors" }));
    }
  }
  function renderWorkers(ws) {
    table("workers-list", ["Worker", "PID", "State", "Restarts"], ws.map(function (w) {
      return { cells: [String(w.index), String(w.pid || "-"),
        w.alive ? badge("alive", "ok") : badge(w.givenUp ? "given up" : "restarting", "bad"),
        String(w.restarts)] };
    }));
  }

  // -- request and error rates (/api/pyroute/rates, from the master's metrics) -------------
  function pct(x) { return (100 * x).toFixed(1) + "%"; }
  function rateLine(w, name) {
    return h("div", { "class": "rate-" + name },
      h("span", { "class": "mono", text: name + " " + w.perSecond.toFixed(2) + " req/s" }), " ",
      badge("4xx " + pct(w.share4xx), w.share4xx ? "warning" : "muted"), " ",
      badge("5xx " + pct(w.share5xx), w.share5xx ? "error" : "muted"), " ",
      h("span", { "class": "muted", text: w.requests + " req in " + Math.round(w.seconds) + "s" }));
  }
  function fillRate(td, kind, name) {
    td.textContent = "";
    var r = state.rates;
    if (!r) { td.appendChild(h("span", { "class": "muted", text: "…" })); return; }
    if (!r.enabled) { td.appendChild(h("span", { "class": "muted metrics-off", title: r.reason, text: "metrics off" })); return; }
    var row = (r[kind] || {})[name];
    if (!row) { td.appendChild(h("span", { "class": "muted", text: "no requests" })); return; }
    td.setAttribute("data-requests", String(row.total.requests));
    r.windows.forEach(function (w) { td.appendChild(rateLine(row[w], w)); });
  }
  function rateCell(kind, name) {
    var span = h("div", { "class": "rates", "data-kind": kind });
    fillRate(span, kind, name);
    return span;
  }
  function refreshRates() {
    // metrics are a static setting: once off, they stay off until pyroute restarts
    if (state.rates && !state.rates.enabled) { return Promise.resolve(); }
    return get("pyroute/rates").then(function (r) {
      state.rates = r;
      var note = document.getElementById("rates-note");
      note.textContent = r.enabled ? "Traffic: requests per second and the share of 4xx and 5xx answers over the last " + r.windows.join(" and ") + ", from pyroute's metrics."
        : "Traffic: metrics off — " + r.reason + ".";
      ["routers", "services"].forEach(function (kind) {
        var rows = document.querySelectorAll("#" + kind + "-list tbody tr");
        Array.prototype.forEach.call(rows, function (tr) {
          var cell = tr.querySelector("div.rates");
          if (cell) { fillRate(cell, kind, tr.getAttribute("data-name")); }
        });
      });
      document.body.setAttribute("data-rates", String(Date.now()));
    });
  }

  // -- explain -----------------------------------------------------------------------------
  function tree(node) {
    if (!node) { return null; }
    var extra = [];
    if (node.weight !== undefined) { extra.push("weight " + node.weight); }
    if (node.role) { extra.push(node.role); }
    return h("div", { "class": "tree" },
      h("div", null, h("code", { text: node.name }), " ", h("span", { "class": "muted", text: node.type + (extra.length ? " (" + extra.join(", ") + ")" : "") }),
        node.status ? [" ", badge(node.status, node.status === "down" || node.status === "DOWN" ? "DOWN" : "ok")] : null),
      (node.servers || []).map(function (s) { return h("div", { "class": "server" }, "→ ", h("code", { text: s.url }), h("span", { "class": "muted", text: "  weight " + s.weight })); }),
      (node.children || []).map(tree));
  }
  function renderExplain(res) {
    var box = document.getElementById("explain-result");
    box.textContent = "";
    var verdict = res.status === null ? "forwarded to the service (the backend answers)"
      : res.status === 0 ? "connection closed without an answer" : "pyroute answers " + res.status;
    var out = h("div", { "class": "result", id: "explain-out" },
      h("h3", null, res.router ? ["Router ", h("code", { id: "ex-router", text: res.router })] : h("span", { id: "ex-router", text: "No router matches" })),
      h("p", null, h("strong", { id: "ex-status", text: verdict }), h("span", { "class": "muted", text: " · entry point " + res.entrypoint })));
    if (res.router) {
      out.appendChild(h("p", null, "rule ", h("code", { text: res.rule }), " · priority " + res.priority));
    }
    if (res.tls) {
      out.appendChild(h("p", null, "TLS: SNI ", h("code", { text: String(res.tls.sni) }), " → option " + res.tls.option + "; certificate: " + res.tls.certificate));
    }
    var others = (res.matched || []).filter(function (m) { return m.router !== res.router; });
    if (others.length) {
      out.appendChild(h("div", null, h("strong", { text: "Also matched, and why they lost" }),
        h("ul", { id: "ex-others" }, others.map(function (m) {
          return h("li", null, h("code", { text: m.router }), " — " + m.why + " (priority " + m.priority + ")");
        }))));
    }
    if (res.middlewares && res.middlewares.length) {
      out.appendChild(h("div", null, h("strong", { text: "Middleware chain" }),
        h("ol", { id: "ex-chain" }, res.middlewares.map(function (m) {
          return h("li", null, h("code", { text: m.name }), " ", h("span", { "class": "muted", text: m.type || m.status || "" }));
        }))));
    }
    if (res.service) {
      out.appendChild(h("div", { id: "ex-service" }, h("strong", { text: "Service" }), tree(res.service)));
    }
    (res.notes || []).forEach(function (n) { out.appendChild(h("p", { "class": "muted", text: "note: " + n })); });
    box.appendChild(out);
  }
  document.getElementById("explain-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var headers = document.getElementById("ex-headers").value.split("\n").map(function (s) { return s.trim(); }).filter(Boolean);
    var body = { method: document.getElementById("ex-method").value, url: document.getElementById("ex-url").value.trim(), headers: headers };
    var ip = document.getElementById("ex-ip").value.trim();
    var ep = document.getElementById("ex-ep").value.trim();
    if (ip) { body.client_ip = ip; }
    if (ep) { body.entrypoint = ep; }
    fetch(API + "pyroute/explain", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) })
      .then(function (r) { return r.json().then(function (j) { if (!r.ok) { throw new Error(j.message || ("HTTP " + r.status)); } return j; }); })
      .then(renderExplain)
      .catch(function (e) {
        var box = document.getElementById("explain-result");
        box.textContent = "";
        box.appendChild(h("div", { "class": "result err", id: "explain-out", text: String(e.message || e) }));
      });
  });
  document.getElementById("router-filter").addEventListener("input", renderRouters);

  // -- loading and polling -----------------------------------------------------------------
  function loadAll() {
    return Promise.all([get("overview"), get("entrypoints"), all("http/routers"), all("http/services"),
      all("http/middlewares"), get("pyroute/reload"), get("pyroute/workers"), get("version")])
      .then(function (r) {
        renderOverview(r[0]); renderEntryPoints(r[1]);
        state.routers = r[2]; renderRouters();
        state.services = r[3]; renderServices(); renderMiddlewares(r[4]); renderReload(r[5]); renderWorkers(r[6]);
        document.getElementById("version").textContent = "v" + r[7].Version;
        document.body.setAttribute("data-loaded", String(state.generation));
      });
  }
  function poll() {
    get("pyroute/generation").then(function (g) {
      var key = JSON.stringify([g.generation, g.health, g.reload]);
      document.getElementById("live").textContent = "live · #" + g.generation;
      if (key !== state.key) {
        state.key = key;
        state.generation = g.generation;
        return loadAll().then(refreshRates);
      }
      return refreshRates();
    }).catch(function (e) {
      document.getElementById("live").textContent = "API unreachable: " + (e.message || e);
    }).then(function () { setTimeout(poll, 2000); });
  }
  document.getElementById("api-url").textContent = API;
  poll();
})();
