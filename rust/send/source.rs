//! Dataset sources read in place: a region of a memory-mapped file.

use std::fs::File;
use std::path::Path;

use memmap2::{Advice, Mmap, MmapOptions};

use crate::error::{Error, Result};

/// `length` bytes at `offset` of a file, mapped read-only; the file stays open, for the kernel
/// to copy ranges of it ([`MappedRegion::file`]).
#[derive(Debug)]
pub struct MappedRegion {
    map: Option<Mmap>,
    file: File,
    offset: u64,
}

impl MappedRegion {
    /// Map a file region. Missing or unreadable files give the OS error with the path, and so
    /// does a region past the end of the file (a file that shrank since it was scanned): every
    /// failure here is the source's, raised before any byte is sent.
    pub fn open(path: &Path, offset: u64, length: u64) -> Result<Self> {
        let file_err = |source| Error::File {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(file_err)?;
        let size = file.metadata().map_err(file_err)?.len();
        let end = offset.checked_add(length);
        if end.map_or(true, |end| end > size) {
            return Err(file_err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("region offset {offset} + length {length} is past the end ({size} bytes)"),
            )));
        }
        if length == 0 {
            return Ok(MappedRegion {
                map: None,
                file,
                offset,
            });
        }
        let len = usize::try_from(length)
            .map_err(|_| Error::InvalidArgument(format!("length {length} too large")))?;
        // SAFETY: the mapping is read-only; a file truncated by someone else while we send it
        // would fault (SIGBUS), the same contract as every mmap-based sender.
        let map =
            unsafe { MmapOptions::new().offset(offset).len(len).map(&file) }.map_err(file_err)?;
        let _ = map.advise(Advice::Sequential);
        Ok(MappedRegion {
            map: Some(map),
            file,
            offset,
        })
    }

    pub fn as_slice(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    /// The mapped file and the offset of the region in it.
    pub fn file(&self) -> (&File, u64) {
        (&self.file, self.offset)
    }
}

/// Drop the resident pages of `data[..upto]` that lie wholly before `upto`, starting at the page
/// holding `data[from]`: file-backed pages already sent would otherwise count in RSS until unmap.
///
/// # Safety
/// `data` must lie in a read-only, file-backed mapping (re-reading it faults the file back in);
/// never call this on heap memory (MADV_DONTNEED would zero it).
pub unsafe fn release_pages(data: &[u8], from: usize, upto: usize) {
    let page = page_size();
    let base = data.as_ptr() as usize;
    let start = (base + from) & !(page - 1);
    let end = (base + upto) & !(page - 1);
    if end > start {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
    }
}

pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as usize
    } else {
        4096
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn temp_file(name: &str, data: &[u8]) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("fastpush-{}-{name}", std::process::id()));
        File::create(&path).unwrap().write_all(data).unwrap();
        path
    }

    #[test]
    fn maps_region_and_validates() {
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let path = temp_file("region", &data);
        let r = MappedRegion::open(&path, 4097, 3000).unwrap();
        assert_eq!(r.as_slice(), &data[4097..7097]);
        // Releasing pages keeps the contents readable (they fault back in from the file).
        unsafe { release_pages(r.as_slice(), 0, 3000) };
        assert_eq!(r.as_slice(), &data[4097..7097]);
        assert_eq!(
            MappedRegion::open(&path, 10_000, 0).unwrap().as_slice(),
            b""
        );
        for (offset, length) in [(9_000, 1001), (u64::MAX, 2)] {
            match MappedRegion::open(&path, offset, length) {
                Err(Error::File { source, .. }) => {
                    assert_eq!(source.kind(), std::io::ErrorKind::UnexpectedEof)
                }
                other => panic!("{other:?}"),
            }
        }
        std::fs::remove_file(&path).unwrap();
        match MappedRegion::open(&path, 0, 1) {
            Err(Error::File { source, .. }) => {
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound)
            }
            other => panic!("{other:?}"),
        }
    }
}
