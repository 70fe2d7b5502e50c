//! One client connection: a handshake, then a loop that reads frames and
//! hands each to its handler, and a writer task that sends what the
//! shard queues in its outbox. A malformed or oversized frame, or one of a kind a
//! client must not send, closes this connection with a logged reason and
//! touches nothing else.
//!
//! What one connection can make the node hold is bounded: appends in
//! flight (`CONN_IN_FLIGHT_BYTES_MAX`), reads in flight
//! (`CONN_READ_BYTES_IN_FLIGHT_MAX`, at each read's `max_bytes`), answers
//! not yet written (`CONN_OUTBOX_BYTES_MAX`: no request is read while the
//! outbox holds more), and a frame being received (its buffer grows with
//! the bytes that arrive, not with what its header announces, and it must
//! be whole `FRAME_WHOLE_MS` after its first bytes). A peer that stops
//! reading is cut off once a write makes no progress for
//! `CONN_WRITE_STALL_MS`; one that never says Hello, after
//! `HANDSHAKE_TIMEOUT_MS`; one that sends nothing and is owed nothing,
//! after the node's idle period (`idle_connection_secs`).
//!
//! When the node drains (`crate::server::drain`), a connection stops
//! reading requests wherever it is (a frame half read is dropped: nothing
//! of it was staged), waits until every append it handed the shard is
//! answered (made durable, or refused), and closes once those answers are
//! sent.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt, FutureExt};
use trilog_protocol::access::Role;
use trilog_protocol::shard::{bad_request, forbidden, ConnId, SegmentKey};
use trilog_wire::limits::READ_BYTES_MAX;
use trilog_wire::message::HelloOk;
use trilog_wire::{decode_payload, Kind, Message};

use crate::framing::{read_frame, read_frame_within_idle, Frame, FrameReadError};
use crate::limits::{
    CONN_IN_FLIGHT_BYTES_MAX, CONN_OUTBOX_BYTES_MAX, CONN_READ_BYTES_IN_FLIGHT_MAX,
    CONN_WRITE_STALL_MS, FRAME_WHOLE_MS, HANDSHAKE_TIMEOUT_MS,
};
use crate::metrics::CloseReason;
use crate::runtime::ShardRuntime;
use crate::server::budget::Budget;
use crate::server::conns::Held;
use crate::server::handlers;
use crate::server::outbox::Outbox;
use crate::server::shard::Shard;

const NO_SEGMENT: SegmentKey = SegmentKey {
    log_id: 0,
    segment: 0,
};

/// Serves one accepted connection (from `peer`) until it closes. Reading
/// and writing run side by side in this one task; when reading ends, the
/// outbox closes and the writer sends what is left, then ends too.
pub async fn serve<R: ShardRuntime, S: AsyncRead + AsyncWrite + Unpin>(
    shard: Rc<Shard<R>>,
    stream: S,
    peer: Option<SocketAddr>,
    role: Option<Role>,
) {
    let (mut reader, writer) = futures_lite::io::split(stream);
    let outbox = Rc::new(Outbox::default());
    let (conn, _) = shard.open_conn(outbox.clone());
    let reading = async {
        let serving = async {
            match handshake(&shard, &mut reader, &outbox).await {
                Ok(()) => read_loop(&shard, &mut reader, conn, &outbox, peer, role).await,
                Err(why) => {
                    tracing::warn!("connection from {peer:?} closed in handshake: {why}");
                    CloseReason::Handshake
                }
            }
        };
        let draining = async {
            shard.drained().await;
            CloseReason::Drain
        };
        let why = serving.or(draining).await;
        if why == CloseReason::Drain {
            if let Some(c) = shard.conn(conn) {
                c.appends_answered().await;
            }
        }
        shard.close_conn(conn);
        outbox.close();
        why
    };
    let stall = Duration::from_millis(CONN_WRITE_STALL_MS);
    let writing = write_loop(writer, outbox.clone(), || shard.rt.sleep(stall), peer);
    let (why, stalled) = futures_lite::future::zip(reading, writing).await;
    // A stalled writer closes the outbox, which the reader sees as a close.
    shard
        .metrics
        .connection_closed(if stalled { CloseReason::Stalled } else { why });
}

async fn handshake<R: ShardRuntime, Rd: AsyncRead + Unpin>(
    shard: &Shard<R>,
    reader: &mut Rd,
    outbox: &Outbox,
) -> Result<(), String> {
    let sleep = shard.rt.sleep(Duration::from_millis(HANDSHAKE_TIMEOUT_MS));
    let timeout = async {
        sleep.await;
        Err(FrameReadError::Closed)
    };
    let frame = read_frame(reader)
        .or(timeout)
        .await
        .map_err(|e| e.to_string())?;
    match decode_payload(frame.header.kind, &frame.payload) {
        Ok(Message::Hello(_)) => {}
        Ok(other) => return Err(format!("first frame is {:?}, not Hello", other.kind())),
        Err(e) => return Err(e.to_string()),
    }
    let ok = HelloOk {
        node_id: shard.node_id,
        shard: shard.shard,
        shard_count: shard.shard_count(),
        shard_ports: shard.shard_ports.clone(),
    };
    outbox.push(trilog_wire::encode(frame.header.request_id, &ok));
    Ok(())
}

