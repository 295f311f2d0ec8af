// Process harness for the Node real-client tests: starts fake-codex (one account, auth.json in a temp
// CODEX_HOME) and codex-gateway in linked mode on that auth.json, both on 127.0.0.1 port 0.
// Mirrors tests/clients/harness.py.
//
//   const stack = await startStack();
//   stack.gateway.v1            // "http://127.0.0.1:PORT/v1"
//   await stack.fake.enqueue({ kind: "tool_call", name: "get_weather", arguments: { city: "Paris" } });
//   await stack.fake.requests("responses");
//   await stack.stop();

import { spawn } from "node:child_process";
import { after, before, test } from "node:test";
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
export const API_KEY = "test-key";
const STARTUP_TIMEOUT_MS = Number(process.env.CLIENT_TESTS_STARTUP_TIMEOUT ?? 30) * 1000;

const PROXY_VARS = [
  "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
  "FTP_PROXY", "ftp_proxy", "NPM_CONFIG_PROXY", "NPM_CONFIG_HTTPS_PROXY",
];

export const OFFLINE_ENV = {
  NO_PROXY: "127.0.0.1,localhost",
  no_proxy: "127.0.0.1,localhost",
  DISABLE_TELEMETRY: "1",
  DO_NOT_TRACK: "1",
  NO_UPDATE_NOTIFIER: "1",
  DISABLE_AUTOUPDATER: "1",
  DISABLE_ERROR_REPORTING: "1",
  CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
};

/** The current environment without proxies, with the offline switches, plus `extra`. */
export function childEnv(extra = {}) {
  const env = { ...process.env };
  for (const name of PROXY_VARS) delete env[name];
  return { ...env, ...OFFLINE_ENV, ...extra };
}

export function binary(name) {
  const target = process.env.CARGO_TARGET_DIR ?? join(REPO, "target");
  const path = join(target, "debug", name);
  if (!existsSync(path)) {
    throw new Error(`${path} is missing: build it first with \`cargo build --workspace --bins\` (scripts/test does)`);
  }
  return path;
}

class Proc {
  constructor(name, argv, env, logPath, cwd) {
    this.name = name;
    this.argv = argv;
    this.logPath = logPath;
    this.lines = [];
    this.waiters = [];
    this.exited = null;
    const log = createWriteStream(logPath, { flags: "a" });
    this.child = spawn(argv[0], argv.slice(1), {
      env,
      cwd,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    this.child.stderr.pipe(log);
    this.exitPromise = new Promise((res) => {
      this.child.on("exit", (code, signal) => {
        this.exited = { code, signal };
        this._notify();
        res();
      });
    });
    this.child.on("error", (err) => {
      this.exited = { code: null, signal: null, error: err };
      this._notify();
    });
    createInterface({ input: this.child.stdout }).on("line", (line) => {
      this.lines.push(line);
      this._notify();
    });
    // Keep the test process from waiting on the children's pipes.
    this.child.unref();
    this.child.stdout.unref?.();
    this.child.stderr.unref?.();
  }

  _notify() {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Resolves with the first stdout line at index >= from that starts with prefix. */
  async waitForPrefix(prefix, timeoutMs = STARTUP_TIMEOUT_MS, from = 0) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.lines.slice(from).find((l) => l.startsWith(prefix));
      if (found !== undefined) return found;
      if (this.exited) throw new Error(`${this.name} exited (${JSON.stringify(this.exited)}) before printing ${JSON.stringify(prefix)}\n${this.describe()}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${this.name}: no stdout line starting ${JSON.stringify(prefix)} within ${timeoutMs} ms\n${this.describe()}`);
      await new Promise((res) => {
        const t = setTimeout(res, left);
        this.waiters.push(() => { clearTimeout(t); res(); });
      });
    }
  }

  logText() {
    try { return readFileSync(this.logPath, "utf8"); } catch { return ""; }
  }

  describe(tail = 80) {
    return [
      `--- ${this.name}: ${this.argv.join(" ")}`,
      `--- stdout (last ${tail} lines):`, ...this.lines.slice(-tail),
      `--- stderr (${this.logPath}, last ${tail} lines):`, ...this.logText().split("\n").slice(-tail),
    ].join("\n");
  }

  async stop() {
    if (this.exited) return;
    try { process.kill(-this.child.pid, "SIGTERM"); } catch { /* already gone */ }
    const killer = setTimeout(() => { try { process.kill(-this.child.pid, "SIGKILL"); } catch { /* gone */ } }, 10000);
    await this.exitPromise;
    clearTimeout(killer);
  }
}

function address(line, prefix) {
  const url = new URL(line.slice(prefix.length).trim());
  if (url.hostname !== "127.0.0.1" || !url.port) throw new Error(`unexpected listening line: ${line}`);
  return `${url.protocol}//${url.host}`;
}

function assertLoopback(url) {
  const host = new URL(url).hostname;
  if (!["127.0.0.1", "localhost", "[::1]"].includes(host)) throw new Error(`tests only talk to loopback, not ${url}`);
}

export class Fake {
  constructor(proc, url) {
    this.proc = proc;
    this.url = url;
  }

