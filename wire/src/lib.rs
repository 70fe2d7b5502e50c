//! trilog-wire: the bytes that cross a socket or land on disk.
//!
//! Guarantees:
//! - every frame carries a magic, a version, a kind, its payload length, a
//!   request id and a crc32c over header and payload ([`frame`](mod@frame));
//! - payloads are rkyv archives, read in place after validation
//!   ([`codec::access`]), never trusted before that;
//! - one sans-IO [`decoder::FrameDecoder`] reassembles frames from a stream
//!   for every reader: header checked before a payload byte is accepted, crc
//!   before a frame is returned, payload buffers grown with what arrives;
//! - every decoder of untrusted bytes returns a typed [`WireError`] for a
//!   truncated, oversized, corrupt or unknown input and never panics;
//! - entries travel and rest in one record layout ([`record`]), so a node can
//!   send what it read from disk without re-encoding each entry.
//!
//! No IO lives here: the node and the client own their sockets and files.
//! The byte layouts are described in `docs/wire.md`.

pub mod borrowed;
pub mod check;
pub mod codec;
pub mod crc;
pub mod decoder;
pub mod error;
pub mod frame;
pub mod limits;
pub mod message;
pub mod meta;
pub mod record;

pub use borrowed::{
    encode_append, read_response_frame, AppendHead, EncodedAppend, ReadResponseHead,
};
pub use codec::{
    access, decode, decode_payload, encode, encode_payload, frame, Message, WireMessage,
};
pub use decoder::{Frame, FrameDecoder};
pub use error::WireError;
pub use frame::{FrameHeader, Kind, FRAME_HEADER_BYTES};
