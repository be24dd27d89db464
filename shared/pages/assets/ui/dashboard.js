// The teacher's dashboard: one page, views chosen by the URL's fragment
// (#/overview, #/keys, #/key/<id>, #/providers, #/users, #/audit), every
// figure read from the admin API of the same origin. The admin key is kept
// in this tab's sessionStorage only and sent as the bearer header; it never
// goes into a URL, a cookie or storage that outlives the tab.
import { el, show, usd, count, when, ago, meter, columns, days, utcDay, table } from "./dom.js";

const KEY = "stipend.adminKey";
const main = document.getElementById("main");
const nav = document.getElementById("nav");
const signoutButton = document.getElementById("signout");

// ---- the admin API ----

class APIError extends Error {
  constructor(status, message, details) {
    super(message);
    this.status = status;
    this.details = details || [];
  }
}

async function api(method, path, body, contentType) {
  const headers = { Authorization: "Bearer " + sessionStorage.getItem(KEY) };
  let payload;
  if (body !== undefined) {
    payload = typeof body === "string" ? body : JSON.stringify(body);
    headers["Content-Type"] = contentType || "application/json";
  }
  const resp = await fetch(path, { method, headers, body: payload, cache: "no-store", credentials: "omit" });
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!resp.ok) {
    if (resp.status === 401) signOut("The admin key was refused; sign in again.");
    const details = (data && data.errors) || [];
    throw new APIError(resp.status, (data && data.error && data.error.message) || `${resp.status} ${resp.statusText}`, details.map((d) => d.message));
  }
  return data;
}

const q = (params) => new URLSearchParams(params).toString();

// ---- sign-in and routing ----

function signOut(why) {
  sessionStorage.removeItem(KEY);
  nav.hidden = true;
  signoutButton.hidden = true;
  signIn(why);
}

function signIn(message) {
  const input = el("input", { type: "password", id: "admin-key", name: "admin-key", autocomplete: "off", required: true, placeholder: "admin key", "aria-label": "admin key" });
  const note = el("p", { class: "error", role: "alert" }, message || "");
  show(main, el("section", { class: "card narrow", id: "signin" },
    el("h1", {}, "Sign in"),
    el("p", { class: "muted" }, "Paste the admin key. It stays in this browser tab (sessionStorage) and is sent only to this site's admin API."),
    el("form", { onsubmit: async (e) => {
      e.preventDefault();
      // The key is kept only once the API accepts it.
      const key = input.value.trim();
      const resp = await fetch("/api/v1/organization", { headers: { Authorization: "Bearer " + key }, cache: "no-store", credentials: "omit" });
      if (!resp.ok) {
        const data = await resp.json().catch(() => null);
        note.textContent = (data && data.error && data.error.message) || `${resp.status} ${resp.statusText}`;
        return;
      }
      sessionStorage.setItem(KEY, key);
      if (location.hash === "" || location.hash === "#/") location.hash = "#/overview";
      route();
    } }, input, el("button", { type: "submit" }, "Sign in")),
    note));
  input.focus();
}

signoutButton.addEventListener("click", () => signOut("Signed out."));
window.addEventListener("hashchange", route);

async function route() {
  if (!sessionStorage.getItem(KEY)) return signIn();
  nav.hidden = false;
  signoutButton.hidden = false;
  const [view, arg] = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const views = { overview, keys: keysView, key: keyView, providers: providersView, users: usersView, audit: auditView };
  const fn = views[view] || overview;
  for (const a of nav.querySelectorAll("a")) a.classList.toggle("active", a.dataset.view === (view === "key" ? "keys" : view || "overview"));
  show(main, el("p", { class: "muted" }, "Loading…"));
  try {
    await fn(arg);
  } catch (err) {
    if (err instanceof APIError && err.status === 401) return;
    show(main, el("p", { class: "error", role: "alert" }, "Could not load this view: " + err.message));
  }
}

function toast(text, bad) {
  const t = document.getElementById("toast");
  t.textContent = text;
  t.className = bad ? "bad show" : "show";
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.className = ""), 5000);
}

// ---- data shared by the views ----

const nowSec = () => Math.floor(Date.now() / 1000);
function monthStart() {
  const d = new Date();
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1) / 1000;
}

