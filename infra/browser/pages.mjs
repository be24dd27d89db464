// Drives the teacher's dashboard and the student's page in a real headless
// Chromium (Debian's /usr/bin/chromium through playwright-core) against a
// running local stack, and exits non-zero at the first failed check.
// Run by infra/browser's Go test, which starts the stack and passes
//   STIPEND_ADMIN_URL, STIPEND_PROXY_URL, STIPEND_ADMIN_KEY, STIPEND_SHOTS
// (the folder the screenshots go to) and optionally STIPEND_CHROMIUM.
import { chromium } from "playwright-core";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import assert from "node:assert/strict";

const adminURL = process.env.STIPEND_ADMIN_URL;
const proxyURL = process.env.STIPEND_PROXY_URL;
const adminKey = process.env.STIPEND_ADMIN_KEY;
const shots = process.env.STIPEND_SHOTS;
mkdirSync(shots, { recursive: true });

const XSS = "<img src=x onerror=alert(1)>";
const log = (...a) => console.log(new Date().toISOString().slice(11, 23), ...a);

const browser = await chromium.launch({
  executablePath: process.env.STIPEND_CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"],
});
const problems = []; // offsite requests, dialogs, page errors, CSP reports
const requested = [];
const pages = [];
// On a failure, say what each page showed and photograph it.
process.on("uncaughtException", async (err) => {
  console.error(err);
  for (const [i, p] of pages.entries()) {
    console.error(`page ${i} (${p.url()}):`, (await p.textContent("main").catch(() => "")).slice(0, 2000));
    await p.screenshot({ path: join(shots, `failure-${i}.png`), fullPage: true }).catch(() => {});
  }
  console.error("problems:", problems);
  process.exit(1);
});

async function newPage() {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true, locale: "en-GB", timezoneId: "UTC" });
  // Nothing may leave the stack: every request must go to 127.0.0.1 or
  // localhost; anything else is recorded and aborted.
  await ctx.route("**/*", (route) => {
    const u = new URL(route.request().url());
    requested.push(u.href);
    if (u.protocol === "blob:" || u.protocol === "data:" || ["127.0.0.1", "localhost"].includes(u.hostname)) return route.continue();
    problems.push("request left the stack: " + u.href);
    return route.abort();
  });
  ctx.setDefaultTimeout(10_000);
  const page = await ctx.newPage();
  pages.push(page);
  page.on("request", (r) => {
    const u = new URL(r.url());
    if (!["http:", "blob:", "data:"].includes(u.protocol) || (u.protocol === "http:" && !["127.0.0.1", "localhost"].includes(u.hostname))) {
      problems.push("request left the stack: " + r.url());
    }
  });
  page.on("dialog", (d) => {
    problems.push(`a ${d.type()} dialog fired: ${d.message()}`);
    d.dismiss();
  });
  page.on("pageerror", (e) => problems.push("page error: " + e.message));
  page.on("console", (m) => {
    if (m.type() === "error" && !/Failed to load resource: the server responded with a status of 4\d\d/.test(m.text())) problems.push("console error: " + m.text());
  });
  return page;
}

async function shot(page, name) {
  await page.evaluate(() => document.getElementById("toast")?.classList.remove("show")); // no passing message in the pictures
  await page.screenshot({ path: join(shots, name + ".png"), fullPage: true });
}

async function proxy(key, path, body) {
  const resp = await fetch(proxyURL + path, {
    method: body ? "POST" : "GET",
    headers: { Authorization: "Bearer " + key, "Content-Type": "application/json" },
    body: body && JSON.stringify(body),
  });
  return { status: resp.status, body: await resp.json() };
}

// ---- the teacher ----
const page = await newPage();
const resp = await page.goto(adminURL + "/");
const csp = resp.headers()["content-security-policy"];
assert.match(csp, /script-src 'self'/, "the dashboard's CSP");
assert.equal(resp.headers()["x-frame-options"], "DENY");

