//! Reading whole frames from a tokio stream: a thin loop around the one
//! decoder of `trilog_wire::decoder`, which checks the header before a
//! payload byte is accepted and the crc before a frame is returned. The
//! metadata server, [`crate::EmbeddedMeta`] and the client's connections
//! to log nodes read with it.

use tokio::io::{AsyncRead, AsyncReadExt};
use trilog_wire::{decode_payload, Frame, FrameDecoder, Message, WireError};

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the stream between two frames.
    #[error("connection closed")]
    Closed,
    /// Includes an end of stream in the middle of a frame
    /// (`UnexpectedEof`).
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad frame: {0}")]
    Wire(#[from] WireError),
}

/// Reads one frame. Reads never go past its end, so the stream is left at
/// the next frame's first byte (the decoder needs no state between
/// frames). Dropping the future midway leaves the stream out of step:
/// close it.
pub async fn read_frame<R: AsyncRead + Unpin>(stream: &mut R) -> Result<Frame, FrameError> {
    let mut decoder = FrameDecoder::new();
    loop {
        let n = match stream.read(decoder.read_buf()).await {
            Ok(0) if decoder.in_frame() => {
                return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()))
            }
            Ok(0) => return Err(FrameError::Closed),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(FrameError::Io(e)),
        };
        if let Some(frame) = decoder.advance(n)? {
            return Ok(frame);
        }
    }
}

/// Reads one frame and decodes its payload: the request id and the message.
pub async fn read_message<R: AsyncRead + Unpin>(
    stream: &mut R,
) -> Result<(u64, Message), FrameError> {
    let frame = read_frame(stream).await?;
    let message = decode_payload(frame.header.kind, &frame.payload)?;
    Ok((frame.header.request_id, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use trilog_wire::message::Seal;
    use trilog_wire::{encode, Kind};

    fn seal(len: u64) -> Seal {
        Seal {
            log_id: 1,
            segment: 2,
            epoch: 3,
            len,
        }
    }

    #[tokio::test]
    async fn frames_back_to_back_then_a_clean_close() {
        let mut bytes = encode(5, &seal(10));
        bytes.extend_from_slice(&encode(6, &seal(11)));
        let mut stream = &bytes[..];
        assert_eq!(
            read_message(&mut stream).await.expect("first"),
            (5, Message::Seal(seal(10)))
        );
        let second = read_frame(&mut stream).await.expect("second");
        assert_eq!(
            (second.header.kind, second.header.request_id),
            (Kind::Seal, 6)
        );
        assert!(matches!(
            read_frame(&mut stream).await,
            Err(FrameError::Closed)
        ));
    }

    #[tokio::test]
    async fn an_end_inside_a_frame_is_an_error_not_a_close() {
        let bytes = encode(5, &seal(10));
        for cut in [1, 23, 24, bytes.len() - 1] {
            let mut stream = &bytes[..cut];
            match read_frame(&mut stream).await {
                Err(FrameError::Io(e)) => {
                    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "cut {cut}")
                }
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn garbage_is_a_wire_error() {
        let mut stream = &[0x42u8; 64][..];
        assert!(matches!(
            read_frame(&mut stream).await,
            Err(FrameError::Wire(WireError::BadMagic { .. }))
        ));
    }
}
