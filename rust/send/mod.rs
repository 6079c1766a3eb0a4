//! The sending side: DIMSE messages written as P-DATA-TF PDUs straight from their sources —
//! [`MessageWriter`] for a dataset sent as it is, [`ConvertingWriter`] for one converted to the
//! accepted transfer syntax on the way — and the mapped file regions they read ([`source`]).
//! [`file`] writes an edited dataset to a file the same way (de-identifying file to file).
//! The storage SCP writes its responses with [`MessageWriter`] too; [`ResponseReader`] takes a
//! response in. Plain Rust over
//! [`crate::step`], [`crate::pdu`] and [`crate::convert`]; independent of `receive`.

pub mod converted;
pub mod file;
pub mod live;
pub mod message;
pub mod response;
pub mod source;

#[cfg(test)]
mod message_props;

pub use converted::{converted_fragment, ConvertingWriter};
pub use live::{LiveFile, LiveWriter};
pub use message::MessageWriter;
pub use response::ResponseReader;
pub use source::MappedRegion;
