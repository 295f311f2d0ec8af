//! The `codex-gateway` binary: parse the command line and hand over to the library.

fn main() -> std::process::ExitCode {
    // First, so the start-up paths are mapped page by page (idle memory, see the function).
    codex_gateway::memory::map_only_the_binary_pages_used();
    // Before anything starts: this may execute the binary again, with the heap on huge pages (see the function).
    if codex_gateway::cli::serving() {
        codex_gateway::memory::serve_with_the_heap_on_huge_pages();
    }
    codex_gateway::cli::main()
}
