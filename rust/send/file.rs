//! An edited dataset written to a file (de-identifying file to file): the converter's output
//! written as it is produced, and the values it leaves unchanged (the pixel data above all)
//! copied from the source file by the kernel (`sendfile`), never through our memory.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;

use super::converted::PASS_MIN;
use crate::convert::{self, Converter, Plan, Syntax};
use crate::error::{Error, Result};

/// Output gathered before one write.
const WRITE_BYTES: usize = 1 << 20;

/// Write `prefix` (the file meta), then `data` edited with `plan` (and converted), to a new file
/// at `path`; `source` is the file and offset `data` is mapped from, if it is. Returns the bytes
/// written. On any error the file is removed: a half-edited file is never left behind.
pub fn write_edited(
    path: &Path,
    prefix: &[u8],
    (data, source): (&[u8], Option<(&File, u64)>),
    (from, to): (Syntax, Syntax),
    plan: &Plan,
) -> Result<u64> {
    let gathered = convert::gather(data, from, plan).map_err(|e| Error::Edit(e.to_string()))?;
    let file_err = |source| Error::File {
        path: path.to_path_buf(),
        source,
    };
    let mut out = File::create(path).map_err(file_err)?;
    let mut conv = Converter::new(data, from, to)
        .passing(PASS_MIN)
        .with_edits(plan, gathered);
    let written = copy_out(&mut conv, &mut out, prefix, (data, source));
    written.map_err(|e| {
        let _ = std::fs::remove_file(path);
        match e {
            Failure::Edit(e) => Error::Edit(e.to_string()),
            Failure::Io(e) => file_err(e),
        }
    })
}

enum Failure {
    Edit(convert::ConvertError),
    Io(std::io::Error),
}

fn copy_out(
    conv: &mut Converter<'_>,
    out: &mut File,
    prefix: &[u8],
    (data, source): (&[u8], Option<(&File, u64)>),
) -> std::result::Result<u64, Failure> {
    let mut buf = prefix.to_vec();
    let mut written = 0u64;
    loop {
        let done = conv.fill(&mut buf, WRITE_BYTES).map_err(Failure::Edit)?;
        let passed = conv.take_passed();
        if done || passed.is_some() || buf.len() >= WRITE_BYTES {
            out.write_all(&buf).map_err(Failure::Io)?;
            written += buf.len() as u64;
            buf.clear();
        }
        if let Some(range) = passed {
            written += range.len() as u64;
            match source {
                Some((file, offset)) => send_range(
                    out,
                    file,
                    offset + range.start as u64,
                    range.len(),
                    &data[range],
                ),
                None => out.write_all(&data[range]),
            }
            .map_err(Failure::Io)?;
        }
        if done {
            return Ok(written);
        }
    }
}

/// `len` bytes of `file` at `offset` appended to `out` by the kernel, page cache to page cache
/// (`copy_file_range` refuses two file systems, as a spool and an output usually are); where
/// the kernel cannot, the rest is written from `mapped`, the same bytes mapped.
fn send_range(
    out: &mut File,
    file: &File,
    offset: u64,
    len: usize,
    mapped: &[u8],
) -> std::io::Result<()> {
    let mut off = offset as libc::off_t;
    let mut done = 0;
    while done < len {
        // SAFETY: two open descriptors; `off` is a valid off_t the call advances.
        let n = unsafe { libc::sendfile(out.as_raw_fd(), file.as_raw_fd(), &mut off, len - done) };
        match n {
            n if n > 0 => done += n as usize,
            0 => break,
            _ => {
                let err = std::io::Error::last_os_error();
                if err.kind() != std::io::ErrorKind::Interrupted {
                    break;
                }
            }
        }
    }
    out.write_all(&mapped[done..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::edit::{Action, Rule, Scope, Selector, Value};
    use crate::convert::edit_to_vec;
    use crate::send::MappedRegion;

    #[test]
    fn the_file_holds_the_prefix_and_the_edited_bytes_or_nothing() {
        let mut ds = Vec::new();
        ds.extend_from_slice(b"\x08\0\x80\0LO\x04\0OLD ");
        ds.extend_from_slice(b"\xe0\x7f\x10\0OW\0\0");
        ds.extend_from_slice(&200_000u32.to_le_bytes());
        ds.extend((0..200_000u32).map(|i| (i % 251) as u8));
        let set = |text: &str| {
            Plan::new(vec![Rule {
                selector: Selector::Tag(0x0008_0080),
                scope: Scope::Top,
                action: Action::Set {
                    value: Value::Text(text.into()),
                    vr: None,
                    insert: true,
                },
            }])
        };
        let dir = std::env::temp_dir();
        let src = dir.join(format!("fastpush-{}-file-src", std::process::id()));
        let out = dir.join(format!("fastpush-{}-file-out", std::process::id()));
        std::fs::write(&src, [&b"meta"[..], &ds].concat()).unwrap();
        let region = MappedRegion::open(&src, 4, ds.len() as u64).unwrap();
        let syntaxes = (Syntax::ExplicitLittle, Syntax::ExplicitLittle);
        let plan = set("A LONGER NAME");
        let want = [
            &b"PREFIX"[..],
            &edit_to_vec(&ds, syntaxes.0, syntaxes.1, &plan).unwrap(),
        ]
        .concat();
        for source in [Some(region.file()), None] {
            let data = (region.as_slice(), source);
            let n = write_edited(&out, b"PREFIX", data, syntaxes, &plan).unwrap();
            assert_eq!(n as usize, want.len());
            assert!(std::fs::read(&out).unwrap() == want);
        }
        // 65 characters do not fit a LO: an error, and no file.
        let data = (region.as_slice(), Some(region.file()));
        let err = write_edited(&out, b"", data, syntaxes, &set(&"X".repeat(65)));
        assert!(matches!(err, Err(Error::Edit(_))), "{err:?}");
        assert!(!out.exists());
        std::fs::remove_file(&src).unwrap();
    }
}