// loadKeys reads every key (archived too) with its lifetime and
// month-to-date metrics, over whole UTC days so the reports read daily
// aggregates, and when each was last used according to the latest events.
async function loadKeys() {
  const end = utcDay(nowSec()) + 86400;
  const [life, month, events] = await Promise.all([
    api("GET", "/api/v1/secret-keys?" + q({ includeArchived: true, includeMetrics: true, start: 0, end })),
    api("GET", "/api/v1/secret-keys?" + q({ includeArchived: true, includeMetrics: true, start: monthStart(), end })),
    api("GET", "/api/v1/events?" + q({ all: true, limit: 500, includeBodies: false })),
  ]);
  const monthBy = new Map(month.map((k) => [k.keyId, k.metrics || {}]));
  const last = new Map();
  for (const ev of events.events) if (!last.has(ev.keyId)) last.set(ev.keyId, ev.createdAt);
  const now = nowSec();
  return life.map((k) => {
    const life = k.metrics || {};
    const mo = monthBy.get(k.keyId) || {};
    const status = k.archived ? "archived" : k.revoked ? "revoked" : k.expiresAt && k.expiresAt <= now ? "expired" : "active";
    const fractions = [];
    if (k.costLimitInUsd > 0) fractions.push((life.costInUsd || 0) / k.costLimitInUsd);
    if (k.costLimitInUsdPerMonth > 0) fractions.push((mo.costInUsd || 0) / k.costLimitInUsdPerMonth);
    return {
      ...k, status, life, month: mo, lastUsed: last.get(k.keyId) || 0,
      closeness: fractions.length ? Math.max(...fractions) : -1,
    };
  });
}

// spendByDay sums the daily aggregates of keyIds over the n UTC days ending today.
async function spendByDay(keyIds, n) {
  const first = utcDay(nowSec()) - (n - 1) * 86400;
  const list = days(first, n).map((d) => ({ ...d, value: 0, requests: 0 }));
  for (let i = 0; i < keyIds.length; i += 1000) {
    const r = await api("POST", "/api/v1/reporting/events-by-day", { start: first, end: first + n * 86400, keyIds: keyIds.slice(i, i + 1000) });
    for (const p of r.dataPoints) {
      const d = list[Math.round((p.timeStamp - first) / 86400)];
      if (d) {
        d.value += p.costInUsd;
        d.requests += p.numberOfRequests;
      }
    }
  }
  return list.map((d) => ({ ...d, value: Math.round(d.value * 1e9) / 1e9, title: count(d.requests) + " requests" }));
}

const sum = (list, f) => list.reduce((a, x) => a + (Number(f(x)) || 0), 0);

// ---- overview ----

async function overview() {
  const [org, keys] = await Promise.all([api("GET", "/api/v1/organization"), loadKeys()]);
  const chart = await spendByDay(keys.map((k) => k.keyId), 30);
  const lifetime = sum(keys, (k) => k.life.costInUsd);
  const month = sum(keys, (k) => k.month.costInUsd);
  const requests = sum(keys, (k) => k.month.numberOfRequests);
  const errors = requests - sum(keys, (k) => k.month.successCount);
  const active = keys.filter((k) => k.status === "active");
  const top = [...keys].filter((k) => k.month.costInUsd > 0).sort((a, b) => b.month.costInUsd - a.month.costInUsd).slice(0, 5);
  const close = active.filter((k) => k.closeness >= 0).sort((a, b) => b.closeness - a.closeness).slice(0, 5);
  show(main,
    el("h1", {}, "Class overview"),
    el("div", { class: "tiles" },
      tile("This month", usd(month), meter(month, org.costLimitInUsdPerMonth), "overview-month"),
      tile("Lifetime", usd(lifetime), meter(lifetime, org.costLimitInUsd), "overview-lifetime"),
      tile("Requests this month", count(requests), el("span", { class: "muted" }, `${count(errors)} errors`), "overview-requests"),
      tile("Keys", count(active.length) + " active", el("span", { class: "muted" }, `${count(keys.length - active.length)} revoked, expired or archived`), "overview-keys")),
    el("section", { class: "card" }, el("h2", {}, "Spend per day (UTC), last 30 days"),
      el("div", { id: "spend-chart" }, columns(chart, { name: "spend per day" }))),
    el("div", { class: "two" },
      el("section", { class: "card" }, el("h2", {}, "Top spenders this month"),
        top.length ? table(["Key", "User", "This month"], top.map((k) => el("tr", {}, el("td", {}, keyLink(k)), el("td", {}, k.userId || "—"),
          el("td", {}, meter(k.month.costInUsd, k.costLimitInUsdPerMonth || k.costLimitInUsd)))), { id: "top-spenders" })
          : el("p", { class: "muted" }, "No spend this month yet.")),
      el("section", { class: "card" }, el("h2", {}, "Closest to their limits"),
        close.length ? table(["Key", "User", "Used"], close.map((k) => el("tr", {}, el("td", {}, keyLink(k)), el("td", {}, k.userId || "—"),
          el("td", {}, el("div", { class: "closeness" }, el("span", { class: "pct" }, Math.round(k.closeness * 100) + "%"), tightest(k))))), { id: "closest" })
          : el("p", { class: "muted" }, "No active key has a spend limit."))));
}

