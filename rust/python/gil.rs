//! Running the core's stepped operations from Python: each step with the GIL released
//! (`Python::detach`), `Python::check_signals` between steps, so Ctrl-C interrupts a long send
//! or receive and other Python threads keep running.

use pyo3::prelude::*;

use crate::error::Result;
use crate::step::Progress;

/// Run a stepped operation: each step with the GIL released, signals checked between steps.
pub(crate) fn drive(
    py: Python<'_>,
    mut step: impl FnMut() -> Result<Progress> + Send,
) -> PyResult<()> {
    drive_over(py, &mut (), |_| step(), |_, _| {})
}

/// `drive` for a step that works on `state`, which `between` then sees with the GIL held
/// after every step, a failed one too (the receive loop tells a dataset's progress to
/// Python: cut-through).
pub(crate) fn drive_over<'py, S: Send>(
    py: Python<'py>,
    state: &mut S,
    mut step: impl FnMut(&mut S) -> Result<Progress> + Send,
    mut between: impl FnMut(Python<'py>, &S),
) -> PyResult<()> {
    loop {
        let progress = py.detach(|| step(state));
        between(py, state);
        let progress = progress?;
        py.check_signals()?;
        if progress == Progress::Done {
            return Ok(());
        }
    }
}

/// Run a stepped operation that yields a value when done.
pub(crate) fn drive_to<T: Send>(
    py: Python<'_>,
    mut step: impl FnMut() -> Result<Option<T>> + Send,
) -> PyResult<T> {
    let mut out = None;
    drive(py, || {
        out = step()?;
        Ok(if out.is_some() {
            Progress::Done
        } else {
            Progress::Pending
        })
    })?;
    Ok(out.expect("done"))
}