log("sign in");
await page.fill("#admin-key", "wrong-key");
await page.click("#signin button[type=submit]");
await page.waitForSelector("#signin .error:text('invalid admin key')");
await page.fill("#admin-key", adminKey);
await page.click("#signin button[type=submit]");
await page.waitForSelector("#overview-month");
assert.equal(await page.evaluate(() => document.cookie), "", "no cookie");
assert.equal(await page.evaluate(() => localStorage.length), 0, "nothing in localStorage");
assert.ok(!page.url().includes(adminKey), "the admin key is not in the URL");
const chartBefore = Number(await page.getAttribute("#spend-chart svg", "data-max"));

log("upload a roster of 30");
const students = Array.from({ length: 30 }, (_, i) => ({ userId: `s${String(i + 1).padStart(3, "0")}`, name: `Student ${i + 1}` }));
students[6].name = XSS;
students[7].name = 'Zoë "Quotes", Jr.';
const csv = "userId,name,email\n" + students.map((s) => `${s.userId},"${s.name.replaceAll('"', '""')}",${s.userId}@uni.example`).join("\n") + "\n";
await page.click("nav a[data-view=keys]");
await page.waitForSelector("#keys-table");
await page.click("#roster summary");
await page.setInputFiles("#roster-file", { name: "class.csv", mimeType: "text/csv", buffer: Buffer.from(csv) });
await page.fill("#roster-lifetime", "0.002");
await page.click("#roster button[type=submit]");
await page.waitForSelector("#roster-summary");
assert.match(await page.textContent("#roster-summary"), /30 students: 30 created/);
const [download] = await Promise.all([page.waitForEvent("download"), page.click("#roster-download")]);
const keysCSV = readFileSync(await download.path(), "utf8");
const rows = keysCSV.trim().split("\r\n").slice(1);
assert.equal(rows.length, 30, "30 keys downloaded");
const keyOf = {};
for (const r of rows) {
  const m = r.match(/^(s\d{3}),.*,(\w+),(sk-stp-[^,]+)$/);
  assert.ok(m, "a CSV row: " + r);
  keyOf[m[1]] = m[3];
}
assert.ok(await page.isDisabled("#roster-download"), "the keys are downloaded once");
await shot(page, "roster");

log("see 30 keys");
await page.reload();
await page.waitForSelector("#keys-table tbody tr");
await page.fill("#keys-filter", "roster");
assert.equal(await page.locator("#keys-table tbody tr").count(), 30, "30 roster keys listed");
const xssCell = page.locator("#keys-table tbody tr td.name a", { hasText: "<img" });
assert.equal(await xssCell.textContent(), XSS, "the name renders as text");
assert.equal(await page.locator("img[src=x]").count(), 0, "no <img> was made from a name");

log("send traffic");
const spenders = ["s001", "s002", "s003", "s007"];
const chat = (n) => ({ model: "gpt-4o-mini", max_tokens: 600, messages: [{ role: "user", content: `Explain recursion fake:chunks=${n}` }] });
for (const [i, id] of spenders.entries()) {
  for (let j = 0; j <= i; j++) {
    const r = await proxy(keyOf[id], "/v1/chat/completions", chat(300 + 100 * i));
    assert.equal(r.status, 200, `${id}'s request: ${JSON.stringify(r.body)}`);
  }
}
// a roster key may call only chat completions, but always its own info and models
assert.equal((await proxy(keyOf.s001, "/v1/embeddings", { model: "text-embedding-3-small", input: "x" })).status, 403);
assert.equal((await proxy(keyOf.s001, "/v1/models")).status, 200);

log("the bars and the chart move");
await page.click("nav a[data-view=overview]");
await page.waitForSelector("#spend-chart svg");
const chartAfter = Number(await page.getAttribute("#spend-chart svg", "data-max"));
assert.ok(chartAfter > chartBefore, `the chart moved: ${chartBefore} -> ${chartAfter}`);
assert.ok((await page.textContent("#top-spenders")).includes("Student 3"), "top spenders");
assert.equal(await page.locator("#closest tbody tr").count(), 5);
await shot(page, "overview");

