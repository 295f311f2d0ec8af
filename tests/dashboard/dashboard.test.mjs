// Browser tests of the dashboard: Playwright (playwright-core) driving the system Chromium against fake-codex
// and the gateway (tests/clients/node/harness.mjs), both on 127.0.0.1. Each test saves a screenshot of the page
// it checked into tests/dashboard/output/ (DASHBOARD_TEST_OUTPUT overrides).

import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import OpenAI from "openai";
import { chromium } from "playwright-core";
import { API_KEY, startStack } from "../clients/node/harness.mjs";

const HERE = dirname(fileURLToPath(import.meta.url));
const OUT = process.env.DASHBOARD_TEST_OUTPUT ?? join(HERE, "output");
const CHROMIUM = process.env.CHROMIUM_PATH ?? ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find(existsSync);
const CONFIG = "# my gateway settings\n\n[routing]\n# how accounts take turns\nstrategy = \"least_used\"\n";

let stack, browser, context, page, configDir, configPath, keyId;
const pageErrors = [];

before(async () => {
  assert.ok(CHROMIUM, "no chromium found: run scripts/setup-test-deps (it installs the distribution's chromium)");
  mkdirSync(join(OUT, "docs"), { recursive: true });
  configDir = mkdtempSync(join(tmpdir(), "gw-dash-"));
  configPath = join(configDir, "config.toml");
  writeFileSync(configPath, CONFIG);
  stack = await startStack({ gatewayEnv: { CODEX_GATEWAY_CONFIG: configPath } });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu"] });
  context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  page = await context.newPage();
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  page.on("console", (m) => {
    // A refused script or style (the Content-Security-Policy) shows up here.
    if (m.type() === "error" && /Refused to|Content Security Policy/i.test(m.text())) pageErrors.push(m.text());
  });
});

after(async () => {
  await browser?.close();
  await stack?.stop();
  if (configDir) rmSync(configDir, { recursive: true, force: true });
});

const url = (path) => `${stack.gateway.url}${path}`;
const shot = (name) => page.screenshot({ path: join(OUT, `${name}.png`), fullPage: true });
// What docs/dashboard.md shows: the visible part of the page only (kept small).
const docShot = (name) => page.screenshot({ path: join(OUT, "docs", `${name}.png`) });

function dtest(name, fn) {
  test(name, { timeout: 90_000 }, async () => {
    await stack.fake.resetRequests();
    try {
      await fn();
    } catch (e) {
      await shot(`FAILED-${name.replace(/\W+/g, "-").slice(0, 40)}`).catch(() => {});
      e.message = `${e.message}\n${stack.describe()}`;
      throw e;
    }
    assert.deepEqual(pageErrors, [], "no script errors and nothing refused by the page's CSP");
  });
}

async function chat(content, key = API_KEY) {
  const res = await fetch(url("/v1/chat/completions"), {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
    body: JSON.stringify({ model: "gpt-5.4", messages: [{ role: "user", content }] }),
  });
  return { status: res.status, body: await res.json() };
}

async function admin(path) {
  const res = await fetch(url(path), { headers: { authorization: `Bearer ${API_KEY}` } });
  return res.json();
}

const firstAccountId = () => JSON.parse(readFileSync(join(stack.work, "codex-home", "auth.json"), "utf8")).tokens.account_id;

dtest("a browser at / is sent to the login; a wrong key is refused after a delay; the admin key logs in", async () => {
  await page.goto(url("/"));
  assert.match(page.url(), /\/dashboard\/login$/);
  await page.getByLabel("Admin key").fill("not-the-key");
  const started = Date.now();
  await page.getByRole("button", { name: "Log in" }).click();
  await page.locator("#login-error").getByText("Wrong admin key.").waitFor();
  assert.ok(Date.now() - started >= 900, "a failed login waits before it answers");
  await shot("login-refused");
  await docShot("login");
  await page.getByLabel("Admin key").fill(API_KEY);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.waitForURL(/\/dashboard$/);
  const cookie = (await context.cookies()).find((c) => c.name === "cgw_session");
  assert.ok(cookie, "a session cookie");
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.sameSite, "Strict");
  const nav = await page.getByRole("navigation", { name: "Main" }).getByRole("link").allTextContents();
  assert.deepEqual(nav, ["Overview", "Accounts", "Keys", "Usage", "Requests", "Setup", "Settings", "Users", "Audit"]);
});

