//! The receiving side of an association (a storage SCP): the read buffer and its PDU/PDV parser
//! ([`inbound`]), the receive loop ([`receiver`]) that hands command sets back and streams each
//! dataset into a [`DatasetSink`] ([`sink`]), the A-ABORT a failed loop sends ([`abort`]), and
//! the move of a received file to its queue name ([`rename`]).
//! Plain Rust over [`crate::step`] and [`crate::pdu`]; independent of `send`.

pub mod abort;
pub mod inbound;
pub mod live;
pub mod receiver;
pub mod rename;
pub mod sink;

#[cfg(test)]
mod receiver_props;

pub use abort::abort_for;
pub use live::{End, Live};
pub use receiver::{Next, Receiver};
pub use rename::rename_new;
pub use sink::{DatasetSink, Finished};
