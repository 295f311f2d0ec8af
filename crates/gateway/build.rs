//! Records how the binary was optimised, for `codex-gateway --version` and the benchmark report: a release build
//! made by `scripts/build-release` uses the committed profile (`-Cprofile-use`, profile-guided optimisation).

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
    println!("cargo::rustc-env=CODEX_GATEWAY_BUILD={build}");
    println!("cargo::rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
}
