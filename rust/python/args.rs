//! Converting the arguments Python passes: sizes, timeouts, dataset sources (a borrowed
//! `bytes` or a mapped file region) and transfer syntax conversions.

use std::path::PathBuf;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

use crate::convert::{self, Syntax};
use crate::error::{Error, Result};
use crate::send::MappedRegion;

/// A dataset source converted from Python: a borrowed `bytes`, or a mapped file region.
pub(crate) enum Dataset<'py> {
    Bytes(Bound<'py, PyBytes>),
    Region(MappedRegion),
}

impl Dataset<'_> {
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Dataset::Bytes(b) => b.as_bytes(),
            Dataset::Region(r) => r.as_slice(),
        }
    }

    pub(crate) fn is_mapped(&self) -> bool {
        matches!(self, Dataset::Region(_))
    }
}

/// Convert `bytes | (path, offset, length) | None`. The file is opened with the GIL released.
pub(crate) fn dataset<'py>(
    py: Python<'py>,
    obj: Option<&Bound<'py, PyAny>>,
) -> PyResult<Option<Dataset<'py>>> {
    let Some(obj) = obj else { return Ok(None) };
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Some(Dataset::Bytes(b.clone())));
    }
    if let Ok(t) = obj.cast::<PyTuple>() {
        let (path, offset, length): (PathBuf, i128, i128) = t.extract()?;
        let (Ok(offset), Ok(length)) = (u64::try_from(offset), u64::try_from(length)) else {
            return Err(Error::InvalidArgument(format!(
                "file region offset {offset} and length {length} must be non-negative"
            ))
            .into());
        };
        let region = py.detach(|| MappedRegion::open(&path, offset, length))?;
        return Ok(Some(Dataset::Region(region)));
    }
    Err(pyo3::exceptions::PyTypeError::new_err(format!(
        "dataset must be bytes, a (path, offset, length) tuple or None, not {}",
        obj.get_type().name()?
    )))
}

/// `(from_uid, to_uid)` to a conversion; equal syntaxes re-encode the dataset in its own syntax
/// (odd-length values padded: see [`convert`]).
pub(crate) fn conversion(convert: Option<(String, String)>) -> Result<Option<(Syntax, Syntax)>> {
    let Some((from, to)) = convert else {
        return Ok(None);
    };
    if from == to && Syntax::from_uid(&from).is_none() {
        // A compressed dataset re-encoded in its own syntax (to be edited): pixel data copied.
        return Ok(Some((Syntax::Encapsulated, Syntax::Encapsulated)));
    }
    let syntax = |uid: &str| {
        Syntax::from_uid(uid).ok_or_else(|| {
            Error::Convert(format!(
                "{uid} is not an uncompressed transfer syntax the converter handles"
            ))
        })
    };
    Ok(Some((syntax(&from)?, syntax(&to)?)))
}

/// The dataset bytes a conversion needs, checked whole (GIL released) before anything is sent.
pub(crate) fn checked<'a>(
    py: Python<'_>,
    ds: Option<&'a [u8]>,
    (from, to): (Syntax, Syntax),
) -> Result<&'a [u8]> {
    let ds = ds.ok_or_else(|| Error::InvalidArgument("convert needs a dataset".into()))?;
    py.detach(|| convert::check(ds, from, to))?;
    Ok(ds)
}

pub(crate) fn max_pdu(value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| Error::InvalidArgument(format!("max_pdu {value} is negative")))
}

pub(crate) fn timeout_arg(value: Option<f64>) -> Result<Option<Duration>> {
    match value {
        None => Ok(None),
        Some(t) if t.is_finite() && t >= 0.0 => Ok(Some(Duration::from_secs_f64(t))),
        Some(t) => Err(Error::InvalidArgument(format!(
            "timeout must be None or a finite number of seconds >= 0, not {t}"
        ))),
    }
}

/// Our maximum PDU length as a limit (`0`: none).
pub(crate) fn limit(max_pdu_value: i64) -> Result<u64> {
    Ok(match max_pdu(max_pdu_value)? {
        0 => u64::from(u32::MAX),
        n => n,
    })
}
