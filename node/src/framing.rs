//! Reading whole frames from a glommio (futures-io) stream: a thin loop
//! around the one decoder of `trilog_wire::decoder`, which checks the
//! header (magic, version, kind, size limit) before a payload byte is
//! accepted, so an oversized frame costs nothing, and the crc before the
//! frame is returned. The payload buffer grows with what arrives, so a
//! peer that announces a large frame and goes silent pins only what it sent.

use futures_lite::{AsyncRead, AsyncReadExt};
pub use trilog_wire::Frame;
use trilog_wire::{FrameDecoder, WireError};

/// Why a frame could not be read from a peer.
#[derive(Debug, thiserror::Error)]
pub enum FrameReadError {
    /// The peer closed the connection between two frames.
    #[error("peer closed the connection")]
    Closed,
    /// Includes an end of stream in the middle of a frame
    /// (`UnexpectedEof`).
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad frame: {0}")]
    Wire(#[from] WireError),
    /// No frame began before the idle future of
    /// [`read_frame_within_idle`] completed.
    #[error("idle")]
    Idle,
}

/// Reads one frame. Reads never go past its end, so the stream is left at
/// the next frame's first byte.
pub async fn read_frame<R: AsyncRead + Unpin>(stream: &mut R) -> Result<Frame, FrameReadError> {
    read_frame_within(stream, std::future::pending).await
}

/// [`read_frame`], where the frame must be whole before the timer that
/// `rest()` makes when its first bytes arrive expires: waiting for a frame
/// to begin is free (an idle connection), but a frame trickled in, or
/// announced and never sent, holds its buffer only until then
/// (`FrameReadError::Io` `TimedOut`).
pub async fn read_frame_within<R, T, F>(stream: &mut R, rest: F) -> Result<Frame, FrameReadError>
where
    R: AsyncRead + Unpin,
    T: std::future::Future<Output = ()>,
    F: FnOnce() -> T,
{
    read_frame_within_idle(stream, rest, std::future::pending()).await
}

/// [`read_frame_within`], giving up with [`FrameReadError::Idle`] if `idle`
/// completes before the frame's first bytes arrive (never after: a frame
/// begun is read whole or fails on its own timer, so the stream is never
/// left in the middle of one).
pub async fn read_frame_within_idle<R, T, F, I>(
    stream: &mut R,
    rest: F,
    idle: I,
) -> Result<Frame, FrameReadError>
where
    R: AsyncRead + Unpin,
    T: std::future::Future<Output = ()>,
    F: FnOnce() -> T,
    I: std::future::Future<Output = ()>,
{
    let mut decoder = FrameDecoder::new();
    let started = async { Some(stream.read(decoder.read_buf()).await) };
    let idled = async {
        idle.await;
        None
    };
    let Some(first) = futures_lite::future::or(started, idled).await else {
        return Err(FrameReadError::Idle);
    };
    let mut first = Some(first);
    // Started now, with the frame's first bytes (or its first error).
    let mut rest = std::pin::pin!(rest());
    loop {
        let read = match first.take() {
            Some(read) => read,
            None => {
                let read = async { Some(stream.read(decoder.read_buf()).await) };
                let expired = async {
                    rest.as_mut().await;
                    None
                };
                match futures_lite::future::or(read, expired).await {
                    Some(read) => read,
                    None => {
                        return Err(FrameReadError::Io(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "a frame begun was not whole in time",
                        )))
                    }
                }
            }
        };
        let n = match read {
            Ok(0) if decoder.in_frame() => {
                return Err(FrameReadError::Io(std::io::ErrorKind::UnexpectedEof.into()))
            }
            Ok(0) => return Err(FrameReadError::Closed),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(FrameReadError::Io(e)),
        };
        if let Some(frame) = decoder.advance(n)? {
            return Ok(frame);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trilog_wire::message::Seal;
    use trilog_wire::{encode, Kind};

    fn seal_frame(request_id: u64) -> Vec<u8> {
        encode(
            request_id,
            &Seal {
                log_id: 1,
                segment: 2,
                epoch: 3,
                len: 4,
            },
        )
    }

    #[test]
    fn frames_then_a_clean_close_then_a_cut_frame() {
        futures_lite::future::block_on(async {
            let mut bytes = seal_frame(8);
            bytes.extend_from_slice(&seal_frame(9));
            let mut stream = &bytes[..];
            for id in [8, 9] {
                let f = read_frame(&mut stream).await.expect("a frame");
                assert_eq!((f.header.kind, f.header.request_id), (Kind::Seal, id));
            }
            assert!(matches!(
                read_frame(&mut stream).await,
                Err(FrameReadError::Closed)
            ));
            let one = seal_frame(1);
            let mut cut = &one[..one.len() - 1];
            assert!(matches!(
                read_frame(&mut cut).await,
                Err(FrameReadError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof
            ));
            let mut garbage = &[0x42u8; 40][..];
            assert!(matches!(
                read_frame(&mut garbage).await,
                Err(FrameReadError::Wire(WireError::BadMagic { .. }))
            ));
        });
    }
}