function tile(title, big, extra, id) {
  return el("section", { class: "card tile", id }, el("h3", {}, title), el("p", { class: "big" }, big), extra);
}

function tightest(k) {
  const life = k.costLimitInUsd > 0 ? (k.life.costInUsd || 0) / k.costLimitInUsd : -1;
  const mo = k.costLimitInUsdPerMonth > 0 ? (k.month.costInUsd || 0) / k.costLimitInUsdPerMonth : -1;
  return mo > life ? meter(k.month.costInUsd || 0, k.costLimitInUsdPerMonth) : meter(k.life.costInUsd || 0, k.costLimitInUsd);
}

const keyLink = (k) => el("a", { href: "#/key/" + encodeURIComponent(k.keyId) }, k.name);

// ---- keys ----

const natural = new Intl.Collator("en", { numeric: true, sensitivity: "base" }); // "Student 2" before "Student 10"

const keyColumns = [
  { id: "name", title: "Name", v: (k) => k.name },
  { id: "user", title: "User", v: (k) => k.userId || "" },
  { id: "status", title: "Status", v: (k) => k.status },
  { id: "lifetime", title: "Lifetime spend", v: (k) => k.life.costInUsd || 0 },
  { id: "month", title: "This month", v: (k) => k.month.costInUsd || 0 },
  { id: "requests", title: "Requests", v: (k) => k.life.numberOfRequests || 0 },
  { id: "last", title: "Last used", v: (k) => k.lastUsed },
];

