//! Temporary directories removed when the test binary exits. A guest kept in a static for all of
//! a binary's tests is never dropped, so its `TempDir` alone would leave a directory in /tmp per
//! run (86 MB for a kernel VM's initramfs). `E2E_KEEP=1` keeps them, and says where.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};

static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Removes `dir` (and everything in it) when the process exits normally.
pub fn remove_at_exit(dir: &Path) {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        // SAFETY: registering a plain extern "C" function with no captured state.
        unsafe {
            libc::atexit(remove_dirs);
        }
    });
    DIRS.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(dir.to_path_buf());
}

extern "C" fn remove_dirs() {
    let dirs = std::mem::take(&mut *DIRS.lock().unwrap_or_else(|p| p.into_inner()));
    for dir in dirs {
        if std::env::var_os("E2E_KEEP").is_some() {
            eprintln!("E2E_KEEP: kept {}", dir.display());
        } else {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
