//! Reading whole frames from a tokio stream.

use rkyv::util::AlignedVec;
use tokio::io::{AsyncRead, AsyncReadExt};
use trilog_wire::{decode_payload, FrameHeader, Message, WireError, FRAME_HEADER_BYTES};

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad frame: {0}")]
    Wire(#[from] WireError),
}

/// Reads one frame: the header is checked before the payload is read, the
/// crc before it is decoded. Returns the request id and the message.
pub async fn read_message<R: AsyncRead + Unpin>(r: &mut R) -> Result<(u64, Message), FrameError> {
    let mut head = [0u8; FRAME_HEADER_BYTES];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(FrameError::Io(e)),
    }
    let header = FrameHeader::parse(&head)?;
    let mut payload = AlignedVec::<16>::with_capacity(header.payload_len as usize);
    payload.resize(header.payload_len as usize, 0);
    r.read_exact(&mut payload).await?;
    header.verify(&payload)?;
    Ok((header.request_id, decode_payload(header.kind, &payload)?))
}