async function keysView() {
  const [keys, providers] = await Promise.all([loadKeys(), api("GET", "/api/v1/providers")]);
  const state = { filter: "", status: "current", sort: "name", dir: 1, selected: new Set() };
  const body = el("tbody");
  const shown = el("span", { class: "muted", id: "keys-count" });
  const selectAll = el("input", { type: "checkbox", "aria-label": "select all shown keys", onchange: () => {
    for (const k of visible()) selectAll.checked ? state.selected.add(k.keyId) : state.selected.delete(k.keyId);
    draw();
  } });
  const head = el("tr", {}, el("th", {}, selectAll), keyColumns.map((c) => el("th", { class: "sortable", "data-sort": c.id, tabindex: 0,
    onclick: () => { state.dir = state.sort === c.id ? -state.dir : 1; state.sort = c.id; draw(); } }, c.title)));

  function visible() {
    const f = state.filter.toLowerCase();
    const col = keyColumns.find((c) => c.id === state.sort);
    return keys.filter((k) => (state.status === "all" || (state.status === "current" ? k.status !== "archived" : k.status === state.status)) &&
      (!f || [k.name, k.userId, k.keyId, ...(k.tags || [])].some((s) => (s || "").toLowerCase().includes(f))))
      .sort((a, b) => {
        const x = col.v(a), y = col.v(b);
        return ((typeof x === "string" ? natural.compare(x, y) : x - y) || natural.compare(a.name, b.name)) * state.dir;
      });
  }
  function draw() {
    const list = visible();
    for (const th of head.querySelectorAll("th[data-sort]")) th.setAttribute("aria-sort", th.dataset.sort === state.sort ? (state.dir > 0 ? "ascending" : "descending") : "none");
    body.replaceChildren(...list.map((k) => el("tr", { "data-key-id": k.keyId, class: k.status },
      el("td", {}, el("input", { type: "checkbox", "aria-label": "select " + k.name, checked: state.selected.has(k.keyId),
        onchange: (e) => { e.target.checked ? state.selected.add(k.keyId) : state.selected.delete(k.keyId); shown.textContent = summary(list); } })),
      el("td", { class: "name" }, keyLink(k)),
      el("td", {}, k.userId || "—"),
      el("td", {}, el("span", { class: "badge " + k.status }, k.status)),
      el("td", { class: "spend-lifetime" }, meter(k.life.costInUsd || 0, k.costLimitInUsd)),
      el("td", { class: "spend-month" }, meter(k.month.costInUsd || 0, k.costLimitInUsdPerMonth)),
      el("td", { class: "num" }, count(k.life.numberOfRequests)),
      el("td", { title: when(k.lastUsed) }, ago(k.lastUsed)))));
    shown.textContent = summary(list);
  }
  const summary = (list) => `${list.length} of ${keys.length} keys shown, ${state.selected.size} selected`;

  const setLife = el("input", { type: "number", min: 0, step: "any", placeholder: "lifetime $", "aria-label": "new lifetime limit in dollars", id: "bulk-lifetime" });
  const setMonth = el("input", { type: "number", min: 0, step: "any", placeholder: "monthly $", "aria-label": "new monthly limit in dollars", id: "bulk-month" });
  async function bulk(path, payload, done) {
    if (state.selected.size === 0) return toast("Select keys first.", true);
    try {
      const r = await api("POST", path, { keyIds: [...state.selected], ...payload });
      toast(done(r));
      await route();
    } catch (err) {
      toast(err.message, true);
    }
  }

  show(main,
    el("h1", {}, "Keys"),
    el("div", { class: "two" }, createKeyForm(providers), rosterForm(providers)),
    el("section", { class: "card" },
      el("div", { class: "toolbar" },
        el("input", { type: "search", placeholder: "Filter by name, user, id or tag", "aria-label": "filter keys", id: "keys-filter",
          oninput: (e) => { state.filter = e.target.value; draw(); } }),
        el("select", { "aria-label": "status", id: "keys-status", onchange: (e) => { state.status = e.target.value; draw(); } },
          ["current", "active", "revoked", "expired", "archived", "all"].map((s) => el("option", { value: s }, s))),
        shown),
      el("div", { class: "toolbar" },
        el("button", { type: "button", class: "danger", id: "revoke-selected", onclick: () => bulk("/api/v1/secret-keys/bulk-revoke", { reason: "revoked from the dashboard" },
          (r) => `${r.revoked} revoked, ${r.alreadyRevoked} already revoked, ${r.failed} failed`) }, "Revoke selected"),
        el("span", { class: "sep" }),
        setLife, setMonth,
        el("button", { type: "button", id: "raise-selected", onclick: () => {
          const set = {};
          if (setLife.value !== "") set.costLimitInUsdLifetime = Number(setLife.value);
          if (setMonth.value !== "") set.costLimitInUsdPerMonth = Number(setMonth.value);
          if (!Object.keys(set).length) return toast("Type a new limit first.", true);
          bulk("/api/v1/secret-keys/bulk-update", { set }, (r) => `${r.updated} updated, ${r.failed} failed`);
        } }, "Set limits of selected")),
      el("div", { class: "scroll" }, el("table", { id: "keys-table" }, el("thead", {}, head), body))));
  draw();
}

function providerSelect(providers, id) {
  return el("select", { id, required: true, "aria-label": "provider" },
    providers.map((p) => el("option", { value: p.id }, `${p.name} (${p.provider})`)));
}

const list = (s) => s.split(/[,;\s]+/).map((x) => x.trim()).filter(Boolean);