  async call(method, path, body) {
    assertLoopback(this.url);
    const res = await fetch(this.url + path, {
      method,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`fake-codex ${method} ${path} -> ${res.status}: ${text}`);
    return text.trim() ? JSON.parse(text) : null;
  }

  enqueue(scenario, accountId = null) {
    return this.call("POST", "/_fake/enqueue", { account_id: accountId, scenario });
  }

  async requests(path = "responses") {
    const q = path == null ? "" : `?path=${encodeURIComponent(path)}`;
    let data = await this.call("GET", `/_fake/requests${q}`);
    if (data && !Array.isArray(data) && Array.isArray(data.requests)) data = data.requests;
    return data.sort((a, b) => (a.seq ?? 0) - (b.seq ?? 0));
  }

  /** Bodies of the POSTs to .../responses as the backend answered them: a turn chained on the upstream WebSocket
   * (`previous_response_id` and its new items) with the whole input fake-codex put together (`chained_input`). */
  async responseBodies() {
    return (await this.requests("responses")).filter((r) => r.method === "POST").map(answered);
  }

  resetRequests() {
    return this.call("POST", "/_fake/reset-requests");
  }
}

/** A recorded request's body as the backend answered it (see `Fake.responseBodies`). */
export function answered(request) {
  const body = { ...(request.body ?? {}) };
  if (request.chained_input != null) {
    delete body.previous_response_id;
    body.input = request.chained_input;
  }
  return body;
}

/** fake-codex writes auth.json after printing its account lines: wait until it is complete. */
async function waitForJsonFile(path, proc, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      JSON.parse(readFileSync(path, "utf8"));
      return;
    } catch { /* not there yet */ }
    if (Date.now() > deadline || proc.exited) throw new Error(`fake-codex did not write ${path}\n${proc.describe()}`);
    await new Promise((res) => setTimeout(res, 20));
  }
}

const OLLAMA_PREFIX = "codex-gateway ollama bridge listening on ";

/** Starts fake-codex + codex-gateway in a fresh temp dir (`ollama`: with the Ollama bridge on a free port). */
export async function startStack({ accounts = 1, gatewayEnv = {}, ollama = false } = {}) {
  const work = mkdtempSync(join(tmpdir(), "gw-node-"));
  const codexHome = join(work, "codex-home");
  const home = join(work, "home");
  const dataDir = join(work, "gateway-data");
  for (const d of [codexHome, home, dataDir]) mkdirSync(d, { recursive: true });

  const fakeProc = new Proc(
    "fake-codex",
    [binary("fake-codex"), "--port", "0", "--accounts", String(accounts), "--write-auth-json", join(codexHome, "auth.json")],
    childEnv({ RUST_LOG: "info" }),
    join(work, "fake-codex.log"),
    work,
  );
  let fake;
  try {
    const line = await fakeProc.waitForPrefix("fake-codex listening on ");
    if (fakeProc.lines[0] !== line) throw new Error(`fake-codex: first stdout line was ${JSON.stringify(fakeProc.lines[0])}`);
    fake = new Fake(fakeProc, address(line, "fake-codex listening on "));
    for (let i = 0; i < Math.max(accounts, 1); i++) await fakeProc.waitForPrefix("account ", STARTUP_TIMEOUT_MS, 1 + i);
    await waitForJsonFile(join(codexHome, "auth.json"), fakeProc);
  } catch (e) {
    await fakeProc.stop();
    throw e;
  }

  const gwProc = new Proc(
    "codex-gateway",
    [binary("codex-gateway"), "serve", "--port", "0"],
    childEnv({
      CODEX_HOME: codexHome,
      CODEX_GATEWAY_DATA_DIR: dataDir,
      CODEX_GATEWAY_UPSTREAM_BASE_URL: `${fake.url}/backend-api/codex`,
      CODEX_GATEWAY_CHATGPT_BASE_URL: `${fake.url}/backend-api`,
      CODEX_GATEWAY_AUTH_ISSUER: fake.url,
      CODEX_GATEWAY_API_KEY: API_KEY,
      RUST_LOG: "info",
      HOME: home,
      ...(ollama ? { CODEX_GATEWAY_OLLAMA_ENABLED: "1", CODEX_GATEWAY_OLLAMA_PORT: "0" } : {}),
      ...gatewayEnv,
    }),
    join(work, "gateway.log"),
    work,
  );
  let gatewayUrl;
  let bridgeUrl = null;
  try {
    gatewayUrl = address(await gwProc.waitForPrefix("codex-gateway listening on "), "codex-gateway listening on ");
    if (ollama) bridgeUrl = address(await gwProc.waitForPrefix(OLLAMA_PREFIX), OLLAMA_PREFIX);
  } catch (e) {
    await gwProc.stop();
    await fakeProc.stop();
    throw e;
  }

  return {
    work,
    fake,
    // `ollama`: the Ollama bridge's base URL (no auth), when started with `ollama: true`.
    gateway: { proc: gwProc, url: gatewayUrl, v1: `${gatewayUrl}/v1`, apiKey: API_KEY, ollama: bridgeUrl },
    /** Gateway stderr and fake output, for assertion messages. */
    describe() {
      return `${gwProc.describe(150)}\n${fakeProc.describe(40)}`;
    },
    async stop({ keep = false } = {}) {
      await gwProc.stop();
      await fakeProc.stop();
      if (!keep) rmSync(work, { recursive: true, force: true });
    },
  };
}

/**
 * One stack per test file: started before the first test (then `onStart(stack)` runs), stopped after the last
 * (its work directory kept when a test failed). Returns `gwTest(name, fn)`, a bounded test that resets the
 * fake's request log first, hands `fn` the test's context (for `t.skip`) and appends both processes' logs to a
 * failure.
 */
export function useStack(options = {}, onStart = () => {}) {
  let stack;
  let failed = false;
  before(async () => {
    stack = await startStack(options);
    await onStart(stack);
  });
  after(async () => {
    if (stack) await stack.stop({ keep: failed });
  });
  return function gwTest(name, fn) {
    test(name, { timeout: 120_000 }, async (t) => {
      await stack.fake.resetRequests();
      try {
        await fn(t);
      } catch (e) {
        failed = true;
        e.message = `${e.message}\n${stack.describe()}`;
        throw e;
      }
    });
  };
}