/// Writes what the outbox holds, batch by batch. A write that fails, or
/// that makes no progress for as long as `stall()` sleeps (the peer stopped
/// reading), closes the outbox, which ends the reading side too. True if
/// it ended for a stall.
async fn write_loop<W, F, S>(
    mut writer: W,
    outbox: Rc<Outbox>,
    stall: S,
    peer: Option<SocketAddr>,
) -> bool
where
    W: AsyncWrite + Unpin,
    F: std::future::Future<Output = ()>,
    S: Fn() -> F,
{
    let mut stalled = false;
    'batches: while let Some(frames) = outbox.take().await {
        for f in &frames {
            let write = async {
                writer
                    .write_all(f)
                    .await
                    .map_err(|e| (false, e.to_string()))
            };
            let timeout = async {
                stall().await;
                Err((
                    true,
                    format!(
                        "a write of {} bytes made no progress in {CONN_WRITE_STALL_MS} ms",
                        f.len()
                    ),
                ))
            };
            if let Err((stall, why)) = write.or(timeout).await {
                tracing::info!("connection from {peer:?}: {why}; closing it");
                stalled = stall;
                outbox.close();
                break 'batches;
            }
            outbox.wrote(f.len());
        }
        if writer.flush().await.is_err() {
            outbox.close();
            break;
        }
    }
    let _ = writer.close().await;
    stalled
}

async fn read_loop<R: ShardRuntime, Rd: AsyncRead + Unpin>(
    shard: &Rc<Shard<R>>,
    reader: &mut Rd,
    conn: ConnId,
    outbox: &Outbox,
    peer: Option<SocketAddr>,
    role: Option<Role>,
) -> CloseReason {
    let in_flight = Budget::new(CONN_IN_FLIGHT_BYTES_MAX);
    let reads = Budget::new(CONN_READ_BYTES_IN_FLIGHT_MAX);
    loop {
        // A client that does not read its answers waits here, in TCP.
        outbox.wait_unsent_below(CONN_OUTBOX_BYTES_MAX).await;
        let closed = async {
            outbox.closed().await;
            Err(FrameReadError::Closed)
        };
        let whole = || shard.rt.sleep(Duration::from_millis(FRAME_WHOLE_MS));
        // Idle: nothing asked for a whole period and nothing owed to the
        // peer (no answer unsent, no request unanswered, such as a parked
        // long-poll read). Such a connection holds a slot of the shard
        // for nothing; the client makes a new one when it needs one.
        let idle = async {
            let period = Duration::from_millis(shard.conn_idle_ms.get());
            loop {
                shard.rt.sleep(period).await;
                let owed = shard.conn(conn).is_some_and(|c| c.owes_answers());
                if !owed && outbox.unsent_bytes() == 0 {
                    return;
                }
            }
        };
        let frame = match read_frame_within_idle(reader, whole, idle).or(closed).await {
            Ok(f) => f,
            Err(FrameReadError::Closed) => return CloseReason::Peer,
            Err(FrameReadError::Idle) => {
                tracing::info!(
                    "connection from {peer:?}: idle for {} ms; closing it",
                    shard.conn_idle_ms.get()
                );
                return CloseReason::Idle;
            }
            Err(FrameReadError::Wire(e)) => {
                tracing::warn!("connection from {peer:?}: malformed frame ({e}); closing it");
                outbox.push(bad_request(NO_SEGMENT, 0, format!("malformed frame: {e}")).encode(0));
                return CloseReason::BadFrame;
            }
            Err(FrameReadError::Io(e)) => {
                tracing::info!("connection from {peer:?}: {e}");
                return if e.kind() == std::io::ErrorKind::TimedOut {
                    CloseReason::Slow
                } else {
                    CloseReason::Peer
                };
            }
        };
        if outbox.is_closed() {
            return CloseReason::Peer;
        }
        let kind = frame.header.kind;
        if let Some(role) = role.filter(|r| !r.may_send(kind)) {
            tracing::warn!(
                "connection from {peer:?}: refused {kind:?}: its certificate's role is {role}"
            );
            outbox.push(forbidden(role, kind).encode(frame.header.request_id));
            continue;
        }
        if let Err(why) = dispatch(shard, conn, &in_flight, &reads, frame).await {
            tracing::warn!("connection from {peer:?}: {why}; closing it");
            outbox.push(bad_request(NO_SEGMENT, 0, why).encode(0));
            return CloseReason::BadFrame;
        }
    }
}

/// Hands one frame to its handler. An error closes the connection.
async fn dispatch<R: ShardRuntime>(
    shard: &Rc<Shard<R>>,
    conn: ConnId,
    in_flight: &Rc<Budget>,
    reads: &Rc<Budget>,
    frame: Frame,
) -> Result<(), String> {
    let rid = frame.header.request_id;
    // The machine decides on the disk's mode as it is now.
    shard.sync_space();
    match frame.header.kind {
        Kind::Append => {
            // Back-pressure: wait for bytes to be acked before reading on.
            let bytes = u64::from(frame.header.payload_len);
            let permit = in_flight
                .acquire(bytes)
                .await
                .with(shard.requests.acquire(bytes).await);
            handlers::append(shard, conn, rid, frame, permit)?;
        }
        kind => match decode_payload(kind, &frame.payload).map_err(|e| e.to_string())? {
            Message::Watermark(w) => handlers::watermark(shard, &w),
            Message::Read(r) => {
                // Held before the machine sees it: an answer at once
                // (`deliver`) gives it back at once.
                let bytes = u64::from(r.max_bytes.min(READ_BYTES_MAX));
                let permit = reads
                    .acquire(bytes)
                    .await
                    .with(shard.requests.acquire(bytes).await);
                if let Some(c) = shard.conn(conn) {
                    c.hold_permit(rid, Held::Read, permit)?;
                }
                handlers::read(shard, conn, rid, &r)
            }
            Message::Fence(f) => handlers::fence(shard, conn, rid, &f),
            Message::Seal(s) => handlers::seal(shard, conn, rid, &s),
            Message::DeleteSegment(d) => handlers::delete(shard, conn, rid, &d),
            other => return Err(format!("a client may not send {:?}", other.kind())),
        },
    }
    Ok(())
}
