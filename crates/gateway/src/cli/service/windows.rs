//! Windows counterparts of service.rs's process checks: there is no kill(2) and no /proc, so a pid file's process
//! is opened by its id (OpenProcess) to ask whether it still runs, what program it is, and to end it.

use std::os::windows::ffi::OsStringExt;
use std::path::PathBuf;

use windows_sys::Win32::Foundation::{CloseHandle, HANDLE, STILL_ACTIVE};
use windows_sys::Win32::System::Threading::{
    GetExitCodeProcess, OpenProcess, PROCESS_ACCESS_RIGHTS, PROCESS_NAME_WIN32, PROCESS_QUERY_LIMITED_INFORMATION,
    PROCESS_TERMINATE, QueryFullProcessImageNameW, TerminateProcess,
};

/// What `start` gives the process it spawns: its own process group and its own console, with no window. Ctrl-C
/// or Ctrl-Break in the console `start` ran in, or that console closed, does not reach it (the unix side's
/// process group); the console is hidden rather than absent so the gateway's console handlers can still be
/// installed.
pub(crate) const DETACHED: u32 = windows_sys::Win32::System::Threading::CREATE_NEW_PROCESS_GROUP
    | windows_sys::Win32::System::Threading::CREATE_NO_WINDOW;

/// A process handle, closed when dropped.
struct Process(HANDLE);

impl Process {
    fn open(pid: u32, access: PROCESS_ACCESS_RIGHTS) -> std::io::Result<Process> {
        // SAFETY: OpenProcess takes plain integers and returns a handle or null.
        let handle = unsafe { OpenProcess(access, 0, pid) };
        if handle.is_null() { Err(std::io::Error::last_os_error()) } else { Ok(Process(handle)) }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // SAFETY: the handle came from OpenProcess and is closed once, here.
        unsafe { CloseHandle(self.0) };
    }
}

/// The process exists and has not exited (a handle may outlive the process: its exit code says). One that
/// cannot be opened (gone, or another user's) counts as not running, as kill(0) failing does on unix.
pub(super) fn alive(pid: u32) -> bool {
    let Ok(process) = Process::open(pid, PROCESS_QUERY_LIMITED_INFORMATION) else { return false };
    let mut code = 0u32;
    // SAFETY: a valid handle with query rights and a pointer to a live u32.
    let ok = unsafe { GetExitCodeProcess(process.0, &mut code) } != 0;
    ok && code == STILL_ACTIVE as u32
}

/// The pid is a codex-gateway (a pid file outliving its process may name a reused pid): its program's file name.
/// When the name cannot be read, assume so, as the unix side does without /proc.
pub(super) fn is_gateway(pid: u32) -> bool {
    let Some(path) = image(pid) else { return true };
    path.file_name().and_then(|n| n.to_str()).is_none_or(|name| name.to_ascii_lowercase().starts_with("codex-gateway"))
}

fn image(pid: u32) -> Option<PathBuf> {
    let process = Process::open(pid, PROCESS_QUERY_LIMITED_INFORMATION).ok()?;
    // Long paths (`\\?\`) fit in 32 K characters.
    let mut buf = vec![0u16; 32 * 1024];
    let mut len = buf.len() as u32;
    // SAFETY: a valid handle, a buffer of `len` u16s and a pointer to its length, which the call sets.
    let ok = unsafe { QueryFullProcessImageNameW(process.0, PROCESS_NAME_WIN32, buf.as_mut_ptr(), &mut len) } != 0;
    let path = buf.get(..len as usize).filter(|_| ok)?;
    Some(std::ffi::OsString::from_wide(path).into())
}

/// End the process at once (TerminateProcess): Windows has no signal that asks a detached console process to
/// shut down, so its open streams are cut and usage not yet written to the store is lost.
pub(super) fn kill(pid: u32) -> std::io::Result<()> {
    let process = Process::open(pid, PROCESS_TERMINATE)?;
    // SAFETY: a valid handle with terminate rights; 1 is the exit code the process reports.
    match unsafe { TerminateProcess(process.0, 1) } {
        0 => Err(std::io::Error::last_os_error()),
        _ => Ok(()),
    }
}