dtest("Overview shows the pool and updates with live traffic, also on a phone", async () => {
  await page.goto(url("/dashboard"));
  assert.equal(await page.locator('[data-k="accounts_serving"]').textContent(), "1");
  assert.equal(await page.locator('[data-k="accounts_total"]').textContent(), "1");
  const r = await chat("hello from the overview test");
  assert.equal(r.status, 200);
  await page.waitForFunction(() => Number(document.querySelector('[data-k="totals.requests"]').textContent) >= 1, null, { timeout: 10_000 });
  assert.ok(Number(await page.locator('[data-k="tokens_total"]').textContent()) > 0, "tokens counted");
  // The last day's chart comes from the ledger, which commits in batches: reload until it shows the request.
  for (let i = 0; i < 20 && !(await page.locator("#last-day svg.chart").count()); i++) {
    await page.waitForTimeout(300);
    await page.reload();
  }
  await page.locator("#last-day svg.chart rect.bar").first().waitFor();
  // The requests-per-minute area (from the ledger's started_at index) and tokens per hour, both server-side SVG.
  const area = await page.locator("#rpm-chart path.area").getAttribute("d");
  assert.match(area, /^M0,120 L0,/, area.slice(0, 40));
  assert.match(await page.locator("#rpm-chart").getAttribute("aria-label"), /busiest minute had [1-9]/);
  await page.locator("#tokens-chart rect.bar").first().waitFor();
  assert.match(await page.locator("#tokens-today").textContent(), /Today \(UTC\): [1-9]\d* tokens/);
  await page.locator("#near-limit", { hasText: "No account has used 80% or more" }).waitFor();
  await shot("overview");
  await docShot("overview");
  await page.evaluate(() => document.getElementById("last-day").scrollIntoView());
  await docShot("overview-charts");
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.emulateMedia({ colorScheme: "dark" });
  await docShot("overview-dark");
  await page.emulateMedia({ colorScheme: "light" });
  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(overflow <= 390, `no sideways scrolling on a 390 px phone (page is ${overflow} px wide)`);
  await shot("overview-phone");
  await docShot("overview-phone");
  await page.setViewportSize({ width: 1280, height: 900 });
});

dtest("Accounts: import the linked login's auth.json, add an account by device code, and it serves", async () => {
  await page.goto(url("/dashboard/accounts"));
  await page.getByRole("tab", { name: "Upload auth.json" }).click();
  await page.setInputFiles("#auth-file", join(stack.work, "codex-home", "auth.json"));
  await page.getByRole("button", { name: "Import" }).click();
  await page.waitForLoadState("load");
  await page.waitForFunction(() => document.querySelectorAll("article.account").length === 1);
  // Now stored, so manageable: a label.
  await page.locator("article.account summary").first().click();
  await page.locator("article.account").first().getByLabel("Label").fill("first");
  await page.locator("article.account").first().getByRole("button", { name: "Save label" }).click();
  await page.locator("article.account h2", { hasText: "first" }).waitFor();

  await page.getByLabel("Label (optional)").fill("from-device");
  await page.getByRole("tab", { name: "Device code" }).click();
  await page.getByRole("button", { name: "Get a device code" }).click();
  const code = page.locator("#device-code");
  await code.waitFor();
  assert.match(await code.textContent(), /^[A-Z0-9]{4}-[A-Z0-9]{4}$/);
  await shot("accounts-device-code");
  await docShot("accounts-device-code");
  // fake-codex approves after two polls; the page then reloads with the new account.
  await page.locator("article.account h2", { hasText: "from-device" }).waitFor({ timeout: 20_000 });
  assert.equal(await page.locator("article.account").count(), 2);

  // Disable the first: the new account must serve alone.
  const first = page.locator("article.account", { has: page.locator("h2", { hasText: "first" }) });
  await first.locator("summary").click();
  await first.getByRole("button", { name: "Disable" }).click();
  await page.locator("article.account", { has: page.locator("h2", { hasText: "first" }) }).locator(".badge", { hasText: "disabled" }).waitFor();
  await stack.fake.resetRequests();
  const r = await chat("served by the device login?");
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const served = (await stack.fake.requests("responses")).filter((q) => q.method === "POST");
  assert.equal(served.length, 1);
  assert.notEqual(served[0].account_id, firstAccountId(), "the new account served");
  await page.reload();
  const device = page.locator("article.account", { has: page.locator("h2", { hasText: "from-device" }) });
  assert.equal(await device.locator("dt:text('Requests') + dd").textContent(), "1");
  const again = page.locator("article.account", { has: page.locator("h2", { hasText: "first" }) });
  await again.locator("summary").click();
  await again.getByRole("button", { name: "Enable" }).click();
  await page.locator("article.account", { has: page.locator("h2", { hasText: "first" }) }).locator(".badge", { hasText: "active" }).waitFor();
  await shot("accounts");
  await page.locator("article.account summary").first().click();
  await page.locator("article.account").first().scrollIntoViewIfNeeded();
  await docShot("accounts");
});

