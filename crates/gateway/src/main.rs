//! The `codex-gateway` binary: parse the command line and hand over to the library.

/// mimalloc in place of the C library's allocator: a streamed answer allocates and frees per event, and glibc's
/// malloc was 11% of the gateway's CPU on a burst; without transparent huge pages (`no_thp`), so an open stream
/// holds what it held before (docs/performance.md, "mimalloc as the allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    codex_gateway::cli::main()
}
