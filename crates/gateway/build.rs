//! Records what the binary is, for `codex-gateway --version`, the release artifacts' smoke test and the benchmark
//! report: the target it was built for, the commit (`CODEX_GATEWAY_COMMIT`, set by `scripts/build-release` and the
//! release workflow from git; a plain `cargo build` has none), and how it was optimised (a release build made by
//! `scripts/build-release` uses the committed profile, `-Cprofile-use`: profile-guided optimisation).

fn main() {
    // Cargo passes the effective rustflags to build scripts, separated by 0x1f.
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let build = if flags.split('\x1f').any(|f| f.starts_with("-Cprofile-use")) {
        "profile-guided (scripts/build-release)"
    } else if flags.split('\x1f').any(|f| f.starts_with("-Cprofile-generate")) {
        "instrumented for profiling (scripts/pgo-train)"
    } else {
        "without a profile"
    };
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    // Only from the environment, never by running git here: a build script that read git would either rebuild the
    // gateway on every commit or report a stale commit.
    let commit = std::env::var("CODEX_GATEWAY_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .unwrap_or_else(|| "unknown (a build without scripts/build-release)".into());
    println!("cargo::rustc-env=CODEX_GATEWAY_BUILD={build}");
    println!("cargo::rustc-env=CODEX_GATEWAY_TARGET={target}");
    println!("cargo::rustc-env=CODEX_GATEWAY_COMMIT={}", commit.trim());
    println!("cargo::rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    println!("cargo::rerun-if-env-changed=CODEX_GATEWAY_COMMIT");
}