dtest("Settings: switching the strategy takes effect at once and keeps the file's comments", async () => {
  const accountsOf = async () => (await stack.fake.requests("responses")).filter((q) => q.method === "POST").map((q) => q.account_id);
  for (const [strategy, check] of [
    ["sticky", (ids) => assert.equal(new Set(ids).size, 1, `sticky stays on one account: ${ids}`)],
    ["round_robin", (ids) => assert.equal(new Set(ids).size, 2, `round robin uses both: ${ids}`)],
  ]) {
    await page.goto(url("/dashboard/settings"));
    await page.getByLabel("Rotation strategy").selectOption(strategy);
    await page.getByRole("button", { name: "Save" }).click();
    await page.locator("#settings-result", { hasText: "Applied now: strategy" }).waitFor();
    await stack.fake.resetRequests();
    for (let i = 0; i < 4; i++) assert.equal((await chat(`strategy ${strategy} request ${i}`)).status, 200);
    check(await accountsOf());
    assert.match((await admin("/admin/status")).strategy, strategy === "sticky" ? /Sticky/ : /RoundRobin/);
  }
  const file = readFileSync(configPath, "utf8");
  assert.ok(file.startsWith("# my gateway settings\n"), file);
  assert.match(file, /# how accounts take turns\nstrategy = "round_robin"/);
  await page.getByLabel("Plan priority (comma-separated, preferred first)").fill("pro, plus");
  await page.getByRole("button", { name: "Save" }).click();
  await page.locator("#settings-result", { hasText: "needs a restart: plan_priority" }).waitFor();
  await shot("settings");
  await docShot("settings");
});

dtest("Settings: quota thresholds and the price table apply at once; a refused value is marked in place", async () => {
  // The first account reports 70% of its 5-hour window used; round robin (the previous test) reaches it.
  await stack.fake.call("POST", `/_fake/accounts/${firstAccountId()}/quota`, { primary_used_percent: 70, secondary_used_percent: 10 });
  for (let i = 0; i < 4; i++) assert.equal((await chat(`quota request ${i}`)).status, 200);
  await page.goto(url("/dashboard"));
  await page.locator("#near-limit", { hasText: "No account has used 80% or more" }).waitFor();

  await page.goto(url("/dashboard/settings"));
  await page.getByLabel(/Warn from/).fill("90");
  await page.getByLabel(/Critical from/).fill("50");
  await page.getByRole("button", { name: "Save" }).click();
  await page.locator("#quota_warn_percent-error", { hasText: "must not be above" }).waitFor();
  assert.equal(await page.locator("#quota_warn_percent").getAttribute("aria-invalid"), "true");
  assert.equal(await page.evaluate(() => document.activeElement.id), "quota_warn_percent", "the refused field has the focus");
  await shot("settings-refused-threshold");
  await page.getByLabel(/Warn from/).fill("60");
  await page.getByLabel(/Critical from/).fill("85");
  await page.getByRole("button", { name: "Save" }).click();
  await page.locator("#settings-result", { hasText: "Applied now: quota thresholds" }).waitFor();
  assert.equal(await page.locator("#quota_warn_percent").getAttribute("aria-invalid"), null);

  // Applied at once: the Overview lists the account, the Accounts page marks its bar.
  await page.goto(url("/dashboard"));
  await page.locator("#near-limit li", { hasText: "70%" }).waitFor();
  assert.match(await page.locator("#near-limit li").first().textContent(), /5 hours window/);
  await page.goto(url("/dashboard/accounts"));
  await page.locator("article.account .badge", { hasText: "near its limit" }).first().waitFor();
  assert.equal(Number(await page.locator("article.account meter").first().getAttribute("low")), 60);

  // The price table: a negative price is stopped by the field itself; a missing output price is refused by the
  // server and shown beside its field; a good table feeds the cost at once.
  await page.goto(url("/dashboard/settings"));
  await page.getByLabel("Model, row 1", { exact: true }).fill("gpt-5.4");
  await page.getByLabel("Input price, row 1", { exact: true }).fill("-1");
  await page.getByRole("button", { name: "Save" }).click();
  assert.equal(await page.locator("#price-0-input").evaluate((el) => el.validity.valid), false);
  assert.equal(await page.locator("#settings-result").textContent(), "", "nothing was sent");
  await page.getByLabel("Input price, row 1", { exact: true }).fill("1.25");
  await page.getByRole("button", { name: "Save" }).click();
  await page.locator("#prices-error", { hasText: "gpt-5.4 needs a price for output" }).waitFor();
  assert.equal(await page.locator("#price-0-output").getAttribute("aria-invalid"), "true");
  await shot("settings-refused-price");
  await page.getByLabel("Output price, row 1").fill("10");
  await page.getByLabel("Cached input price, row 1").fill("0.125");
  await page.getByRole("button", { name: "Add a model" }).click();
  await page.getByLabel("Model, row 2", { exact: true }).fill("gpt-5.4-mini");
  await page.getByLabel("Input price, row 2", { exact: true }).fill("0.25");
  await page.getByLabel("Output price, row 2").fill("2");
  await page.getByRole("button", { name: "Save" }).click();
  await page.locator("#settings-result", { hasText: "Applied now: price table" }).waitFor();
  const file = readFileSync(configPath, "utf8");
  assert.ok(file.startsWith("# my gateway settings\n"), file);
  assert.match(file, /\[usage\.prices\."gpt-5\.4"\]\ninput = 1\.25\ncached_input = 0\.125\noutput = 10\.0/);
  assert.match(file, /quota_warn_percent = 60\.0/);
  const usage = await admin("/admin/usage?from=24h");
  assert.ok(usage.totals.cost_usd > 0, `the cost column is priced without a restart: ${JSON.stringify(usage.totals)}`);
  await page.reload();
  assert.equal(await page.getByLabel("Model, row 2", { exact: true }).inputValue(), "gpt-5.4-mini", "the saved table is shown");
  await shot("settings-prices");
  await page.evaluate(() => document.getElementById("quota").scrollIntoView());
  await docShot("settings-prices");
  await page.goto(url("/dashboard/usage?range=24h&group_by=model"));
  await page.locator("#usage-table th", { hasText: "Cost" }).waitFor();
});

dtest("Audit: the failed and the accepted login and the settings saved are in the trail, filtered", async () => {
  await page.goto(url("/dashboard/audit?action=dashboard.login"));
  await page.locator("#audit-table tbody tr", { hasText: "anonymous" }).first().waitFor();
  await page.locator("#audit-table tbody tr", { hasText: "dashboard:admin-key" }).first().waitFor();
  await page.goto(url("/dashboard/audit"));
  await page.getByLabel("Action (prefix)").fill("settings.");
  await page.getByRole("button", { name: "Filter" }).click();
  await page.locator("#audit-table tbody tr", { hasText: "settings.save" }).first().waitFor();
  assert.equal(await page.locator("#audit-table tbody tr", { hasText: "dashboard.login" }).count(), 0);
  assert.ok(!(await page.content()).includes("not-the-key"), "the refused key is not in the trail");
  await shot("audit");
});

dtest("Setup: each client's snippet carries the gateway's address and key, and Test answers in its dialect", async () => {
  await page.goto(url("/dashboard/setup"));
  await page.getByLabel(/The key's secret/).fill(API_KEY);
  const snippet = await page.locator("#client-openai-python code").textContent();
  assert.ok(snippet.includes(`${stack.gateway.url}/v1`) && snippet.includes(API_KEY), snippet);
  // Every client's Test button, each in its own dialect (Open WebUI's bridge is off here: checked below).
  const ids = (await page.locator("section.client").evaluateAll((els) => els.map((e) => e.id.replace(/^client-/, "")))).filter((id) => id !== "open-webui");
  assert.equal(ids.length, 13, ids.join(" "));
  for (const id of ids) {
    const card = page.locator(`#client-${id}`);
    await card.getByRole("button", { name: "Test" }).click();
    await card.locator(".result", { hasText: /Answer: |Error: / }).waitFor({ timeout: 20_000 });
    assert.match(await card.locator(".result").textContent(), /^Answer: /, id);
  }
  const webui = page.locator("#client-open-webui");
  await webui.getByRole("button", { name: "Test" }).click();
  await webui.locator(".result", { hasText: "Ollama bridge is off" }).waitFor();
  await page.getByLabel(/The key's secret/).fill("wrong-key");
  const cc = page.locator("#client-claude-code");
  await cc.getByRole("button", { name: "Test" }).click();
  await cc.locator(".result", { hasText: "Error: HTTP 401" }).waitFor();
  await shot("setup");
  await page.evaluate(() => window.scrollTo(0, 0));
  await docShot("setup");
});

dtest("a label with markup shows as text; a cross-site post and a call without the CSRF token change nothing", async () => {
  await page.goto(url("/dashboard/accounts"));
  const first = page.locator("article.account").first();
  await first.locator("summary").click();
  const evil = `<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script>`;
  await first.getByLabel("Label").fill(evil);
  await first.getByRole("button", { name: "Save label" }).click();
  await page.locator("article.account h2", { hasText: "<script>" }).waitFor();
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  assert.equal(await page.locator("article.account h2 img, article.account h2 script").count(), 0);
  await shot("accounts-label-markup");
  const id = await page.locator("article.account", { hasText: "<script>" }).getAttribute("data-id");

  // With the session cookie but no CSRF token: refused.
  const bare = await page.request.post(url(`/dashboard/api/accounts/${id}/disable`), { data: {} });
  assert.equal(bare.status(), 403);

  // A page on another site (localhost is another site than 127.0.0.1) posts a form and a no-cors fetch.
  const attacker = createServer((req, res) => {
    res.setHeader("content-type", "text/html");
    res.end(`<!doctype html><form id=f method=POST action="${url(`/dashboard/api/accounts/${id}/disable`)}">
      <input name=x value=1></form><script>
      fetch(${JSON.stringify(url(`/dashboard/api/accounts/${id}/remove`))}, {method: "POST", mode: "no-cors", credentials: "include", headers: {"content-type": "text/plain"}, body: "{}"}).finally(() => document.getElementById("f").submit());
      </script>`);
  });
  await new Promise((r) => attacker.listen(0, "127.0.0.1", r));
  const evilPage = await context.newPage();
  try {
    await evilPage.goto(`http://localhost:${attacker.address().port}/`);
    await evilPage.waitForLoadState("load");
    await evilPage.waitForTimeout(1000);
    await evilPage.screenshot({ path: join(OUT, "cross-site-post.png") });
  } finally {
    await evilPage.close();
    attacker.close();
  }
  const accounts = await admin("/admin/accounts");
  const target = accounts.find((a) => a.id === id);
  assert.ok(target, "the account was not removed");
  assert.equal(target.status, "active", "the account was not disabled");
});

dtest("Keys: create with limits, the secret shown once, use it, see its usage, revoke it and it gets 401", async () => {
  await page.goto(url("/dashboard/keys"));
  await page.locator("#no-keys").waitFor();
  await page.getByLabel("Name").fill("ci-bot");
  await page.getByLabel("Models allowed (comma-separated; empty: all)").fill("gpt-5.4");
  await page.getByLabel("Requests per minute").fill("100");
  await page.getByLabel("Tokens per day (UTC)").fill("100000");
  await page.getByRole("button", { name: "Create key" }).click();
  const secretEl = page.locator("#new-secret");
  await secretEl.waitFor();
  const secret = await secretEl.textContent();
  assert.match(secret, /^cgw_/);
  await page.getByRole("button", { name: "Copy" }).click();
  await page.locator("#secret-box .result", { hasText: /Copied|Selected/ }).waitFor();
  await docShot("keys-secret");
  // The secret from the page, used by the official OpenAI SDK.
  const sdk = new OpenAI({ baseURL: url("/v1"), apiKey: secret, maxRetries: 0 });
  const used = await sdk.chat.completions.create({
    model: "gpt-5.4",
    messages: [{ role: "user", content: "hello with a created key" }],
  });
  assert.ok(used.choices[0].message.content, JSON.stringify(used));
  await page.getByRole("button", { name: "Done" }).click();
  await page.waitForLoadState("load");
  const card = page.locator("article.key", { has: page.locator("h2", { hasText: "ci-bot" }) });
  await card.waitFor();
  keyId = await card.getAttribute("data-id");
  // A second key of a name a key that is not revoked has is refused, with the reason on the form.
  const form = page.locator("#create-key");
  await form.getByLabel("Name").fill("ci-bot");
  await form.getByRole("button", { name: "Create key" }).click();
  await form.locator(".error", { hasText: `${keyId} is already named` }).waitFor();
  assert.equal(await page.locator("article.key").count(), 1);
  assert.equal(await page.locator("#new-secret").count() === 0 || (await page.locator("#new-secret").textContent()) === "", true);
  assert.ok(!(await page.content()).includes(secret), "the secret is not in the page after creation");
  const today = await card.locator('[data-usage="today"]').textContent();
  assert.ok(Number(today.split("/")[0].trim()) > 0, `usage counted: ${today}`);
  // Edit: a model outside the allow-list is refused afterwards.
  await card.locator("summary").click();
  await card.getByLabel("Requests per minute").fill("50");
  await card.getByRole("button", { name: "Save" }).click();
  await page.locator("article.key dd", { hasText: "50 / min" }).waitFor();
  await shot("keys");
  await docShot("keys");
  page.once("dialog", (d) => d.accept());
  await page.locator("article.key").getByRole("button", { name: "Revoke" }).click();
  await page.locator("article.key .badge", { hasText: "revoked" }).waitFor();
  await assert.rejects(
    sdk.chat.completions.create({ model: "gpt-5.4", messages: [{ role: "user", content: "after revoke" }] }),
    (e) => e instanceof OpenAI.AuthenticationError && e.status === 401,
  );
});

dtest("Setup: a key chosen from the list; its secret only in the tab that created it", async () => {
  await page.goto(url("/dashboard/keys"));
  await page.getByLabel("Name").fill("setup-bot");
  await page.getByRole("button", { name: "Create key" }).click();
  await page.locator("#new-secret", { hasText: /^cgw_/ }).waitFor();
  const secret = await page.locator("#new-secret").textContent();
  await page.getByRole("link", { name: "Set up a client with this key" }).click();
  await page.waitForURL(/\/dashboard\/setup\?key=/);
  const choice = page.getByLabel("Client key");
  assert.match(await choice.locator("option:checked").textContent(), /^setup-bot \(cgw_/);
  // The revoked key of the previous test is not offered.
  assert.equal(await choice.locator("option", { hasText: "ci-bot" }).count(), 0);
  const snippet = await page.locator("#client-openai-python code").textContent();
  assert.ok(snippet.includes(secret), "the secret of the key created in this tab fills the snippet");
  assert.ok(!(await page.content()).includes(secret) || (await page.locator("code", { hasText: secret }).count()) > 0);
  for (const id of ["openai-python", "claude-code"]) {
    const card = page.locator(`#client-${id}`);
    await card.getByRole("button", { name: "Test" }).click();
    await card.locator(".result", { hasText: /Answer: |Error: / }).waitFor({ timeout: 20_000 });
    assert.match(await card.locator(".result").textContent(), /^Answer: /, id);
  }
  await shot("setup-key-chosen");
  // Another tab: the secret is not known there; the snippet shows the prefix and asks for it.
  const other = await context.newPage();
  try {
    await other.goto(url("/dashboard/setup"));
    const html = await (await other.request.get(url("/dashboard/setup"))).text();
    assert.ok(!html.includes(secret), "the server never puts the secret in the page");
    const prefix = (await other.getByLabel("Client key").locator("option:checked").getAttribute("data-prefix"));
    const code = await other.locator("#client-openai-python code").textContent();
    assert.ok(code.includes(`${prefix}...REST_OF_KEY`) && !code.includes(secret), code);
    await other.locator("#setup-key-note", { hasText: "type the secret to test" }).waitFor();
    await other.screenshot({ path: join(OUT, "docs", "setup.png") });
  } finally {
    await other.close();
  }
});

dtest("Usage and Requests show the key's traffic from the ledger; filters, details and CSV", async () => {
  // The ledger writes in batches (250 ms): wait for the rows.
  await page.goto(url("/dashboard/usage?range=24h&group_by=key"));
  for (let i = 0; i < 20 && !(await page.locator("#usage-table th[scope=row]", { hasText: keyId }).count()); i++) {
    await page.waitForTimeout(300);
    await page.reload();
  }
  const row = page.locator("#usage-table tr", { has: page.locator("th", { hasText: keyId }) });
  // The request it made; the one refused after the revoke never reached a route (the guard answered 401).
  assert.ok(Number(await row.locator("td").first().textContent()) >= 1, "the key's request");
  assert.ok(Number(await page.locator("#usage-requests").textContent()) > 0);
  await page.locator("svg.chart rect.bar").first().waitFor();
  await page.getByLabel("By").selectOption("model");
  await page.getByRole("button", { name: "Show" }).click();
  await page.locator("#usage-table th[scope=row]", { hasText: "gpt-5.4" }).waitFor();
  await shot("usage");
  await docShot("usage");
  const csv = await page.request.get(url("/dashboard/api/usage.csv?range=7d&group_by=dialect"));
  assert.equal(csv.status(), 200);
  assert.match(await csv.text(), /chat/);

  await page.goto(url("/dashboard/requests"));
  await page.locator("#requests-table tbody tr.req").first().waitFor();
  await page.getByLabel("Client key id").fill(keyId);
  await page.getByRole("button", { name: "Filter" }).click();
  await page.waitForURL(/key=/);
  const rows = page.locator("#requests-table tbody tr.req");
  assert.ok((await rows.count()) >= 1);
  assert.equal(await page.locator("#requests-table tbody td", { hasText: keyId }).count(), await rows.count(), "only the key's rows");
  // A row's details open in a row of their own under it, as wide as the table, and close again.
  const disclose = rows.first().getByRole("button");
  const details = page.locator("#requests-table tr.req-detail").first();
  assert.equal(await details.isVisible(), false);
  await disclose.click();
  await details.locator("dt", { hasText: "Attempts" }).waitFor();
  assert.equal(await disclose.getAttribute("aria-expanded"), "true");
  const [rowBox, detailBox] = [await rows.first().boundingBox(), await details.boundingBox()];
  assert.ok(Math.abs(rowBox.width - detailBox.width) < 2 && detailBox.y >= rowBox.y + rowBox.height - 1, "details under the row, full width");
  await disclose.click();
  await details.waitFor({ state: "hidden" });
  await page.getByLabel("Status").fill("2xx");
  await page.getByRole("button", { name: "Filter" }).click();
  await page.waitForURL(/status=2xx/);
  assert.ok((await page.locator("#requests-table tbody tr.req").count()) >= 1);
  assert.equal(await page.locator("#requests-table tbody tr.err").count(), 0, "2xx only");
  await shot("requests");
  await page.getByLabel("Status").fill("bogus");
  await page.getByRole("button", { name: "Filter" }).click();
  await page.locator(".error", { hasText: "status" }).waitFor();
  await page.goto(url(`/dashboard/requests?key=${keyId}`));
  await page.locator("#requests-table tbody tr.req").first().getByRole("button").click();
  // Every column in view at 1280 px, the details open.
  const [table, frame] = [await page.locator("#requests-table").boundingBox(), await page.locator(".table-card .scroll").boundingBox()];
  assert.ok(table.width <= frame.width + 0.5, `the request table fits its card (${table.width} in ${frame.width} px)`);
  await docShot("requests");
  const rcsv = await page.request.get(url(`/dashboard/api/requests.csv?key=${keyId}`));
  assert.equal(rcsv.status(), 200);
});

dtest("Every page: a 390 px phone without sideways scrolling, dark mode, every control labelled, keyboard first, small assets", async () => {
  const pages = ["/dashboard", "/dashboard/accounts", "/dashboard/keys", "/dashboard/usage", "/dashboard/requests", "/dashboard/setup", "/dashboard/settings"];
  for (const [w, h, scheme] of [[390, 844, "light"], [1280, 900, "dark"]]) {
    await page.setViewportSize({ width: w, height: h });
    await page.emulateMedia({ colorScheme: scheme });
    for (const p of pages) {
      await page.goto(url(p));
      const width = await page.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(width <= w, `${p}: no sideways scrolling at ${w} px (page is ${width} px wide)`);
      // Every form control has a name a screen reader reads (a <label>, aria-label or aria-labelledby).
      const unlabelled = await page.evaluate(() =>
        Array.from(document.querySelectorAll("input:not([type=hidden]), select, textarea, button"))
          .filter((el) => !(el.labels?.length || el.getAttribute("aria-label") || el.getAttribute("aria-labelledby") ||
            (el.tagName === "BUTTON" && el.textContent.trim())))
          .map((el) => el.outerHTML.slice(0, 80)));
      assert.deepEqual(unlabelled, [], `${p}: controls without a label`);
      if (scheme === "dark") {
        const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
        assert.equal(bg, "rgb(17, 20, 24)", `${p}: dark background follows the system`);
      }
    }
    if (w === 390) {
      await page.goto(url("/dashboard/settings"));
      await shot("settings-phone");
    }
  }
  // Keyboard: the first Tab reaches the skip link, which moves the focus to the content.
  await page.goto(url("/dashboard/usage"));
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement.textContent), "Skip to content");
  await page.keyboard.press("Enter");
  assert.equal(await page.evaluate(() => document.activeElement.id), "main");
  await shot("usage-dark");
  await page.emulateMedia({ colorScheme: "light" });
  let total = 0;
  for (const a of ["app.css", "app.js"]) total += (await (await page.request.get(url(`/dashboard/assets/${a}`))).body()).length;
  const html = (await (await page.request.get(url("/dashboard/settings"))).body()).length;
  assert.ok(total + html < 300_000, `assets ${total} B and the largest page's HTML ${html} B stay under 300 KB`);
});

dtest("Proxy set and check; remove asks first; logout ends the session", async () => {
  await page.goto(url("/dashboard/accounts"));
  let device = page.locator("article.account", { has: page.locator("h2", { hasText: "from-device" }) });
  await device.locator("summary").click();
  await device.getByRole("button", { name: "Check" }).click();
  await device.locator(".result", { hasText: /^Reachable \(\d+ ms\)$/ }).waitFor();
  // A proxy nobody listens on: the check says so.
  await device.getByLabel(/^Proxy/).fill("http://127.0.0.1:9");
  await device.getByRole("button", { name: "Set proxy" }).click();
  device = page.locator("article.account", { has: page.locator("h2", { hasText: "from-device" }) });
  await device.locator("dd", { hasText: "http://127.0.0.1:9" }).waitFor();
  await device.locator("summary").click();
  await device.getByRole("button", { name: "Check" }).click();
  await device.locator(".result", { hasText: /^Failed: .*\(\d+ ms\)$/ }).waitFor({ timeout: 20_000 });
  await shot("accounts-proxy-check");
  await device.getByLabel(/^Proxy/).fill("");
  await device.getByRole("button", { name: "Set proxy" }).click();
  device = page.locator("article.account", { has: page.locator("h2", { hasText: "from-device" }) });
  await device.locator("dd", { hasText: "default" }).waitFor();
  await device.locator("summary").click();
  page.once("dialog", (d) => d.dismiss());
  await device.getByRole("button", { name: "Remove" }).click();
  assert.equal(await page.locator("article.account").count(), 2, "dismissed: nothing removed");
  page.once("dialog", (d) => d.accept());
  await device.getByRole("button", { name: "Remove" }).click();
  await page.waitForFunction(() => document.querySelectorAll("article.account").length === 1);
  await page.getByRole("button", { name: "Log out" }).click();
  await page.waitForURL(/\/dashboard\/login$/);
  const r = await page.request.get(url("/dashboard/api/overview"));
  assert.equal(r.status(), 401);
  await shot("logged-out");
});

dtest("Users: a member signs in by name and password, sees only their pages, and is refused the rest", async () => {
  const made = await fetch(url("/admin/users"), {
    method: "POST",
    headers: { authorization: `Bearer ${API_KEY}`, "content-type": "application/json" },
    body: JSON.stringify({ name: "dana", role: "member", password: "a long enough password" }),
  });
  assert.equal(made.status, 201, await made.text());
  const member = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const m = await member.newPage();
  try {
    await m.goto(url("/dashboard/login"));
    await m.getByLabel("Name").fill("dana");
    await m.getByLabel("Password").fill("not the password");
    await m.getByRole("button", { name: "Sign in" }).click();
    await m.locator("#user-login-error").waitFor();
    await m.getByLabel("Password").fill("a long enough password");
    await m.getByRole("button", { name: "Sign in" }).click();
    await m.waitForURL(/\/dashboard\/keys$/);
    const nav = await m.getByRole("navigation", { name: "Main" }).getByRole("link").allTextContents();
    for (const hidden of ["Accounts", "Settings", "Audit", "Users"]) assert.ok(!nav.includes(hidden), `${hidden} in ${nav}`);
    await m.locator(".who", { hasText: "dana (member)" }).waitFor();
    await m.screenshot({ path: join(OUT, "member-keys.png"), fullPage: true });
    const refused = await m.goto(url("/dashboard/settings"));
    assert.equal(refused.status(), 403);
    await m.getByText("This page is not open to the member role.").waitFor();
    await m.screenshot({ path: join(OUT, "member-refused.png"), fullPage: true });
  } finally {
    await member.close();
  }
  // The admin key still logs in beside the users' sign-in, and the Users page lists the member.
  await page.goto(url("/dashboard/login"));
  await page.getByLabel("Admin key").fill(API_KEY);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.waitForURL(/\/dashboard$/);
  await page.goto(url("/dashboard/users"));
  const dana = page.locator("article.user", { has: page.locator("h2", { hasText: "dana" }) });
  await dana.getByText("member").first().waitFor();
  // A budget across all her keys: saved from her card, shown again after the page reloads, on the admin API too.
  await dana.getByLabel("Tokens a day").fill("5000");
  // Saving reloads the page: wait for that load, or the next navigation would race it.
  await Promise.all([page.waitForEvent("load"), dana.getByRole("button", { name: "Save budget" }).click()]);
  let saved;
  for (let i = 0; i < 30; i++) {
    const all = await (await fetch(url("/admin/users"), { headers: { authorization: `Bearer ${API_KEY}` } })).json();
    saved = all.find((u) => u.name === "dana");
    if (saved && saved.daily_tokens === 5000) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(saved.daily_tokens, 5000, JSON.stringify(saved));
  await page.goto(url("/dashboard/users"));
  assert.equal(await dana.getByLabel("Tokens a day").inputValue(), "5000");
  await shot("users");
  await docShot("users");
  // The Usage page offers her as a filter and groups by user.
  await page.goto(url(`/dashboard/usage?range=24h&group_by=user&user=${saved.id}`));
  assert.equal(await page.locator("#user").inputValue(), saved.id);
  assert.equal(await page.locator("#group_by").inputValue(), "user");
});
