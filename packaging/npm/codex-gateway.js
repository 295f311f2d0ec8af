#!/usr/bin/env node
// The `codex-gateway` command of the npm package: runs the native binary that one of the
// platform packages (@codex-gateway/linux-x64, -linux-arm64, -darwin-x64, -darwin-arm64,
// -win32-x64) brings. npm installs only the one whose `os`/`cpu`/`libc` match this machine,
// as an optional dependency of this package.
//
// The child gets this process's stdin/stdout/stderr. SIGINT, SIGTERM and SIGHUP sent to this
// process are passed on to it (SIGHUP makes the gateway reload its config); a Ctrl+C in a
// terminal reaches both processes, and the gateway treats the second SIGINT as the first.
// This process exits with the child's exit code, or dies of the child's signal.
//
// CODEX_GATEWAY_BINARY=/path/to/codex-gateway runs that binary instead of the platform
// package's (a local build, or a platform with no package).
'use strict';

const { spawn } = require('child_process');

const PACKAGES = {
  'linux-x64': '@codex-gateway/linux-x64',
  'linux-arm64': '@codex-gateway/linux-arm64',
  'darwin-x64': '@codex-gateway/darwin-x64',
  'darwin-arm64': '@codex-gateway/darwin-arm64',
  'win32-x64': '@codex-gateway/win32-x64',
};

const OTHER_WAYS =
  '  Other ways to install it:\n' +
  '    pipx install codex-gateway   (or: uv tool install codex-gateway)\n' +
  '    the archives and install scripts of https://github.com/codex-gateway/codex-gateway/releases\n' +
  '  or set CODEX_GATEWAY_BINARY to the path of a codex-gateway binary.';

function fail(message) {
  process.stderr.write(`codex-gateway: ${message}\n`);
  process.exit(1);
}

function binaryPath() {
  const override = process.env.CODEX_GATEWAY_BINARY;
  if (override) return override;

  const platform = `${process.platform}-${process.arch}`;
  const pkg = PACKAGES[platform];
  if (!pkg) {
    fail(
      `there is no prebuilt binary for this platform (${platform}); prebuilt ones exist for ` +
        `${Object.keys(PACKAGES).join(', ')}.\n` +
        OTHER_WAYS,
    );
  }
  const exe = process.platform === 'win32' ? 'codex-gateway.exe' : 'codex-gateway';
  try {
    return require.resolve(`${pkg}/bin/${exe}`);
  } catch {
    const libc = process.platform === 'linux' ? ' (it needs glibc 2.17 or newer; musl systems have no package)' : '';
    fail(
      `the platform package ${pkg} is not installed, so there is no binary for ${platform}${libc}.\n` +
        '  It is an optional dependency of codex-gateway: reinstall without --no-optional / --omit=optional\n' +
        '  (npm install codex-gateway, or npx codex-gateway), and check that optional dependencies are not\n' +
        '  turned off in your npm config (npm config get omit).\n' +
        OTHER_WAYS,
    );
  }
}

function run() {
  const binary = binaryPath();

  // The handlers go in before the child starts: a signal that arrives as soon as the child is running (a
  // supervisor that saw it print) would otherwise meet the default action and kill this process alone.
  // Handlers run on the event loop, so none runs before `child` below is set.
  let child;
  const forwarded = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  const forward = (signal) => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill(signal);
  };
  for (const signal of forwarded) process.on(signal, forward);

  child = spawn(binary, process.argv.slice(2), { stdio: 'inherit' });

  child.on('error', (err) => {
    fail(`cannot run ${binary}: ${err.message}`);
  });
  child.on('exit', (code, signal) => {
    for (const s of forwarded) process.removeListener(s, forward);
    if (signal) {
      // Die the same way, so a shell or supervisor sees the real cause (e.g. 130 for SIGINT).
      process.kill(process.pid, signal);
      return;
    }
    process.exit(code === null ? 1 : code);
  });
}

run();
