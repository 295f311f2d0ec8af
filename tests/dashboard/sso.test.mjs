// Single sign-on in a real browser: the system Chromium (Playwright) signs in through the dashboard's "Sign in
// with ..." button at the OpenID provider of tests/oidc (oidc-provider, its login form and consent) and lands on
// the member's Keys page: the session cookie (SameSite=Strict) is set by the callback and sent on the page it
// moves on to. Everything on 127.0.0.1; any other address the provider's pages name (web fonts) is refused.
// Screenshots in tests/dashboard/output/ (DASHBOARD_TEST_OUTPUT overrides).

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { startStack } from "../clients/node/harness.mjs";

const HERE = dirname(fileURLToPath(import.meta.url));
const OUT = process.env.DASHBOARD_TEST_OUTPUT ?? join(HERE, "output");
const CHROMIUM = process.env.CHROMIUM_PATH ?? ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find(existsSync);
const PROVIDER = join(HERE, "..", "oidc", "provider.mjs");

let stack, idp, browser, configDir;

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** The provider on `port`, its one client sending answers back to `gateway`; resolves once it listens. */
function startProvider(port, gateway) {
  const config = {
    port,
    clients: [{ client_id: "codex-gateway", client_secret: "browser-test-secret", redirect_uri: `${gateway}/dashboard/sso/callback` }],
    accounts: { ana: { email: "ana@example.com", name: "Ana", groups: ["staff"] } },
  };
  const child = spawn(process.execPath, [PROVIDER], {
    env: { ...process.env, OIDC_TEST_CONFIG: JSON.stringify(config) },
    stdio: ["ignore", "pipe", "ignore"],
  });
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    lines.on("line", (line) => line.startsWith("listening") && resolve(child));
    child.once("exit", (code) => reject(new Error(`the provider exited (${code})`)));
  });
}

before(async () => {
  assert.ok(CHROMIUM, "no chromium found: run scripts/setup-test-deps (it installs the distribution's chromium)");
  assert.ok(existsSync(join(HERE, "..", "oidc", "node_modules", "oidc-provider")), "run scripts/setup-test-deps (tests/oidc)");
  mkdirSync(OUT, { recursive: true });
  const port = await freePort();
  configDir = mkdtempSync(join(tmpdir(), "gw-sso-"));
  const configPath = join(configDir, "config.toml");
  writeFileSync(
    configPath,
    `[dashboard.oidc]\nissuer = "http://127.0.0.1:${port}"\nclient_id = "codex-gateway"\n` +
      `client_secret = "browser-test-secret"\ndisplay_name = "Example SSO"\n`,
  );
  // The provider is discovered at the first sign-in: it may start after the gateway, once its address is known.
  stack = await startStack({ gatewayEnv: { CODEX_GATEWAY_CONFIG: configPath } });
  idp = await startProvider(port, stack.gateway.url);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu"] });
});

after(async () => {
  await browser?.close();
  idp?.kill();
  await stack?.stop();
  if (configDir) rmSync(configDir, { recursive: true, force: true });
});

test("a person signs in with the provider and lands on their start page", { timeout: 90_000 }, async () => {
  const context = await browser.newContext({ viewport: { width: 1100, height: 800 } });
  await context.route("**/*", (route) =>
    new URL(route.request().url()).hostname === "127.0.0.1" ? route.continue() : route.abort(),
  );
  const page = await context.newPage();
  try {
    await page.goto(`${stack.gateway.url}/dashboard/login`);
    await page.getByRole("link", { name: "Sign in with Example SSO" }).waitFor();
    await page.screenshot({ path: join(OUT, "sso-login.png") });
    await page.getByRole("link", { name: "Sign in with Example SSO" }).click();
    await page.locator('input[name="login"]').fill("ana");
    await page.locator('input[name="password"]').fill("any password");
    await page.locator('button[type="submit"]').click();
    await page.getByRole("button", { name: "Continue" }).click();
    // The callback's page moves on by itself; the Strict session cookie must come with that request.
    await page.waitForURL(/\/dashboard\/keys$/, { timeout: 15_000 });
    await page.getByRole("heading", { name: /keys/i }).first().waitFor();
    const cookies = await context.cookies(`${stack.gateway.url}/dashboard/sso/callback`);
    const session = cookies.find((c) => c.name === "cgw_session");
    assert.ok(session?.value.startsWith("cgs_"), JSON.stringify(cookies.map((c) => c.name)));
    assert.equal(session.sameSite, "Strict");
    assert.equal(session.httpOnly, true);
    assert.ok(!cookies.some((c) => c.name === "cgw_sso"), "the state cookie is gone");
    await page.screenshot({ path: join(OUT, "sso-signed-in.png") });
  } catch (e) {
    await page.screenshot({ path: join(OUT, "FAILED-sso.png") }).catch(() => {});
    e.message = `${e.message}\n${stack.describe()}`;
    throw e;
  } finally {
    await context.close();
  }
});
