//! The module's functions: `frame_message` (the bytes `Transport.send_message` writes, for
//! tests and the pure-Python path's reference), `convert_dataset`, `top_uids` and `rename_new`.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::args::{checked, conversion, dataset, max_pdu, Dataset};
use crate::convert;
use crate::error::Error;
use crate::pdu::framing::{self, Fragments};
use crate::send::converted_fragment;

/// Frame one DIMSE message into P-DATA-TF PDUs, exactly as `Transport.send_message` writes them.
#[pyfunction]
#[pyo3(name = "frame_message", signature = (context_id, command, dataset, max_pdu, convert=None))]
pub fn frame_message_py<'py>(
    py: Python<'py>,
    context_id: i64,
    command: &Bound<'py, PyBytes>,
    dataset: Option<&Bound<'py, PyAny>>,
    max_pdu: i64,
    convert: Option<(String, String)>,
) -> PyResult<Bound<'py, PyBytes>> {
    let context_id = framing::context_id(context_id)?;
    let mut frag = framing::fragment_size(self::max_pdu(max_pdu)?)?;
    let conversion = conversion(convert)?;
    let source = self::dataset(py, dataset)?;
    let command = command.as_bytes();
    let mut ds = source.as_ref().map(Dataset::as_slice);
    let converted;
    if let Some((from, to)) = conversion {
        let whole = checked(py, ds, (from, to))?;
        converted = py
            .detach(|| convert::convert_to_vec(whole, from, to))
            .map_err(Error::from)?;
        ds = Some(&converted);
        frag = converted_fragment(frag);
    }
    let (_, total) = Fragments::new(command.len(), ds.map(<[u8]>::len), frag).totals();
    PyBytes::new_with(py, total, |out| {
        framing::frame_into(out, context_id, command, ds, frag);
        Ok(())
    })
}

/// Convert a whole dataset between uncompressed transfer syntaxes (tests and tools; sending
/// streams instead).
#[pyfunction]
#[pyo3(name = "convert_dataset")]
pub fn convert_dataset_py<'py>(
    py: Python<'py>,
    dataset: &Bound<'py, PyAny>,
    from_syntax: String,
    to_syntax: String,
) -> PyResult<Bound<'py, PyBytes>> {
    let source = self::dataset(py, Some(dataset))?.expect("a dataset was given");
    let data = source.as_slice();
    let (from, to) = conversion(Some((from_syntax, to_syntax)))?.expect("a conversion was given");
    let out = py
        .detach(|| convert::convert_to_vec(data, from, to))
        .map_err(Error::from)?;
    Ok(PyBytes::new(py, &out))
}

/// The top-level UIDs `wanted` at the start of a dataset in memory, as (tag, value) pairs, or
/// None when the plain walk cannot tell (`convert::head`). The GIL is kept: a walk of a head
/// costs less than handing it over.
#[pyfunction]
#[pyo3(name = "top_uids")]
pub fn top_uids_py(
    data: &Bound<'_, PyBytes>,
    pos: usize,
    wanted: Vec<u32>,
    implicit: bool,
    little: bool,
    strict: bool,
) -> Option<Vec<(u32, String)>> {
    convert::head::top_uids(data.as_bytes(), pos, &wanted, implicit, little, strict)
}

/// Rename `source` to `target` unless `target` exists (FileExistsError): the router's spool
/// moves a received file to its first queue name with it (`receive::rename_new`).
#[pyfunction]
#[pyo3(name = "rename_new")]
pub fn rename_new_py(py: Python<'_>, source: PathBuf, target: PathBuf) -> PyResult<()> {
    py.detach(|| crate::receive::rename_new(&source, &target))
        .map_err(|e| super::error::os_error(e, &target))
}
