//! The `codex-gateway` binary: parse the command line and hand over to the library.

fn main() -> std::process::ExitCode {
    // First, so the start-up paths are mapped page by page (idle memory, see the function).
    codex_gateway::memory::map_only_the_binary_pages_used();
    codex_gateway::cli::main()
}
