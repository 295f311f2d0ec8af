//! `serve` puts the allocator's heap on transparent huge pages where the kernel gives them on request
//! (crates/gateway/src/memory.rs): the serving process, the same one that was started, runs with glibc's tunable
//! added to the ones it was given; `CODEX_GATEWAY_HUGE_PAGES=off`, or a `GLIBC_TUNABLES` that names the tunable,
//! leaves the environment as given and the heap on normal pages.
//!
//! Whether glibc then marks the heap is glibc's part, and Debian 12's glibc 2.36 does not do it every time. On one
//! host every start marked the heap; on another 2 to 3 starts in 8 did, with the tunable in place every time, the
//! others growing the heap as if glibc had found no huge page size. Likely cause: 2.36 compares the kernel's
//! setting (`/sys/kernel/mm/transparent_hugepage/enabled`) from a buffer it does not terminate, so a stray byte of
//! its stack decides; later glibc terminates it (bench/notes.md, forty-fourth session). The heap is checked only
//! where the answer does not depend on that: told not to, it is never marked.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// What a started gateway runs with, read from /proc once it listens.
struct Served {
    /// Its environment as the kernel holds it: glibc may cut `GLIBC_TUNABLES` into pieces in place as it reads
    /// it, so this is searched, not split.
    environ: String,
    heap_on_huge_pages: bool,
    /// Its name as `ps`, `top`, `pgrep` and `pkill` see it.
    comm: String,
}

fn serve(env: &[(&str, &str)]) -> Served {
    let dir = std::env::temp_dir().join(format!("cgw-huge-{}", uuid::Uuid::new_v4().simple()));
    let mut command = Command::new(env!("CARGO_BIN_EXE_codex-gateway"));
    command
        .args(["serve", "--port", "0"])
        .env("HOME", &dir)
        .env("CODEX_HOME", dir.join("no-codex-home"))
        .env("CODEX_GATEWAY_DATA_DIR", dir.join("data"))
        .env("RUST_LOG", "warn")
        .env_remove("GLIBC_TUNABLES")
        .env_remove("CODEX_GATEWAY_HUGE_PAGES")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = command.spawn().unwrap_or_else(|e| panic!("spawn gateway: {e}"));
    let pid = child.id();
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
    let served = read_proc(pid);
    stop(&mut child);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(line.contains("listening on http://127.0.0.1:"), "the gateway did not start: {line:?}");
    served
}

fn read_proc(pid: u32) -> Served {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_else(|e| panic!("environ: {e}"));
    let environ = String::from_utf8_lossy(&environ).replace('\0', "\n");
    // The main heap's entry in smaps: its `VmFlags` line says `hg` once it was advised for huge pages.
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_else(|e| panic!("smaps: {e}"));
    let heap = smaps.split_once("[heap]").map(|(_, rest)| rest).unwrap_or_default();
    let flags = heap.lines().find_map(|l| l.strip_prefix("VmFlags:")).unwrap_or_default();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string();
    Served { environ, heap_on_huge_pages: flags.split_whitespace().any(|f| f == "hg"), comm }
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn serving_puts_the_heap_on_huge_pages_unless_told_not_to() {
    let on_request = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .is_ok_and(|mode| mode.contains("[madvise]"));

    // Other tunables the gateway was given are kept beside the huge-page one.
    let given = serve(&[("GLIBC_TUNABLES", "glibc.malloc.arena_max=4")]);
    assert!(given.environ.contains("GLIBC_TUNABLES=glibc.malloc.arena_max=4"), "{}", given.environ);
    // Executed again or not, the process keeps its name (executing `/proc/self/exe` named it `exe`).
    assert_eq!(given.comm, "codex-gateway");
    if on_request {
        assert!(given.environ.contains("glibc.malloc.hugetlb=1"), "{}", given.environ);
        assert!(given.environ.contains("CODEX_GATEWAY_HUGE_PAGES=on"), "{}", given.environ);
        // Given nothing, it adds the tunable all the same.
        let plain = serve(&[]);
        assert!(plain.environ.contains("glibc.malloc.hugetlb=1"), "{}", plain.environ);
        assert_eq!(plain.comm, "codex-gateway");
    } else {
        // `always` or `never`: asking would change nothing, so the gateway does not execute itself again.
        assert!(!given.environ.contains("hugetlb"), "{}", given.environ);
    }

    // Told not to, either way: the environment as given, and a heap on normal pages.
    let off = serve(&[("CODEX_GATEWAY_HUGE_PAGES", "off")]);
    assert!(!off.environ.contains("hugetlb") && off.environ.contains("CODEX_GATEWAY_HUGE_PAGES=off"));
    assert!(!off.heap_on_huge_pages, "the heap was advised for huge pages although told not to");
    let chosen = serve(&[("GLIBC_TUNABLES", "glibc.malloc.hugetlb=0")]);
    assert!(!chosen.environ.contains("CODEX_GATEWAY_HUGE_PAGES"), "{}", chosen.environ);
    assert!(!chosen.heap_on_huge_pages, "the heap was advised for huge pages although glibc was told not to");
}