function createKeyForm(providers) {
  const name = el("input", { required: true, placeholder: "name", "aria-label": "key name", id: "new-key-name" });
  const userId = el("input", { placeholder: "user id (optional)", "aria-label": "user id" });
  const prov = providerSelect(providers, "new-key-provider");
  const life = el("input", { type: "number", min: 0, step: "any", placeholder: "lifetime limit $", "aria-label": "lifetime limit in dollars" });
  const month = el("input", { type: "number", min: 0, step: "any", placeholder: "monthly limit $", "aria-label": "monthly limit in dollars" });
  const ttl = el("input", { placeholder: "expires after, e.g. 120d", "aria-label": "time to live" });
  const models = el("input", { placeholder: "allowed models, e.g. gpt-4o-mini", "aria-label": "allowed models" });
  const out = el("div", { class: "once" });
  return el("details", { class: "card" }, el("summary", {}, "Create a key"),
    el("form", { class: "grid", onsubmit: async (e) => {
      e.preventDefault();
      const body = { name: name.value, providerSettingIds: [prov.value] };
      if (userId.value) body.userId = userId.value;
      if (life.value) body.costLimitInUsdLifetime = Number(life.value);
      if (month.value) body.costLimitInUsdPerMonth = Number(month.value);
      if (ttl.value) body.ttl = ttl.value;
      if (models.value) body.allowedModels = list(models.value);
      try {
        const k = await api("POST", "/api/v1/secret-keys", body);
        show(out, el("p", {}, "Copy the key now: it is shown once."), el("code", { class: "secret" }, k.key));
        toast("Key created.");
      } catch (err) {
        show(out, el("p", { class: "error" }, err.message));
      }
    } }, name, userId, prov, life, month, ttl, models, el("button", { type: "submit" }, "Create")), out);
}

function rosterForm(providers) {
  const file = el("input", { type: "file", accept: ".csv,text/csv", required: true, "aria-label": "roster CSV", id: "roster-file" });
  const prov = providerSelect(providers, "roster-provider");
  const life = el("input", { type: "number", min: 0, step: "any", value: "1", placeholder: "lifetime limit $ each", "aria-label": "lifetime limit per student in dollars", id: "roster-lifetime" });
  const ttl = el("input", { value: "120d", placeholder: "expires after", "aria-label": "time to live", id: "roster-ttl" });
  const models = el("input", { value: "gpt-4o-mini", placeholder: "allowed models", "aria-label": "allowed models", id: "roster-models" });
  const chatOnly = el("input", { type: "checkbox", checked: true, id: "roster-chat-only" });
  const out = el("div", { class: "once", id: "roster-result" });
  return el("details", { class: "card", id: "roster" }, el("summary", {}, "Upload a class roster (CSV)"),
    el("p", { class: "muted" }, "Columns userId,name,email. A user and a key per student; sending the same file again creates nothing new."),
    el("form", { class: "grid", onsubmit: async (e) => {
      e.preventDefault();
      const defaults = { providerSettingIds: [prov.value] };
      if (life.value) defaults.costLimitInUsdLifetime = Number(life.value);
      if (ttl.value) defaults.ttl = ttl.value;
      if (models.value) defaults.allowedModels = list(models.value);
      if (chatOnly.checked) defaults.allowedPaths = [{ method: "POST", path: "/v1/chat/completions" }];
      try {
        const csv = await file.files[0].text();
        const r = await api("POST", "/api/v1/secret-keys/bulk?" + q({ defaults: JSON.stringify(defaults) }), csv, "text/csv");
        const issued = [...r.created, ...r.rotated].filter((x) => x.key);
        const s = r.summary;
        const link = el("button", { type: "button", id: "roster-download" }, `Download the ${issued.length} new keys (CSV, once)`);
        link.addEventListener("click", () => {
          download("stipend-keys.csv", toCSV(["userId", "name", "email", "keyId", "key"], issued));
          issued.length = 0; // shown once: the keys leave memory with the download
          link.disabled = true;
          link.textContent = "Downloaded; the keys are not kept here.";
        });
        show(out, el("p", { id: "roster-summary" }, `${s.students} students: ${s.created} created, ${s.existing} existing, ${s.rotated} rotated, ${s.failed} failed.`),
          issued.length ? link : null,
          r.failed.length ? el("ul", { class: "error" }, r.failed.map((f) => el("li", {}, `${f.userId}: ${f.error}`))) : null);
        toast("Roster applied.");
      } catch (err) {
        show(out, el("p", { class: "error" }, err.message), err.details && err.details.length ? el("ul", { class: "error" }, err.details.map((d) => el("li", {}, d))) : null);
      }
    } }, file, prov, life, ttl, models, el("label", {}, chatOnly, " chat completions only"), el("button", { type: "submit" }, "Upload")), out);
}

