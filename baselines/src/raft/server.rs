//! A node's TCP server: peers' Raft RPCs and clients' requests on the
//! same port. On each connection the Raft RPCs are served one at a time,
//! in arrival order (an AppendEntries stream must not be reordered);
//! client requests are served concurrently, at most
//! [`SERVER_IN_FLIGHT_PER_CONN_MAX`] at once per connection.

use std::sync::{Arc, Mutex};

use openraft::error::{ClientWriteError, RaftError};
use openraft::Raft;
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};

use super::limits::{
    APPEND_REQUEST_BYTES_MAX, APPEND_REQUEST_PAYLOADS_MAX, READ_BYTES_MAX, READ_ENTRIES_MAX,
    SERVER_IN_FLIGHT_PER_CONN_MAX,
};
use super::rpc::{
    decode_body, encode_frame, read_frame, set_frame_id, AppendRefused, NodeStatus, ReadReply,
    Request, Response,
};
use super::state_machine::LogData;
use super::types::{AppendRequest, Applied, TypeConfig};

/// What a node's server needs.
#[derive(Clone)]
pub struct ServerCtx {
    pub raft: Raft<TypeConfig>,
    pub data: Arc<Mutex<LogData>>,
}

/// Accepts connections until the listener fails.
pub async fn serve(listener: TcpListener, ctx: ServerCtx) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let ctx = ctx.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_conn(stream, ctx).await {
                log::debug!("connection: {e}");
            }
        });
    }
}

async fn serve_conn(stream: TcpStream, ctx: ServerCtx) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (rd, wr) = stream.into_split();
    let (out, mut out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer = tokio::spawn(async move {
        let mut w = BufWriter::with_capacity(256 << 10, wr);
        while let Some(frame) = out_rx.recv().await {
            w.write_all(&frame).await?;
            while let Ok(frame) = out_rx.try_recv() {
                w.write_all(&frame).await?;
            }
            w.flush().await?;
        }
        Ok::<(), std::io::Error>(())
    });

    // Raft RPCs of this connection, in order.
    let (raft_tx, mut raft_rx) = mpsc::unbounded_channel::<(u64, Request)>();
    let raft_out = out.clone();
    let raft_ctx = ctx.clone();
    let raft_task = tokio::spawn(async move {
        while let Some((id, req)) = raft_rx.recv().await {
            let resp = handle(&raft_ctx, req).await;
            send(&raft_out, id, &resp);
        }
    });

    let permits = Arc::new(Semaphore::new(SERVER_IN_FLIGHT_PER_CONN_MAX));
    let mut r = BufReader::with_capacity(256 << 10, rd);
    let result = loop {
        let (id, body) = match read_frame(&mut r).await {
            Ok(Some(f)) => f,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        let req = match decode_body::<Request>(&body) {
            Ok(req) => req,
            Err(e) => {
                send(&out, id, &Response::Undecodable(e.to_string()));
                continue;
            }
        };
        match req {
            Request::AppendEntries(_) | Request::Vote(_) | Request::InstallSnapshot(_) => {
                if raft_tx.send((id, req)).is_err() {
                    break Ok(());
                }
            }
            _ => {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break Ok(());
                };
                let ctx = ctx.clone();
                let out = out.clone();
                tokio::spawn(async move {
                    let resp = handle(&ctx, req).await;
                    send(&out, id, &resp);
                    drop(permit);
                });
            }
        }
    };
    drop(raft_tx);
    let _ = raft_task.await;
    drop(out);
    let _ = writer.await;
    result
}

fn send(out: &mpsc::UnboundedSender<Vec<u8>>, id: u64, resp: &Response) {
    match encode_frame(resp) {
        Ok(mut frame) => {
            set_frame_id(&mut frame, id);
            let _ = out.send(frame);
        }
        Err(e) => log::error!("encode answer: {e}"),
    }
}

async fn handle(ctx: &ServerCtx, req: Request) -> Response {
    match req {
        Request::AppendEntries(rpc) => Response::AppendEntries(ctx.raft.append_entries(rpc).await),
        Request::Vote(rpc) => Response::Vote(ctx.raft.vote(rpc).await),
        Request::InstallSnapshot(rpc) => {
            Response::InstallSnapshot(ctx.raft.install_snapshot(rpc).await)
        }
        Request::Append(req) => Response::Append(append(ctx, req).await),
        Request::Status => Response::Status(status(ctx)),
        Request::Read { from, max } => Response::Read(read(ctx, from, max)),
    }
}

async fn append(ctx: &ServerCtx, req: AppendRequest) -> Result<u64, AppendRefused> {
    if req.payloads.is_empty() || req.payloads.len() > APPEND_REQUEST_PAYLOADS_MAX {
        return Err(AppendRefused::Invalid(format!(
            "{} payloads (1 ..= {APPEND_REQUEST_PAYLOADS_MAX})",
            req.payloads.len()
        )));
    }
    if req.payload_bytes() > APPEND_REQUEST_BYTES_MAX {
        return Err(AppendRefused::Invalid(format!(
            "{} payload bytes (at most {APPEND_REQUEST_BYTES_MAX})",
            req.payload_bytes()
        )));
    }
    match ctx.raft.client_write(req).await {
        Ok(resp) => match resp.data {
            Applied::Appended { first_position } => Ok(first_position),
            Applied::Expired => Err(AppendRefused::Expired),
            Applied::Nothing => Err(AppendRefused::Other("applied as nothing".into())),
        },
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(AppendRefused::NotLeader {
                leader_id: f.leader_id,
                leader_addr: f.leader_node.map(|n| n.addr),
            })
        }
        Err(e) => Err(AppendRefused::Other(e.to_string())),
    }
}

fn status(ctx: &ServerCtx) -> NodeStatus {
    let m = ctx.raft.metrics().borrow().clone();
    let positions = super::state_machine::lock_data(&ctx.data).next_position;
    NodeStatus {
        id: m.id,
        state: format!("{:?}", m.state),
        term: m.current_term,
        leader: m.current_leader,
        last_log_index: m.last_log_index,
        last_applied_index: m.last_applied.map(|l| l.index),
        snapshot_index: m.snapshot.map(|l| l.index),
        purged_index: m.purged.map(|l| l.index),
        positions,
        voters: m.membership_config.membership().voter_ids().collect(),
    }
}

fn read(ctx: &ServerCtx, from: u64, max: u32) -> Result<ReadReply, String> {
    let d = super::state_machine::lock_data(&ctx.data);
    let max = (max as usize).min(READ_ENTRIES_MAX);
    match d.read(from, max, READ_BYTES_MAX) {
        Some(payloads) => Ok(ReadReply {
            from,
            payloads,
            positions: d.next_position,
        }),
        None => Err(format!(
            "position {from} is no longer kept (oldest kept: {})",
            d.tail_start
        )),
    }
}
