//! Where a received dataset goes: a file (created under a temporary name the caller chose, a
//! header written first, the dataset bytes appended untouched with vectored writes straight from
//! the read buffer), memory, or nowhere.
//!
//! A sink never fails the association: when the file cannot be created or written (a full
//! disk, an unwritable folder) the error is recorded, what was written is removed, and the rest
//! of the dataset is taken and dropped, so the caller can answer the message with a failure
//! status and go on. A file sink that is dropped before [`DatasetSink::finish`] removes its file:
//! a temporary name never outlives a dataset that did not arrive whole.

use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::ops::Range;
use std::path::PathBuf;

/// What a finished sink holds.
#[derive(Debug)]
pub struct Finished {
    /// Dataset bytes received (whether or not they could be kept).
    pub size: u64,
    /// The first bytes of the dataset, up to the limit asked for.
    pub head: Vec<u8>,
    /// The dataset, for a memory sink.
    pub data: Option<Vec<u8>>,
    /// Why a file sink could not keep the dataset; its file is gone.
    pub error: Option<io::Error>,
}

struct FileSink {
    path: PathBuf,
    file: Option<File>,
    fsync: bool,
    error: Option<io::Error>,
    keep: bool,
    /// Bytes written; a reused file is cut to this length at the end.
    written: u64,
    reuse: bool,
    /// Bytes of the header in front of the dataset.
    header: u64,
}

impl FileSink {
    fn create(path: PathBuf, header: &[u8], fsync: bool, reuse: bool) -> Self {
        let mut sink = FileSink {
            path,
            file: None,
            fsync,
            error: None,
            keep: false,
            written: 0,
            reuse,
            header: header.len() as u64,
        };
        // create_new: never write into a file someone else made under that name. A reused
        // file is a spent one the caller kept at `path` (made anew if it went meanwhile):
        // overwriting its pages costs a copy, allocating and later freeing new ones (tmpfs, the
        // page cache) costs four times that.
        match OpenOptions::new()
            .write(true)
            .create(reuse)
            .create_new(!reuse)
            .open(&sink.path)
        {
            Ok(file) => {
                sink.file = Some(file);
                sink.write(&[IoSlice::new(header)]);
            }
            Err(err) => sink.error = Some(err),
        }
        sink
    }

    fn fail(&mut self, err: io::Error) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.path);
        }
        self.error = Some(err);
    }

    fn write(&mut self, slices: &[IoSlice<'_>]) {
        let Some(file) = self.file.as_mut() else {
            return;
        };
        match write_all_vectored(file, slices) {
            Ok(()) => self.written += slices.iter().map(|s| s.len() as u64).sum::<u64>(),
            Err(err) => self.fail(err),
        }
    }

    fn finish(&mut self) {
        if let Some(file) = self.file.as_mut() {
            if self.reuse {
                if let Err(err) = file.set_len(self.written) {
                    self.fail(err);
                    return;
                }
            }
            if self.fsync {
                // fdatasync: the data and the size, what reading the file back needs; the
                // name is made durable by its folder's fsync, the caller's business.
                if let Err(err) = file.sync_data() {
                    self.fail(err);
                    return;
                }
            }
            self.keep = true;
        }
    }
}

