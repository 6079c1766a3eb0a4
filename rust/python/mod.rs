//! The PyO3 module `fastpush._core`, the only part of the crate that knows Python: the client
//! and server transports ([`client`], [`server`]) and the module's functions ([`functions`]) over
//! the plain-Rust core, with what they share — argument conversion ([`args`]), running steps
//! with the GIL released ([`gil`]), one operation at a time on a connection ([`connection`]) —
//! and the one mapping of the crate's errors to Python exceptions ([`error`]).

mod args;
mod client;
mod connection;
mod edits;
mod error;
mod functions;
mod gil;
mod live;
mod server;

#[pyo3::pymodule(gil_used = false)]
pub mod _core {
    use pyo3::prelude::*;

    #[pymodule_export]
    use super::client::TlsConfig;
    #[pymodule_export]
    use super::client::Transport;
    #[pymodule_export]
    use super::edits::EditPlan;
    #[pymodule_export]
    use super::functions::convert_dataset_py;
    #[pymodule_export]
    use super::functions::frame_message_py;
    #[pymodule_export]
    use super::functions::rename_new_py;
    #[pymodule_export]
    use super::functions::top_uids_py;
    #[pymodule_export]
    use super::live::LiveDataset;
    #[pymodule_export]
    use super::server::ServerTlsConfig;
    #[pymodule_export]
    use super::server::ServerTransport;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", crate::VERSION)?;
        m.add("BUILD_PROFILE", crate::BUILD_PROFILE)?;
        m.add("UNLIMITED_FRAGMENT", crate::UNLIMITED_FRAGMENT)?;
        Ok(())
    }
}