function toCSV(fields, rows) {
  const cell = (v) => {
    let s = String(v ?? "");
    if (/^[=+\-@\t\r]/.test(s)) s = "'" + s; // no formulas in a spreadsheet
    return /[",\r\n]/.test(s) ? '"' + s.replaceAll('"', '""') + '"' : s;
  };
  return [fields.join(","), ...rows.map((r) => fields.map((f) => cell(r[f])).join(","))].join("\r\n") + "\r\n";
}

function download(name, text) {
  const url = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
  const a = el("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// ---- one key ----

async function keyView(id) {
  const [[k], ids, evs] = await Promise.all([
    api("GET", "/api/v1/secret-keys/" + encodeURIComponent(id)), // a list of one, as BricksAI answers
    api("GET", "/api/v1/custom-ids?" + q({ keyId: id })),
    api("GET", "/api/v1/events?" + q({ keyId: id, limit: 100 })),
  ]);
  const status = k.archived ? "archived" : k.revoked ? "revoked" : k.suspended ? "suspended"
    : k.expiresAt && k.expiresAt <= nowSec() ? "expired" : "active";
  const strikes = evs.events.filter((e) => e.errorCode === "content_flagged");
  const lift = async () => {
    try {
      await api("PATCH", "/api/v1/secret-keys/" + encodeURIComponent(k.keyId), { suspended: false });
      toast("Suspension lifted; the key's strikes are back to 0.");
      await keyView(k.keyId);
    } catch (err) {
      toast(err.message, true);
    }
  };
  const suspension = k.suspended
    ? [el("p", { id: "suspension" }, `Suspended ${when(k.suspendedAt)}: ${k.suspendedReason}.`),
      el("button", { type: "button", class: "danger", id: "lift-suspension", onclick: lift }, "Lift the suspension")]
    : [];
  const range = el("select", { "aria-label": "range", id: "usage-range" }, [7, 30, 90].map((n) => el("option", { value: n, selected: n === 30 }, `last ${n} days`)));
  const chart = el("div", { id: "key-chart" });
  async function drawChart() {
    const points = await spendByDay([k.keyId], Number(range.value));
    show(chart, columns(points, { name: "spend per day" }),
      el("p", { class: "muted" }, `${count(sum(points, (p) => p.requests))} requests, ${usd(sum(points, (p) => p.value))} in this range`));
  }
  range.addEventListener("change", drawChart);

  show(main,
    el("p", {}, el("a", { href: "#/keys" }, "← Keys")),
    el("h1", {}, k.name, " ", el("span", { class: "badge " + status }, status)),
    el("p", { class: "muted" }, `id ${k.keyId} · user ${k.userId || "—"} · created ${when(k.createdAt)} · expires ${k.expiresAt ? when(k.expiresAt) : "never"}`,
      (k.tags || []).length ? " · tags " + k.tags.join(", ") : ""),
    el("div", { class: "two" }, limitsForm(k, status), el("section", { class: "card" }, el("h2", {}, "Usage"), range, chart)),
    el("div", { class: "two" },
      el("section", { class: "card" }, el("h2", {}, "Custom ids"),
        ids.customIds.length ? el("ul", { id: "custom-ids" }, ids.customIds.map((c) => el("li", {}, el("code", {}, c)))) : el("p", { class: "muted" }, "None.")),
      el("section", { class: "card" }, el("h2", {}, `Moderation strikes: ${k.moderationStrikes ?? strikes.length} of ${k.moderationStrikeLimit}`),
        ...suspension,
        strikes.length ? el("ul", {}, strikes.map((e) => el("li", {}, when(e.createdAt), " · ", e.model))) : el("p", { class: "muted" }, "No flagged request among the latest events."))),
    el("section", { class: "card" }, el("h2", {}, "Recent events"), eventsTable(evs.events)));
  await drawChart();
}

function limitsForm(k, status) {
  const money = (v, label, id) => el("label", {}, label, el("input", { type: "number", min: 0, step: "any", value: v || "", placeholder: "none", id }));
  const life = money(k.costLimitInUsd, "Lifetime $", "limit-lifetime");
  const month = money(k.costLimitInUsdPerMonth, "Monthly $", "limit-month");
  const over = money(k.costLimitInUsdOverTime, "Spend per unit $", "limit-over");
  const overUnit = el("select", { "aria-label": "spend unit" }, ["", "m", "h", "d", "mo"].map((u) => el("option", { value: u, selected: u === k.costLimitInUsdUnit }, u || "—")));
  const rate = el("input", { type: "number", min: 0, step: 1, value: k.rateLimitOverTime || "", placeholder: "none", "aria-label": "requests per unit" });
  const rateUnit = el("select", { "aria-label": "request unit" }, ["", "s", "m", "h", "d"].map((u) => el("option", { value: u, selected: u === k.rateLimitUnit }, u || "—")));
  const models = el("input", { value: (k.allowedModels || []).join(", "), placeholder: "any model", "aria-label": "allowed models" });
  const note = el("p", { role: "status" });
  const field = (input) => input.querySelector("input").value;
  return el("section", { class: "card" }, el("h2", {}, "Limits"),
    el("form", { class: "grid", onsubmit: async (e) => {
      e.preventDefault();
      const body = {
        costLimitInUsdLifetime: Number(field(life) || 0), costLimitInUsdPerMonth: Number(field(month) || 0),
        costLimitInUsdOverTime: Number(field(over) || 0), rateLimitOverTime: Number(rate.value || 0), allowedModels: list(models.value),
      };
      if (overUnit.value) body.costLimitInUsdUnit = overUnit.value;
      if (rateUnit.value) body.rateLimitUnit = rateUnit.value;
      try {
        await api("PATCH", "/api/v1/secret-keys/" + encodeURIComponent(k.keyId), body);
        toast("Limits saved.");
        route();
      } catch (err) {
        note.textContent = err.message;
        note.className = "error";
      }
    } }, life, month, over, el("label", {}, "Spend unit", overUnit), el("label", {}, "Requests per unit", rate), el("label", {}, "Request unit", rateUnit),
      el("label", {}, "Allowed models", models),
      el("button", { type: "submit" }, "Save limits")),
    status === "active" ? el("button", { type: "button", class: "danger", id: "revoke-key", onclick: async () => {
      try {
        await api("PATCH", "/api/v1/secret-keys/" + encodeURIComponent(k.keyId), { revoked: true, revokedReason: "revoked from the dashboard" });
        toast("Key revoked.");
        route();
      } catch (err) {
        toast(err.message, true);
      }
    } }, "Revoke this key") : null,
    note);
}

function eventsTable(events) {
  if (!events.length) return el("p", { class: "muted" }, "No events yet.");
  return el("div", { class: "scroll" }, table(["Time", "Model", "Path", "Status", "Tokens in / out", "Cost", "Custom id", "Notes"],
    events.map((e) => {
      const notes = [e.errorCode, e.estimated && "estimated", e.incomplete && "incomplete", e.overrun && "overrun"].filter(Boolean).join(", ");
      const row = el("tr", { class: e.status >= 400 ? "failed" : "" },
        el("td", {}, when(e.createdAt)), el("td", {}, e.model), el("td", {}, e.method + " " + e.path), el("td", {}, e.status),
        el("td", { class: "num" }, `${count(e.usage && e.usage.promptTokens)} / ${count(e.usage && e.usage.completionTokens)}`),
        el("td", { class: "num" }, usd(e.costInUsd)), el("td", {}, e.customId || ""), el("td", {}, notes,
          e.requestBody || e.responseBody ? el("details", {}, el("summary", {}, "bodies"),
            e.requestBody ? el("pre", { class: "body" }, e.requestBody) : null,
            e.responseBody ? el("pre", { class: "body" }, e.responseBody) : null) : null));
      return row;
    }), { id: "events-table" }));
}

// ---- providers, users, audit ----

async function providersView() {
  const providers = await api("GET", "/api/v1/providers");
  const name = el("input", { required: true, placeholder: "name", "aria-label": "provider name" });
  const kind = el("select", { "aria-label": "provider kind" }, ["openai", "azure", "anthropic", "openai-compatible"].map((p) => el("option", { value: p }, p)));
  const base = el("input", { placeholder: "base URL (azure, openai-compatible)", "aria-label": "base URL" });
  const key = el("input", { type: "password", required: true, autocomplete: "off", placeholder: "provider API key (write-only)", "aria-label": "provider API key" });
  const models = el("input", { placeholder: "allowed models (optional)", "aria-label": "allowed models" });
  const note = el("p", { role: "status" });
  show(main, el("h1", {}, "Providers"),
    el("section", { class: "card" }, table(["Name", "Provider", "Base URL", "Allowed models", "Created"],
      providers.map((p) => el("tr", {}, el("td", {}, p.name), el("td", {}, p.provider), el("td", {}, p.baseUrl || "—"),
        el("td", {}, (p.allowedModels || []).join(", ") || "any"), el("td", {}, when(p.createdAt)))), { id: "providers-table" })),
    el("section", { class: "card" }, el("h2", {}, "Add a provider"),
      el("p", { class: "muted" }, "The API key goes to Secrets Manager and is never shown again."),
      el("form", { class: "grid", onsubmit: async (e) => {
        e.preventDefault();
        const body = { name: name.value, provider: kind.value, apiKey: key.value };
        if (base.value) body.baseUrl = base.value;
        if (models.value) body.allowedModels = list(models.value);
        try {
          await api("POST", "/api/v1/providers", body);
          key.value = "";
          toast("Provider added.");
          route();
        } catch (err) {
          note.textContent = err.message;
          note.className = "error";
        }
      } }, name, kind, base, key, models, el("button", { type: "submit" }, "Add")), note));
}

async function usersView() {
  const users = await api("GET", "/api/v1/users");
  show(main, el("h1", {}, "Users"),
    el("section", { class: "card" }, users.length ? table(["User id", "Name", "Lifetime limit", "Rate limit", "Status", "Created"],
      users.map((u) => el("tr", {}, el("td", {}, u.userId), el("td", {}, u.name), el("td", {}, u.costLimitInUsd ? usd(u.costLimitInUsd) : "none"),
        el("td", {}, u.rateLimitOverTime ? `${u.rateLimitOverTime} / ${u.rateLimitUnit}` : "none"),
        el("td", {}, u.revoked ? "revoked" : "active"), el("td", {}, when(u.createdAt)))), { id: "users-table" })
      : el("p", { class: "muted" }, "No users yet.")));
}

// targets shows the first few target ids of an audit entry and how many more.
function targets(a) {
  const ids = a.targetIds || [];
  const more = ids.length - 6 + (a.targetsTruncated ? 1 : 0);
  return ids.slice(0, 6).join(", ") + (more > 0 ? ` and ${a.targetsTruncated ? "more" : more + " more"}` : "");
}

async function auditView() {
  const body = el("tbody");
  const more = el("button", { type: "button", hidden: true }, "Older entries");
  let cursor = null;
  async function page() {
    const r = await api("GET", "/api/v1/audit?" + q(cursor ? { limit: 100, cursor } : { limit: 100 }));
    body.append(...r.entries.map((a) => el("tr", {}, el("td", {}, when(a.createdAt)), el("td", {}, a.action),
      el("td", { title: (a.targetIds || []).join(", ") }, targets(a)), el("td", {}, (a.fields || []).join(", ")),
      el("td", {}, a.status), el("td", {}, el("code", {}, a.requestId)))));
    cursor = r.cursor;
    more.hidden = !cursor;
  }
  more.addEventListener("click", () => page().catch((err) => toast(err.message, true)));
  show(main, el("h1", {}, "Audit trail"),
    el("section", { class: "card" }, el("div", { class: "scroll" }, el("table", { id: "audit-table" },
      el("thead", {}, el("tr", {}, ["Time", "Action", "Targets", "Fields", "Status", "Request id"].map((t) => el("th", {}, t)))), body)), more));
  await page();
}

route();
