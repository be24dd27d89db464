// The student's page: paste a stipend key, see what is left of each limit,
// the rate limits, the models the key may use, when it expires and its last
// requests. The key stays in this tab (sessionStorage) and is sent only to
// this site's GET /v1/key/info and GET /v1/models.
import { el, show, usd, count, when, meter, table } from "./dom.js";

const KEY = "stipend.studentKey";
const main = document.getElementById("main");
const forget = document.getElementById("signout");

forget.addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  ask("Your key was removed from this tab.");
});

async function call(path) {
  const resp = await fetch(path, { headers: { Authorization: "Bearer " + sessionStorage.getItem(KEY) }, cache: "no-store", credentials: "omit" });
  const data = await resp.json().catch(() => null);
  if (!resp.ok) throw new Error((data && data.error && data.error.message) || `${resp.status} ${resp.statusText}`);
  return data;
}

function ask(message) {
  forget.hidden = true;
  const input = el("input", { type: "password", id: "student-key", autocomplete: "off", required: true, placeholder: "sk-stp-…", "aria-label": "your stipend key" });
  const note = el("p", { class: "error", role: "alert" }, message || "");
  show(main, el("section", { class: "card narrow" },
    el("h1", {}, "How much is left?"),
    el("p", { class: "muted" }, "Paste the key your teacher gave you. It stays in this browser tab and is sent only to this site, to read your own limits and requests."),
    el("form", { onsubmit: async (e) => {
      e.preventDefault();
      sessionStorage.setItem(KEY, input.value.trim());
      try {
        await render();
      } catch (err) {
        sessionStorage.removeItem(KEY);
        note.textContent = err.message;
        main.querySelector("section").append(note);
      }
    } }, input, el("button", { type: "submit" }, "Show")), note));
  input.focus();
}

const spend = (l) => l.kind === "spend";
const fmt = (l) => (spend(l) ? usd : count);

async function render() {
  const [info, models] = await Promise.all([call("/v1/key/info"), call("/v1/models")]);
  forget.hidden = false;
  const money = info.limits.filter(spend);
  const rates = info.limits.filter((l) => !spend(l));
  const events = info.recentEvents || [];
  show(main,
    el("h1", {}, info.name),
    el("p", { class: "muted", id: "key-facts" }, info.revoked ? "This key is revoked. " : "",
      info.expiresAt ? `Expires ${when(info.expiresAt)}.` : "Never expires.",
      ` Spent ${usd(info.spendInUsd)} in all, ${usd(info.spendThisMonthInUsd)} this month.`),
    el("section", { class: "card", id: "budget" }, el("h2", {}, "Budget"),
      money.length ? table(["Limit", "Used", "Left", "Resets"], money.map((l) => el("tr", {},
        el("td", {}, l.scope), el("td", {}, meter(l.used, l.limit, fmt(l))), el("td", { class: "left big" }, usd(l.remaining)),
        el("td", {}, l.resetsAt ? when(l.resetsAt) : "never")))) : el("p", {}, "No spend limit.")),
    el("div", { class: "two" },
      el("section", { class: "card", id: "rates" }, el("h2", {}, "Rate limits"),
        rates.length ? table(["Limit", "Used", "Left", "Resets"], rates.map((l) => el("tr", {},
          el("td", {}, l.scope), el("td", {}, meter(l.used, l.limit, fmt(l))), el("td", { class: "num" }, count(l.remaining)),
          el("td", {}, l.resetsAt ? when(l.resetsAt) : "never")))) : el("p", {}, "No rate limit.")),
      el("section", { class: "card", id: "models" }, el("h2", {}, "Models you may use"),
        el("ul", {}, models.data.map((m) => el("li", {}, el("code", {}, m.id)))))),
    el("section", { class: "card", id: "recent" }, el("h2", {}, "Your last requests"),
      events.length ? table(["Time", "Model", "Status", "Tokens in / out", "Cost"], events.map((e) => el("tr", { class: e.status >= 400 ? "failed" : "" },
        el("td", {}, when(e.createdAt)), el("td", {}, e.model), el("td", {}, e.status),
        el("td", { class: "num" }, `${count(e.promptTokens)} / ${count(e.completionTokens)}`), el("td", { class: "num" }, usd(e.costInUsd)))))
        : el("p", { class: "muted" }, "No requests yet.")));
}

if (sessionStorage.getItem(KEY)) render().catch((err) => ask(err.message));
else ask();
