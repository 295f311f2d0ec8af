//! The `codex-gateway` binary: parse the command line and hand over to the library.

fn main() -> std::process::ExitCode {
    codex_gateway::cli::main()
}