await page.click("nav a[data-view=keys]");
await page.waitForSelector("#keys-table tbody tr");
await page.fill("#keys-filter", "roster");
await page.click("th[data-sort=lifetime]");
await page.click("th[data-sort=lifetime]"); // descending
const firstRow = page.locator("#keys-table tbody tr").first();
assert.equal(await firstRow.locator("td.name").textContent(), XSS, "the top spender");
const fraction = Number(await firstRow.locator("td.spend-lifetime svg").getAttribute("data-fraction"));
assert.ok(fraction > 0.05, "the spend bar moved: " + fraction);
const xssRow = page.locator("#keys-table tbody tr", { has: page.locator("td.name a", { hasText: "<img" }) });
assert.ok(Number(await xssRow.locator("td.spend-lifetime svg").getAttribute("data-fraction")) > 0, "the XSS student's bar moved");
assert.notEqual(await xssRow.locator("td").last().textContent(), "never", "last used");

log("revoke a key");
const victim = page.locator("#keys-table tbody tr", { has: page.locator("td.name a", { hasText: /^Student 2$/ }) });
await victim.locator("input[type=checkbox]").check();
await page.click("#revoke-selected");
await page.waitForSelector("#keys-table tbody tr.revoked");
await page.fill("#keys-filter", "roster");
assert.equal(await page.locator("#keys-table tbody tr.revoked td.name").textContent(), "Student 2");
const refused = await proxy(keyOf.s002, "/v1/chat/completions", chat(10));
assert.equal(refused.status, 401);
assert.equal(refused.body.error.code, "key_revoked");
await page.fill("#keys-filter", "roster");
await page.click("th[data-sort=lifetime]");
await page.click("th[data-sort=lifetime]"); // the biggest spenders first
await shot(page, "keys");

log("one key");
await page.click("#keys-table tbody tr td.name a:text-is('Student 3')");
await page.waitForSelector("#events-table tbody tr");
assert.equal(await page.locator("#events-table tbody tr").count(), 3);
await page.waitForSelector("#key-chart svg");
assert.ok(Number(await page.getAttribute("#key-chart svg", "data-max")) > 0, "the key's chart");
await page.fill("#limit-lifetime", "0.004");
await page.click("text=Save limits");
await page.waitForSelector("#toast:text('Limits saved.')");
await page.reload();
await page.waitForSelector("#key-chart svg");
assert.equal(await page.inputValue("#limit-lifetime"), "0.004", "the new limit is stored");
await shot(page, "key");

for (const view of ["providers", "users", "audit"]) {
  await page.click(`nav a[data-view=${view}]`);
  await page.waitForSelector(`#${view}-table tbody tr`);
  await shot(page, view);
}
assert.match(await page.textContent("#audit-table"), /key\.bulk_revoke/, "the audit trail shows the revocation");
assert.ok(!(await page.textContent("#audit-table")).includes(adminKey));

// ---- the student ----
log("the student's page");
const student = await newPage();
const sresp = await student.goto(proxyURL + "/");
assert.match(sresp.headers()["content-security-policy"], /default-src 'none'/);
await student.fill("#student-key", "sk-stp-wrong");
await student.click("button[type=submit]");
await student.waitForSelector(".error:text('invalid API key')");
await student.fill("#student-key", keyOf.s003);
await student.click("button[type=submit]");
await student.waitForSelector("#budget");
assert.equal(await student.textContent("h1"), "Student 3");
const left = Number((await student.textContent("#budget td.left")).replace("$", ""));
assert.ok(left > 0 && left < 0.004, "what is left of the new $0.004: " + left);
assert.equal(await student.locator("#recent tbody tr").count(), 3, "the student's 3 requests");
assert.ok((await student.textContent("#models")).includes("gpt-4o-mini"));
const studentRequests = requested.filter((u) => u.startsWith(proxyURL + "/v1/"));
assert.ok(studentRequests.every((u) => /\/v1\/(key\/info|models)$/.test(u)), "the key went only to key info and models: " + studentRequests);
await shot(student, "student");

log("the XSS student's own page");
await student.click("#signout");
await student.fill("#student-key", keyOf.s007);
await student.click("button[type=submit]");
await student.waitForSelector("#budget");
assert.equal(await student.textContent("h1"), XSS);
assert.equal(await student.locator("img[src=x]").count(), 0);

await browser.close();
if (problems.length) {
  console.error("problems:\n" + problems.join("\n"));
  process.exit(1);
}
log("all checks passed");
