//! [`rename_new`]: a received file moved to its queue name, never over another file.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Rename `from` to `to`, failing with [`io::ErrorKind::AlreadyExists`] when `to` exists
/// (`renameat2` with `RENAME_NOREPLACE`): a queue name taken by another file must never lose
/// it. A file system that cannot say (EINVAL) gets a link and an unlink, which refuse the same.
pub fn rename_new(from: &Path, to: &Path) -> io::Result<()> {
    let (source, target) = (c_path(from)?, c_path(to)?);
    // SAFETY: both are NUL-terminated paths that outlive the call.
    let done = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            source.as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if done == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() != Some(libc::EINVAL) {
        return Err(error);
    }
    std::fs::hard_link(from, to)?;
    std::fs::remove_file(from)
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path holds NUL"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_a_file_and_never_replaces_one() {
        let dir = std::env::temp_dir().join(format!("fastpush-rename-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b, c) = (dir.join("a"), dir.join("b"), dir.join("c"));
        std::fs::write(&a, b"received").unwrap();
        std::fs::write(&c, b"queued").unwrap();
        rename_new(&a, &b).unwrap();
        assert!(!a.exists());
        assert_eq!(std::fs::read(&b).unwrap(), b"received");
        let refused = rename_new(&b, &c).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&c).unwrap(), b"queued");
        assert!(b.exists());
        assert_eq!(
            rename_new(&a, &b).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
