//! Reading and writing whole frames on a glommio (futures-io) stream.

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use rkyv::util::AlignedVec;
use trilog_wire::{FrameHeader, WireError, FRAME_HEADER_BYTES};

/// Why a frame could not be read from a peer.
#[derive(Debug, thiserror::Error)]
pub enum FrameReadError {
    #[error("peer closed the connection")]
    Closed,
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad frame: {0}")]
    Wire(#[from] WireError),
}

/// One frame as read: its checked header and its payload, 16-byte aligned so
/// that rkyv can read it in place.
#[derive(Debug)]
pub struct Frame {
    pub header: FrameHeader,
    pub payload: AlignedVec<16>,
}

/// Reads one frame. The header is checked (magic, version, kind, size limit)
/// before any payload byte is read, so an oversized frame costs nothing; the
/// crc is checked before the frame is returned.
pub async fn read_frame<R: AsyncRead + Unpin>(stream: &mut R) -> Result<Frame, FrameReadError> {
    let mut head = [0u8; FRAME_HEADER_BYTES];
    match stream.read_exact(&mut head).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(FrameReadError::Closed)
        }
        Err(e) => return Err(FrameReadError::Io(e)),
    }
    let header = FrameHeader::parse(&head)?;
    let mut payload = AlignedVec::<16>::with_capacity(header.payload_len as usize);
    payload.resize(header.payload_len as usize, 0);
    stream.read_exact(&mut payload).await?;
    header.verify(&payload)?;
    Ok(Frame { header, payload })
}

/// Writes whole encoded frames and flushes once.
pub async fn write_frames<W: AsyncWrite + Unpin>(
    stream: &mut W,
    frames: &[Vec<u8>],
) -> std::io::Result<()> {
    for f in frames {
        stream.write_all(f).await?;
    }
    stream.flush().await
}
