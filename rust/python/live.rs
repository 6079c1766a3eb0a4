//! `LiveDataset`: a dataset still being received, handed to Python by `receive_dataset` once it
//! passed its size threshold, for a `Transport` to forward while it arrives (`send_live`).

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;

use crate::receive::{End, Live};

/// A dataset being received into a file; see `_core.pyi`.
#[pyclass(frozen, module = "fastpush._core")]
pub struct LiveDataset {
    pub(crate) live: Arc<Live>,
    /// The file it is written into, opened for reading while it had its temporary name: the
    /// receiver may rename it or link it elsewhere meanwhile.
    pub(crate) file: File,
    /// Where the dataset starts in the file (after its header).
    pub(crate) base: u64,
    path: PathBuf,
}

impl LiveDataset {
    pub(crate) fn open(path: PathBuf, base: u64, live: Arc<Live>) -> std::io::Result<Self> {
        Ok(LiveDataset {
            file: File::open(&path)?,
            live,
            base,
            path,
        })
    }
}

#[pymethods]
impl LiveDataset {
    /// Dataset bytes in the file so far.
    #[getter]
    fn stored(&self) -> u64 {
        self.live.now().0
    }

    /// `None` while it arrives, then `True` (whole) or `False` (cut: it never will be).
    #[getter]
    fn whole(&self) -> Option<bool> {
        self.live.now().1.map(|end| end == End::Whole)
    }

    fn __repr__(&self) -> String {
        format!(
            "<fastpush._core.LiveDataset {} {} bytes>",
            self.path.display(),
            self.stored()
        )
    }
}