impl Drop for FileSink {
    fn drop(&mut self) {
        if !self.keep && self.file.take().is_some() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// `write_vectored` until every slice is written (a file may take part of a vector).
fn write_all_vectored(file: &mut File, slices: &[IoSlice<'_>]) -> io::Result<()> {
    let mut index = 0;
    let mut offset = 0;
    while index < slices.len() {
        let first = IoSlice::new(&slices[index][offset..]);
        let batch: Vec<IoSlice<'_>> = std::iter::once(first)
            .chain(slices[index + 1..].iter().copied())
            .take(crate::step::MAX_IOVECS)
            .collect();
        let mut n = match file.write_vectored(&batch) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        while n > 0 {
            let left = slices[index].len() - offset;
            if n >= left {
                n -= left;
                index += 1;
                offset = 0;
            } else {
                offset += n;
                n = 0;
            }
        }
        while index < slices.len() && slices[index].len() == offset {
            index += 1;
            offset = 0;
        }
    }
    Ok(())
}

enum Kind {
    Discard,
    Memory(Vec<u8>),
    File(FileSink),
}

/// The destination of one dataset.
pub struct DatasetSink {
    kind: Kind,
    size: u64,
    head: Vec<u8>,
    head_limit: usize,
}

impl DatasetSink {
    fn new(kind: Kind, head_limit: usize) -> Self {
        DatasetSink {
            kind,
            size: 0,
            head: Vec::new(),
            head_limit,
        }
    }

    /// Count the bytes and drop them, keeping the first `head_limit`.
    pub fn discard(head_limit: usize) -> Self {
        Self::new(Kind::Discard, head_limit)
    }

    /// Keep the dataset in memory.
    pub fn memory(head_limit: usize) -> Self {
        Self::new(Kind::Memory(Vec::new()), head_limit)
    }

    /// Create `path` (it must not exist; with `reuse`, overwrite the file there, cut to what
    /// was written at the end), write `header`, then the dataset; `fsync` makes
    /// [`DatasetSink::finish`] wait until the file is on disk.
    pub fn file(path: PathBuf, header: &[u8], fsync: bool, reuse: bool, head_limit: usize) -> Self {
        Self::new(
            Kind::File(FileSink::create(path, header, fsync, reuse)),
            head_limit,
        )
    }

    /// Take the pieces of `buf` at `pieces`, in order.
    pub fn write(&mut self, buf: &[u8], pieces: &[Range<usize>]) {
        for range in pieces {
            self.size += range.len() as u64;
            if self.head.len() < self.head_limit {
                let take = (self.head_limit - self.head.len()).min(range.len());
                self.head
                    .extend_from_slice(&buf[range.start..range.start + take]);
            }
        }
        match &mut self.kind {
            Kind::Discard => {}
            Kind::Memory(data) => {
                for range in pieces {
                    data.extend_from_slice(&buf[range.clone()]);
                }
            }
            Kind::File(file) => {
                let slices: Vec<IoSlice<'_>> = pieces
                    .iter()
                    .filter(|r| !r.is_empty())
                    .map(|r| IoSlice::new(&buf[r.clone()]))
                    .collect();
                file.write(&slices);
            }
        }
    }

    /// The first bytes of the dataset received so far, up to the limit asked for.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// Dataset bytes in a file sink's file so far; None for other sinks and for a file that
    /// could not be written (it is gone).
    pub fn stored(&self) -> Option<u64> {
        match &self.kind {
            Kind::File(file) if file.file.is_some() => Some(file.written - file.header),
            _ => None,
        }
    }

    /// The dataset is complete: make a file durable if asked, and say what came of it.
    pub fn finish(mut self) -> Finished {
        let mut finished = Finished {
            size: self.size,
            head: std::mem::take(&mut self.head),
            data: None,
            error: None,
        };
        match &mut self.kind {
            Kind::Discard => {}
            Kind::Memory(data) => finished.data = Some(std::mem::take(data)),
            Kind::File(file) => {
                file.finish();
                finished.error = file.error.take();
            }
        }
        finished
    }
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)] // one piece is a case worth testing
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("fastpush-sink-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn file_gets_header_then_pieces() {
        let dir = temp_dir("ok");
        let path = dir.join("a.part");
        let buf: Vec<u8> = (0..100u8).collect();
        let mut t = DatasetSink::file(path.clone(), b"HEAD", true, false, 5);
        assert_eq!(t.stored(), Some(0));
        t.write(&buf, &[0..10, 10..10, 50..100]);
        t.write(&buf, &[20..21]);
        assert_eq!(t.stored(), Some(61));
        let done = t.finish();
        assert!(done.error.is_none());
        assert_eq!(done.size, 61);
        assert_eq!(done.head, vec![0, 1, 2, 3, 4]);
        let mut expected = b"HEAD".to_vec();
        expected.extend(0..10u8);
        expected.extend(50..100u8);
        expected.push(20);
        assert_eq!(fs::read(&path).unwrap(), expected);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unwritable_place_is_recorded_and_the_bytes_still_counted() {
        let dir = temp_dir("missing");
        let path = dir.join("no-such-folder").join("a.part");
        let mut t = DatasetSink::file(path.clone(), b"HEAD", false, false, 0);
        t.write(&[1, 2, 3], &[0..3]);
        assert_eq!(t.stored(), None);
        let done = t.finish();
        assert_eq!(done.size, 3);
        assert_eq!(done.error.map(|e| e.kind()), Some(io::ErrorKind::NotFound));
        assert!(!path.exists());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn existing_name_is_never_written_into() {
        let dir = temp_dir("exists");
        let path = dir.join("a.part");
        fs::write(&path, b"theirs").unwrap();
        let t = DatasetSink::file(path.clone(), b"HEAD", false, false, 0);
        let done = t.finish();
        assert_eq!(
            done.error.map(|e| e.kind()),
            Some(io::ErrorKind::AlreadyExists)
        );
        assert_eq!(fs::read(&path).unwrap(), b"theirs");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn reused_file_is_overwritten_and_cut_to_what_was_written() {
        let dir = temp_dir("reuse");
        let path = dir.join("a.part");
        fs::write(&path, [7u8; 1000]).unwrap();
        let mut t = DatasetSink::file(path.clone(), b"HEAD", true, true, 0);
        t.write(&[1, 2, 3], &[0..3]);
        let done = t.finish();
        assert!(done.error.is_none());
        assert_eq!(fs::read(&path).unwrap(), b"HEAD\x01\x02\x03");
        // Longer than the file it reuses: it grows.
        let mut t = DatasetSink::file(path.clone(), b"H", false, true, 0);
        t.write(&[5; 2000], &[0..2000]);
        assert!(t.finish().error.is_none());
        assert_eq!(fs::read(&path).unwrap(), [&b"H"[..], &[5; 2000]].concat());
        // Gone meanwhile: made anew.
        fs::remove_file(&path).unwrap();
        let mut t = DatasetSink::file(path.clone(), b"H", false, true, 0);
        t.write(&[6; 4], &[0..4]);
        assert!(t.finish().error.is_none());
        assert_eq!(fs::read(&path).unwrap(), b"H\x06\x06\x06\x06");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn dropped_before_finish_leaves_no_file() {
        let dir = temp_dir("dropped");
        let path = dir.join("a.part");
        let mut t = DatasetSink::file(path.clone(), b"HEAD", false, false, 0);
        t.write(&[9; 10], &[0..10]);
        assert!(path.exists());
        drop(t);
        assert!(!path.exists());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn full_disk_removes_the_partial_file() {
        // /dev/full answers every write with ENOSPC: a full disk, for the file just opened.
        let dir = temp_dir("full");
        let path = dir.join("a.part");
        let mut sink = FileSink {
            path: path.clone(),
            file: Some(OpenOptions::new().write(true).open("/dev/full").unwrap()),
            fsync: false,
            error: None,
            keep: false,
            written: 0,
            reuse: false,
            header: 0,
        };
        fs::write(&path, b"partial").unwrap();
        sink.write(&[IoSlice::new(b"data")]);
        assert_eq!(
            sink.error.as_ref().and_then(io::Error::raw_os_error),
            Some(libc::ENOSPC)
        );
        assert!(!path.exists());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn memory_and_discard() {
        let buf: Vec<u8> = (0..10u8).collect();
        let mut m = DatasetSink::memory(0);
        m.write(&buf, &[2..4, 8..10]);
        assert_eq!(m.stored(), None);
        assert_eq!(m.finish().data.unwrap(), vec![2, 3, 8, 9]);
        let mut d = DatasetSink::discard(3);
        d.write(&buf, &[0..2, 5..10]);
        let done = d.finish();
        assert_eq!(
            (done.size, done.head, done.data.is_none()),
            (7, vec![0, 1, 5], true)
        );
    }
}
