//! Every decision of the shard machine, one test each.

use trilog_wire::message::{
    shard_of, AppendAck, ErrorCode, ErrorMsg, Fence, FenceAck, Read, ReadResponse, Seal, SealAck,
    Watermark,
};
use trilog_wire::Message;

use super::*;
use crate::replica::Durable;

const C1: ConnId = ConnId(1);
const C2: ConnId = ConnId(2);

fn key(segment: u64) -> SegmentKey {
    SegmentKey { log_id: 7, segment }
}

/// A one-shard machine: every segment is its own.
fn machine() -> ShardMachine {
    ShardMachine::new(0, 1)
}

/// A machine with segment `key(0)` created and empty.
fn with_segment() -> ShardMachine {
    let mut m = machine();
    m.add_recovered(key(0), Replica::new());
    m
}

fn append_req(segment: u64, epoch: u64, first_offset: u64, count: u64) -> AppendRequest {
    AppendRequest {
        key: key(segment),
        epoch,
        first_seq: 100,
        first_offset,
        count,
        commit: 0,
    }
}

fn read_req(segment: u64, from: u64, limit: u64, wait_ms: u32) -> Read {
    Read {
        log_id: 7,
        segment,
        from_offset: from,
        limit,
        max_bytes: 4096,
        wait_ms,
    }
}

fn fence(segment: u64, epoch: u64) -> Fence {
    Fence {
        log_id: 7,
        segment,
        epoch,
    }
}

fn seal(segment: u64, epoch: u64, len: u64) -> Seal {
    Seal {
        log_id: 7,
        segment,
        epoch,
        len,
    }
}

/// The answers among `actions`, as (conn, request id, message).
fn sends(actions: &Actions) -> Vec<(ConnId, u64, Message)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                conn,
                request_id,
                message,
            } => Some((*conn, *request_id, message.clone())),
            _ => None,
        })
        .collect()
}

fn ack(len: u64) -> Message {
    Message::AppendAck(AppendAck {
        log_id: 7,
        segment: 0,
        durable_len: len,
    })
}

fn code_of(message: &Message) -> Option<(ErrorCode, u64)> {
    match message {
        Message::ErrorMsg(ErrorMsg { code, value, .. }) => Some((*code, *value)),
        _ => None,
    }
}

/// Appends `count` entries at `first_offset` of `key(0)` and checks that
/// they are staged whole.
fn staged(m: &mut ShardMachine, conn: ConnId, rid: u64, first_offset: u64, count: u64) -> Actions {
    let step = m.handle_append(conn, rid, append_req(0, 1, first_offset, count));
    assert_eq!(
        step.stage,
        Stage::Entries {
            skip: 0,
            end: first_offset + count
        }
    );
    assert!(step
        .actions
        .iter()
        .any(|a| *a == Action::Flush { key: key(0) }));
    step.actions
}

#[test]
fn first_append_creates_and_appends_wait_for_it_in_order() {
    let mut m = machine();
    let step = m.handle_append(C1, 1, append_req(0, 3, 0, 2));
    assert_eq!(step.stage, Stage::Park);
    assert_eq!(
        step.actions.iter().collect::<Vec<_>>(),
        [&Action::Create {
            key: key(0),
            first_seq: 100,
            epoch: 3
        }]
    );
    // A pipelined append waits too, even past offset 0: it is decided once
    // the segment exists, after the first.
    let step = m.handle_append(C1, 2, append_req(0, 3, 2, 2));
    assert_eq!(step.stage, Stage::Park);
    assert!(step.actions.is_empty(), "created once");
    let out = m.handle_created(key(0), Ok(()));
    assert_eq!(
        out.into_iter().collect::<Vec<_>>(),
        [
            Action::Reoffer {
                conn: C1,
                request_id: 1
            },
            Action::Reoffer {
                conn: C1,
                request_id: 2
            },
        ]
    );
    let _ = staged(&mut m, C1, 1, 0, 2);
    let _ = staged(&mut m, C1, 2, 2, 2);
    assert_eq!(m.owed_acks(key(0)), 2);
}

#[test]
fn append_past_zero_of_an_unknown_segment_is_a_gap() {
    let mut m = machine();
    let step = m.handle_append(C1, 4, append_req(0, 1, 3, 1));
    assert_eq!(step.stage, Stage::Nothing);
    let out = sends(&step.actions);
    assert_eq!(out.len(), 1);
    assert_eq!(code_of(&out[0].2), Some((ErrorCode::Gap, 0)));
    assert!(m.replica(key(0)).is_none(), "nothing created");
}

#[test]
fn failed_creation_answers_every_waiting_request_and_may_be_retried() {
    let mut m = machine();
    let _ = m.handle_append(C1, 1, append_req(0, 1, 0, 1));
    let _ = m.handle_fence(C2, 2, &fence(0, 2));
    let out = sends(&m.handle_created(key(0), Err("disk full".into())));
    assert_eq!(out.len(), 2);
    for (_, _, message) in &out {
        assert_eq!(code_of(message), Some((ErrorCode::Internal, 0)));
    }
    assert_eq!(out[0].0, C1);
    assert_eq!(out[1].0, C2);
    let step = m.handle_append(C1, 3, append_req(0, 1, 0, 1));
    assert_eq!(step.stage, Stage::Park);
    assert!(matches!(
        step.actions.iter().next(),
        Some(Action::Create { .. })
    ));
}

#[test]
fn an_ack_is_never_released_before_the_durable_length_covers_it() {
    let mut m = with_segment();
    let out = staged(&mut m, C1, 1, 0, 3);
    assert!(sends(&out).is_empty(), "nothing durable yet");
    let out = staged(&mut m, C2, 2, 3, 2);
    assert!(sends(&out).is_empty());
    // Durable up to 2: neither append is covered.
    assert!(sends(&m.handle_durable(key(0), 2)).is_empty());
    // Up to 3: exactly the first.
    assert_eq!(sends(&m.handle_durable(key(0), 3)), [(C1, 1, ack(3))]);
    assert_eq!(m.owed_acks(key(0)), 1);
    assert_eq!(sends(&m.handle_durable(key(0), 5)), [(C2, 2, ack(5))]);
    assert_eq!(m.owed_acks(key(0)), 0);
}

#[test]
fn a_resend_is_acked_at_once_when_durable_and_later_when_not() {
    let mut m = with_segment();
    let _ = staged(&mut m, C1, 1, 0, 4);
    let _ = m.handle_durable(key(0), 2);
    // [0, 2) held and durable: acked now, with what is durable.
    let step = m.handle_append(C1, 2, append_req(0, 1, 0, 2));
    assert_eq!(step.stage, Stage::Nothing);
    assert_eq!(sends(&step.actions), [(C1, 2, ack(2))]);
    // [0, 4) held, not all durable: owed.
    let step = m.handle_append(C1, 3, append_req(0, 1, 0, 4));
    assert_eq!(step.stage, Stage::Nothing);
    assert!(sends(&step.actions).is_empty());
    // Overlapping: only the new entries are staged.
    let step = m.handle_append(C1, 4, append_req(0, 1, 3, 3));
    assert_eq!(step.stage, Stage::Entries { skip: 1, end: 6 });
    let out = sends(&m.handle_durable(key(0), 6));
    assert_eq!(out, [(C1, 1, ack(6)), (C1, 3, ack(6)), (C1, 4, ack(6))]);
}

#[test]
fn refusals_leave_with_their_codes() {
    let mut m = with_segment();
    let _ = staged(&mut m, C1, 1, 0, 2);
    let step = m.handle_append(C1, 2, append_req(0, 1, 5, 1));
    assert_eq!(
        code_of(&sends(&step.actions)[0].2),
        Some((ErrorCode::Gap, 2))
    );
    let _ = m.handle_durable(key(0), 2);
    let _ = m.handle_fence(C2, 3, &fence(0, 4));
    let _ = m.handle_control_durable(key(0));
    let step = m.handle_append(C1, 4, append_req(0, 1, 2, 1));
    assert_eq!(step.stage, Stage::Nothing);
    assert_eq!(
        code_of(&sends(&step.actions)[0].2),
        Some((ErrorCode::Fenced, 4))
    );
}

#[test]
fn a_fence_is_answered_only_after_its_write_and_the_drain() {
    let mut m = with_segment();
    let _ = staged(&mut m, C1, 1, 0, 3);
    let out = m.handle_fence(C2, 9, &fence(0, 2));
    assert_eq!(
        out.iter().collect::<Vec<_>>(),
        [&Action::PersistControl {
            key: key(0),
            state: Durable {
                fenced_epoch: 2,
                sealed_len: None,
                watermark: 0
            }
        }]
    );
    // Written, but entries staged before the fence are not durable yet.
    assert!(sends(&m.handle_control_durable(key(0))).is_empty());
    assert!(sends(&m.handle_durable(key(0), 2)).is_empty());
    // Drained: the append's ack leaves before the fence's answer, which
    // reports every entry that ack covers.
    let out = sends(&m.handle_durable(key(0), 3));
    let fence_ack = Message::FenceAck(FenceAck {
        log_id: 7,
        segment: 0,
        epoch: 2,
        durable_len: 3,
        watermark: 0,
        sealed_len: None,
    });
    assert_eq!(out, [(C1, 1, ack(3)), (C2, 9, fence_ack)]);
}

#[test]
fn a_drained_fence_still_waits_for_its_write() {
    let mut m = with_segment();
    let out = m.handle_fence(C2, 9, &fence(0, 2));
    assert!(sends(&out).is_empty());
    assert_eq!(out.len(), 1);
    let out = sends(&m.handle_control_durable(key(0)));
    assert_eq!(out.len(), 1);
    assert!(matches!(
        out[0].2,
        Message::FenceAck(FenceAck { epoch: 2, .. })
    ));
}

#[test]
fn a_fence_of_an_unknown_segment_creates_it() {
    let mut m = machine();
    let out = m.handle_fence(C2, 9, &fence(0, 5));
    assert_eq!(
        out.iter().collect::<Vec<_>>(),
        [&Action::Create {
            key: key(0),
            first_seq: 0,
            epoch: 5
        }]
    );
    // An old producer's first append waits for the creation, then finds
    // the fence.
    let step = m.handle_append(C1, 1, append_req(0, 4, 0, 1));
    assert_eq!(step.stage, Stage::Park);
    let out = m.handle_created(key(0), Ok(()));
    assert!(out
        .iter()
        .any(|a| matches!(a, Action::PersistControl { .. })));
    assert!(out.iter().any(|a| *a
        == Action::Reoffer {
            conn: C1,
            request_id: 1
        }));
    let step = m.handle_append(C1, 1, append_req(0, 4, 0, 1));
    assert_eq!(
        code_of(&sends(&step.actions)[0].2),
        Some((ErrorCode::Fenced, 5))
    );
    let out = sends(&m.handle_control_durable(key(0)));
    assert!(matches!(
        out[0].2,
        Message::FenceAck(FenceAck {
            epoch: 5,
            durable_len: 0,
            ..
        })
    ));
}

#[test]
fn control_requests_run_one_at_a_time() {
    let mut m = with_segment();
    let out = m.handle_fence(C1, 1, &fence(0, 2));
    assert_eq!(out.len(), 1, "the first write");
    let out = m.handle_fence(C1, 2, &fence(0, 3));
    assert!(out.is_empty(), "waits for the first to be answered");
    let out = m.handle_fence(C1, 3, &fence(0, 1));
    assert!(out.is_empty());
    let out = m.handle_control_durable(key(0));
    let actions: Vec<_> = out.iter().collect();
    assert_eq!(actions.len(), 2);
    assert!(matches!(actions[0], Action::Send { request_id: 1, .. }));
    assert!(matches!(
        actions[1],
        Action::PersistControl {
            state: Durable {
                fenced_epoch: 3,
                ..
            },
            ..
        }
    ));
    // The third changes nothing: answered right after the second, with
    // the higher epoch it finds.
    let out = sends(&m.handle_control_durable(key(0)));
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].1, 2);
    assert!(matches!(
        out[1],
        (C1, 3, Message::FenceAck(FenceAck { epoch: 3, .. }))
    ));
}

#[test]
fn a_seal_waits_for_the_drain_then_persists_applies_and_answers() {
    let mut m = with_segment();
    let _ = staged(&mut m, C1, 1, 0, 4);
    let _ = m.handle_durable(key(0), 2);
    let out = m.handle_seal(C2, 5, &seal(0, 1, 3));
    assert!(out.is_empty(), "nothing decided before the drain");
    assert_eq!(m.replica(key(0)).map(Replica::sealed_len), Some(None));
    let out = m.handle_durable(key(0), 4);
    let actions: Vec<_> = out.into_iter().collect();
    assert!(matches!(&actions[0], Action::Send { request_id: 1, .. }));
    assert_eq!(
        actions[1],
        Action::PersistControl {
            key: key(0),
            state: Durable {
                fenced_epoch: 1,
                sealed_len: Some(3),
                watermark: 0
            }
        }
    );
    assert_eq!(actions.len(), 2, "answered only once durable");
    let out: Vec<_> = m.handle_control_durable(key(0)).into_iter().collect();
    assert_eq!(
        out,
        [
            Action::ApplySeal {
                key: key(0),
                len: 3
            },
            Action::Send {
                conn: C2,
                request_id: 5,
                message: Message::SealAck(SealAck {
                    log_id: 7,
                    segment: 0,
                    len: 3
                })
            }
        ]
    );
    // The same seal again changes nothing and is answered at once.
    let out = sends(&m.handle_seal(C2, 6, &seal(0, 1, 3)));
    assert!(matches!(out[0].2, Message::SealAck(SealAck { len: 3, .. })));
}

#[test]
fn a_conflicting_seal_is_refused_with_its_own_code() {
    let mut m = with_segment();
    let _ = staged(&mut m, C1, 1, 0, 2);
    let _ = m.handle_durable(key(0), 2);
    let out = sends(&m.handle_seal(C2, 5, &seal(0, 1, 3)));
    assert_eq!(code_of(&out[0].2), Some((ErrorCode::SealConflict, 2)));
}

#[test]
fn a_seal_of_an_unknown_segment_creates_it_only_when_empty() {
    let mut m = machine();
    let out = sends(&m.handle_seal(C1, 1, &seal(0, 2, 4)));
    assert_eq!(code_of(&out[0].2), Some((ErrorCode::NotFound, 0)));
    let out = m.handle_seal(C1, 2, &seal(0, 2, 0));
    assert!(matches!(
        out.iter().next(),
        Some(Action::Create {
            first_seq: 0,
            epoch: 2,
            ..
        })
    ));
    let out = m.handle_created(key(0), Ok(()));
    assert!(matches!(
        out.iter().next(),
        Some(Action::PersistControl { .. })
    ));
    let out = sends(&m.handle_control_durable(key(0)));
    assert!(matches!(out[0].2, Message::SealAck(SealAck { len: 0, .. })));
}

#[test]
fn a_read_parked_before_the_segment_exists_is_not_found_at_its_deadline() {
    let mut m = machine();
    let out = m.handle_read(1_000, C1, 1, &read_req(0, 0, u64::MAX, 500));
    assert!(out.is_empty());
    assert_eq!(m.poll_timeout(), Some(1_500));
    assert!(m.handle_timeout(1_499).is_empty());
    let out = sends(&m.handle_timeout(1_500));
    assert_eq!(out.len(), 1);
    assert_eq!(code_of(&out[0].2), Some((ErrorCode::NotFound, 0)));
    assert_eq!(m.poll_timeout(), None);
}

#[test]
fn a_read_parked_before_the_segment_exists_is_served_once_created() {
    let mut m = machine();
    // The reader knows the segment sealed at 2 (from the metadata), so
    // this replica may serve up to 2 once it holds them.
    let out = m.handle_read(0, C2, 1, &read_req(0, 0, 2, 500));
    assert!(out.is_empty());
    let step = m.handle_append(C1, 1, append_req(0, 1, 0, 2));
    assert_eq!(step.stage, Stage::Park);
    let out = m.handle_created(key(0), Ok(()));
    assert_eq!(out.len(), 1, "only the reoffer: nothing to read yet");
    let _ = staged(&mut m, C1, 1, 0, 2);
    let out = m.handle_durable(key(0), 2);
    assert!(out.iter().any(|a| *a
        == Action::ServeRead {
            conn: C2,
            request_id: 1,
            key: key(0),
            from: 0,
            end: 2,
            max_bytes: 4096,
            watermark: 0,
            sealed_len: None
        }));
    assert_eq!(m.parked_reads(), 0);
    assert_eq!(m.poll_timeout(), None);
}

#[test]
fn a_read_of_an_open_segment_waits_for_the_watermark() {
    let mut m = with_segment();
    let _ = staged(&mut m, C1, 1, 0, 3);
    let _ = m.handle_durable(key(0), 3);
    let out = m.handle_read(0, C2, 1, &read_req(0, 0, u64::MAX, 500));
    assert!(out.is_empty(), "nothing committed");
    let out = m.handle_watermark(&Watermark {
        log_id: 7,
        segment: 0,
        epoch: 1,
        commit: 2,
    });
    assert!(matches!(
        out.iter().collect::<Vec<_>>()[..],
        [Action::ServeRead {
            from: 0,
            end: 2,
            watermark: 2,
            ..
        }]
    ));
    // A commit carried by an append moves it too.
    let _ = m.handle_read(0, C2, 2, &read_req(0, 2, u64::MAX, 500));
    let mut req = append_req(0, 1, 3, 1);
    req.commit = 3;
    let step = m.handle_append(C1, 2, req);
    assert!(step.actions.iter().any(|a| matches!(
        a,
        Action::ServeRead {
            request_id: 2,
            from: 2,
            end: 3,
            ..
        }
    )));
}

#[test]
fn a_read_at_its_deadline_gets_an_empty_answer() {
    let mut m = with_segment();
    let _ = m.handle_read(10, C2, 1, &read_req(0, 0, u64::MAX, 20));
    let out = sends(&m.handle_timeout(30));
    assert_eq!(
        out,
        [(
            C2,
            1,
            Message::ReadResponse(ReadResponse {
                log_id: 7,
                segment: 0,
                from_offset: 0,
                count: 0,
                watermark: 0,
                sealed_len: None,
                records: Vec::new()
            })
        )]
    );
}

#[test]
fn a_read_without_wait_is_answered_at_once() {
    let mut m = machine();
    let out = sends(&m.handle_read(0, C1, 1, &read_req(0, 0, u64::MAX, 0)));
    assert_eq!(code_of(&out[0].2), Some((ErrorCode::NotFound, 0)));
    m.add_recovered(key(0), Replica::new());
    let out = sends(&m.handle_read(0, C1, 2, &read_req(0, 0, u64::MAX, 0)));
    assert!(matches!(
        out[0].2,
        Message::ReadResponse(ReadResponse { count: 0, .. })
    ));
    assert_eq!(m.parked_reads(), 0);
}

#[test]
fn a_read_past_a_seal_or_its_limit_ends_at_once() {
    let mut m = machine();
    m.add_recovered(
        key(0),
        Replica::recovered(
            5,
            5,
            Durable {
                fenced_epoch: 1,
                sealed_len: Some(4),
                watermark: 4,
            },
        ),
    );
    let out = sends(&m.handle_read(0, C1, 1, &read_req(0, 4, u64::MAX, 500)));
    assert!(matches!(
        out[..],
        [(
            C1,
            1,
            Message::ReadResponse(ReadResponse {
                count: 0,
                sealed_len: Some(4),
                from_offset: 4,
                ..
            })
        )]
    ));
    let out = sends(&m.handle_read(0, C1, 2, &read_req(0, 9, u64::MAX, 500)));
    assert_eq!(out.len(), 1, "past the seal");
    m.add_recovered(key(1), Replica::new());
    let out = sends(&m.handle_read(0, C1, 3, &read_req(1, 3, 3, 500)));
    assert!(matches!(
        out[..],
        [(
            C1,
            3,
            Message::ReadResponse(ReadResponse {
                count: 0,
                sealed_len: None,
                ..
            })
        )]
    ));
    // Below the seal: served up to it.
    let out = m.handle_read(0, C1, 4, &read_req(0, 1, u64::MAX, 500));
    assert!(matches!(
        out.iter().collect::<Vec<_>>()[..],
        [Action::ServeRead {
            from: 1,
            end: 4,
            sealed_len: Some(4),
            ..
        }]
    ));
    assert_eq!(m.parked_reads(), 0);
}

#[test]
fn requests_for_another_shard_are_told_its_owner() {
    let mut m = ShardMachine::new(0, 2);
    let theirs = (0..)
        .map(key)
        .find(|k| shard_of(k.log_id, k.segment, 2) == 1)
        .expect("some segment belongs to shard 1");
    let expect = (ErrorCode::WrongShard, 1);
    let mut req = append_req(0, 1, 0, 1);
    req.key = theirs;
    let step = m.handle_append(C1, 1, req);
    assert_eq!(step.stage, Stage::Nothing);
    assert_eq!(code_of(&sends(&step.actions)[0].2), Some(expect));
    let read = read_req(theirs.segment, 0, u64::MAX, 100);
    assert_eq!(
        code_of(&sends(&m.handle_read(0, C1, 2, &read))[0].2),
        Some(expect)
    );
    let f = fence(theirs.segment, 2);
    assert_eq!(
        code_of(&sends(&m.handle_fence(C1, 3, &f))[0].2),
        Some(expect)
    );
    let s = seal(theirs.segment, 2, 0);
    assert_eq!(
        code_of(&sends(&m.handle_seal(C1, 4, &s))[0].2),
        Some(expect)
    );
    assert_eq!(m.parked_reads(), 0);
}

#[test]
fn a_failed_flush_fails_the_segment() {
    let mut m = with_segment();
    let _ = staged(&mut m, C1, 1, 0, 2);
    let _ = m.handle_durable(key(0), 1);
    let _ = m.handle_read(0, C2, 2, &read_req(0, 0, u64::MAX, 500));
    let _ = m.handle_seal(C2, 3, &seal(0, 1, 1));
    let out = sends(&m.handle_flush_failed(key(0), "EIO".into()));
    assert_eq!(out.len(), 3, "the ack, the seal and the read: {out:?}");
    for (_, _, message) in &out {
        assert_eq!(code_of(message), Some((ErrorCode::Internal, 0)));
    }
    assert_eq!(m.failure(key(0)), Some("EIO"));
    assert_eq!(m.poll_timeout(), None);
    // From now on, appends, control requests and reads are refused.
    let step = m.handle_append(C1, 4, append_req(0, 1, 2, 1));
    assert_eq!(step.stage, Stage::Nothing);
    assert_eq!(
        code_of(&sends(&step.actions)[0].2),
        Some((ErrorCode::Internal, 0))
    );
    let out = sends(&m.handle_fence(C1, 5, &fence(0, 3)));
    assert_eq!(code_of(&out[0].2), Some((ErrorCode::Internal, 0)));
    // Reads of what was durable before the failure are still served; a
    // read past it is answered at once.
    let out = m.handle_read(0, C1, 6, &read_req(0, 0, 1, 500));
    assert!(
        matches!(
            out.iter().next(),
            Some(Action::ServeRead {
                from: 0,
                end: 1,
                ..
            })
        ),
        "{out:?}"
    );
    let out = sends(&m.handle_read(0, C1, 7, &read_req(0, 1, 2, 500)));
    assert_eq!(code_of(&out[0].2), Some((ErrorCode::Internal, 0)));
    assert_eq!(m.parked_reads(), 0);
}

#[test]
fn a_damaged_replica_serves_what_is_before_the_damage_and_refuses_the_rest_at_once() {
    let mut m = machine();
    let sealed = Durable {
        fenced_epoch: 1,
        sealed_len: Some(10),
        watermark: 10,
    };
    let mut damaged = Replica::recovered(10, 10, sealed);
    damaged.mark_damaged(6);
    m.add_recovered(key(0), damaged);
    let out = m.handle_read(0, C1, 1, &read_req(0, 2, 10, 500));
    assert!(
        matches!(
            out.iter().next(),
            Some(Action::ServeRead {
                from: 2,
                end: 6,
                ..
            })
        ),
        "{out:?}"
    );
    for from in [6, 8] {
        let out = sends(&m.handle_read(0, C1, 2, &read_req(0, from, 10, 500)));
        assert_eq!(code_of(&out[0].2), Some((ErrorCode::Damaged, 6)), "{from}");
    }
    // Past the seal the read ends as usual.
    let out = sends(&m.handle_read(0, C1, 3, &read_req(0, 10, 10, 500)));
    assert!(matches!(
        out[0].2,
        Message::ReadResponse(ReadResponse { count: 0, .. })
    ));
    assert_eq!(m.parked_reads(), 0, "nothing waits on damage");

    // A sealed replica shorter than its seal: the same answer.
    m.add_recovered(key(1), Replica::recovered(3, 3, sealed));
    let out = sends(&m.handle_read(0, C1, 4, &read_req(1, 3, u64::MAX, 500)));
    assert_eq!(code_of(&out[0].2), Some((ErrorCode::Damaged, 3)));

    // An open replica damaged by recovery refuses appends and the reads
    // past the damage; the scrub's damage wakes parked reads.
    m.add_recovered(key(2), Replica::recovered(4, 4, Durable::default()));
    let step = m.handle_append(C2, 5, append_req(2, 1, 4, 1));
    assert_eq!(step.stage, Stage::Entries { skip: 0, end: 5 });
    let _ = m.handle_durable(key(2), 5);
    let _ = m.handle_read(0, C1, 6, &read_req(2, 5, u64::MAX, 500));
    assert_eq!(m.parked_reads(), 1);
    assert!(m.scrubbable().is_empty(), "damaged, short and open");
    m.add_recovered(key(3), Replica::recovered(10, 10, sealed));
    assert_eq!(m.scrubbable(), [(key(3), 10)]);
    let out = sends(&m.mark_damaged(key(2), 3));
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].0, out[0].1), (C1, 6));
    assert_eq!(code_of(&out[0].2), Some((ErrorCode::Damaged, 3)));
    assert_eq!(m.parked_reads(), 0);
    let step = m.handle_append(C2, 7, append_req(2, 1, 5, 1));
    assert_eq!(
        code_of(&sends(&step.actions)[0].2),
        Some((ErrorCode::Damaged, 3))
    );
}

#[test]
fn a_damaged_sealed_replica_is_rewound_then_healed_by_appends_up_to_its_seal() {
    let mut m = machine();
    let sealed = Durable {
        fenced_epoch: 4,
        sealed_len: Some(10),
        watermark: 10,
    };
    m.add_recovered(key(0), Replica::recovered(10, 10, sealed));
    m.add_recovered(key(1), Replica::recovered(3, 3, Durable::default()));
    assert!(m.damaged_sealed().is_empty() && m.healing().is_empty());
    let _ = m.mark_damaged(key(0), 6);
    let _ = m.mark_damaged(key(1), 2);
    // Only the sealed one is dropped and healed: an open segment's
    // entries are its producer's.
    assert_eq!(m.damaged_sealed(), [(key(0), 6)]);
    assert!(m.rewind_damage(key(0), 5).is_none(), "another damage point");
    assert!(m.rewind_damage(key(0), 6).is_some());
    assert!(m.rewind_damage(key(0), 6).is_none(), "rewound once");
    assert_eq!(m.healing(), [key(0)]);
    let out = sends(&m.handle_read(0, C1, 1, &read_req(0, 6, 10, 500)));
    assert_eq!(code_of(&out[0].2), Some((ErrorCode::Damaged, 6)));

    // A read-only node heals nothing: the heal waits for room.
    m.set_read_only(true);
    let step = m.handle_append(C2, 2, append_req(0, 1, 6, 4));
    assert_eq!(
        code_of(&sends(&step.actions)[0].2).map(|c| c.0),
        Some(ErrorCode::Full)
    );
    m.set_read_only(false);
    // A heal at the segment's own epoch, below the fence, is taken.
    let step = m.handle_append(C2, 2, append_req(0, 1, 6, 4));
    assert_eq!(step.stage, Stage::Entries { skip: 0, end: 10 });
    let seal_out = sends(&m.handle_seal(C2, 3, &seal(0, 1, 10)));
    assert!(seal_out.is_empty(), "the seal answer waits for the drain");
    let out = sends(&m.handle_durable(key(0), 10));
    assert!(out.iter().any(|(c, r, _)| (*c, *r) == (C2, 2)), "{out:?}");
    assert!(
        out.iter()
            .any(|(c, r, msg)| (*c, *r) == (C2, 3) && matches!(msg, Message::SealAck(_))),
        "{out:?}"
    );
    assert!(m.healing().is_empty());
    assert_eq!(m.scrubbable(), [(key(0), 10)], "scrubbed again");
    let out = m.handle_read(0, C1, 4, &read_req(0, 6, 10, 500));
    assert!(
        matches!(
            out.iter().next(),
            Some(Action::ServeRead {
                from: 6,
                end: 10,
                ..
            })
        ),
        "{out:?}"
    );
    // Past its seal it takes nothing, healed or not.
    let step = m.handle_append(C2, 5, append_req(0, 1, 10, 1));
    assert_eq!(
        code_of(&sends(&step.actions)[0].2),
        Some((ErrorCode::Sealed, 10))
    );

    // A heal whose flush fails (the disk filled meanwhile) is not a failed
    // segment: what it staged is dropped as damage and healed again.
    let _ = m.mark_damaged(key(0), 8);
    assert!(m.rewind_damage(key(0), 8).is_some());
    let step = m.handle_append(C2, 6, append_req(0, 1, 8, 2));
    assert_eq!(step.stage, Stage::Entries { skip: 0, end: 10 });
    let out = sends(&m.handle_flush_failed(key(0), "no space".into()));
    assert_eq!(code_of(&out[0].2).map(|c| c.0), Some(ErrorCode::Internal));
    assert_eq!(m.failure(key(0)), None);
    assert_eq!(m.damaged_sealed(), [(key(0), 8)]);
    assert!(m.rewind_damage(key(0), 8).is_some());
    assert_eq!(m.healing(), [key(0)]);
    let step = m.handle_append(C2, 7, append_req(0, 1, 8, 2));
    assert_eq!(step.stage, Stage::Entries { skip: 0, end: 10 });
    let step = m.handle_append(C2, 8, append_req(0, 1, 10, 1));
    assert_eq!(
        code_of(&sends(&step.actions)[0].2),
        Some((ErrorCode::Sealed, 10))
    );
}

#[test]
fn a_bad_record_found_by_a_read_damages_the_replica_and_sends_the_reader_away() {
    let mut m = machine();
    m.add_recovered(key(0), Replica::recovered(10, 10, Durable::default()));
    let out = sends(&m.handle_read_damaged(C1, 1, key(0), 4));
    assert_eq!(code_of(&out[0].2), Some((ErrorCode::Damaged, 4)));
    assert_eq!(m.replica(key(0)).and_then(Replica::damaged_from), Some(4));
    // Past what the replica holds now (a heal rewound it): nothing marked.
    m.add_recovered(key(1), Replica::recovered(3, 3, Durable::default()));
    let _ = m.handle_read_damaged(C1, 2, key(1), 5);
    assert_eq!(m.replica(key(1)).and_then(Replica::damaged_from), None);
}

#[test]
fn a_replica_left_behind_below_the_readers_limit_is_refused_at_the_deadline() {
    let mut m = machine();
    m.add_recovered(key(0), Replica::recovered(2, 2, Durable::default()));
    let out = m.handle_read(0, C1, 1, &read_req(0, 2, 5, 500));
    assert!(sends(&out).is_empty(), "it may still catch up: waits");
    let out = sends(&m.handle_timeout(500));
    assert_eq!(code_of(&out[0].2), Some((ErrorCode::Damaged, 2)));
}

#[test]
fn a_failed_control_write_fails_the_segment() {
    let mut m = with_segment();
    let _ = staged(&mut m, C1, 1, 0, 2);
    let _ = m.handle_fence(C2, 2, &fence(0, 2));
    let _ = m.handle_fence(C2, 3, &fence(0, 3));
    let out = sends(&m.handle_control_failed(key(0), "ENOSPC".into()));
    assert_eq!(out.len(), 3, "the ack and both fences: {out:?}");
    assert!(out
        .iter()
        .all(|(_, _, m)| code_of(m) == Some((ErrorCode::Internal, 0))));
    // A flush that was running ends; nothing more is owed.
    assert!(sends(&m.handle_durable(key(0), 2)).is_empty());
}

#[test]
fn a_control_write_that_ends_after_a_failure_is_expected() {
    let mut m = with_segment();
    let _ = staged(&mut m, C1, 1, 0, 2);
    let _ = m.handle_durable(key(0), 2);
    let _ = staged(&mut m, C1, 2, 2, 1);
    let _ = m.handle_fence(C2, 3, &fence(0, 2));
    let out = sends(&m.handle_flush_failed(key(0), "EIO".into()));
    assert_eq!(out.len(), 2);
    // The fence's write was in flight: it ends, and answers nobody.
    assert!(m.handle_control_durable(key(0)).is_empty());
}

#[test]
fn a_closed_connection_is_owed_nothing() {
    let mut m = with_segment();
    let _ = staged(&mut m, C1, 1, 0, 2);
    let _ = m.handle_read(0, C1, 2, &read_req(0, 0, 2, 500));
    let _ = m.handle_fence(C1, 3, &fence(0, 2));
    let _ = m.handle_append(C1, 4, append_req(1, 1, 0, 1));
    m.handle_conn_closed(C1);
    assert_eq!(m.owed_acks(key(0)), 0);
    assert_eq!(m.poll_timeout(), None);
    // The fence still runs, unanswered.
    assert!(sends(&m.handle_control_durable(key(0))).is_empty());
    assert!(sends(&m.handle_durable(key(0), 2)).is_empty());
    assert_eq!(m.replica(key(0)).map(|r| r.durable().fenced_epoch), Some(2));
    // The waiting append is not re-offered.
    assert!(m.handle_created(key(1), Ok(())).is_empty());
}

#[test]
fn a_failed_disk_read_is_answered_internal() {
    let mut m = with_segment();
    let out = sends(&m.handle_read_failed(C1, 3, key(0), "EIO"));
    assert_eq!(out.len(), 1);
    assert_eq!(code_of(&out[0].2), Some((ErrorCode::Internal, 0)));
}

#[test]
fn the_same_calls_give_the_same_actions() {
    let run = || {
        let mut m = machine();
        let mut all = Vec::new();
        for seg in [3, 1, 2] {
            all.push(m.handle_read(0, C2, seg, &read_req(seg, 0, 1, 100)));
            all.push(m.handle_append(C1, seg, append_req(seg, 1, 0, 1)).actions);
        }
        for seg in [2, 3, 1] {
            all.push(m.handle_created(key(seg), Ok(())));
        }
        all.push(m.handle_timeout(100));
        all
    };
    assert_eq!(run(), run());
}

mod learn_seals {
    use super::*;
    use crate::metadata::{LogMeta, SegmentMeta};
    use crate::shard::{SEAL_LEARN_IDLE_MS, SEAL_LOOKUPS_IN_FLIGHT_MAX};

    fn record(log_id: u64, sealed: &[(u64, Option<u64>)]) -> LogMeta {
        LogMeta {
            log_id,
            epoch: 1,
            trim_seq: 0,
            segments: sealed
                .iter()
                .map(|(id, len)| SegmentMeta {
                    id: *id,
                    replicas: vec![1, 2, 3],
                    first_seq: 0,
                    epoch: 1,
                    sealed_len: *len,
                })
                .collect(),
            deleting: Vec::new(),
            deleted: false,
        }
    }

    fn lookups(out: &Actions) -> Vec<u64> {
        out.iter()
            .filter_map(|a| match a {
                Action::LookupLog { log_id } => Some(*log_id),
                _ => None,
            })
            .collect()
    }

    fn recovered(m: &mut ShardMachine, log_id: u64, segment: u64, len: u64, commit: u64) {
        m.add_recovered(
            SegmentKey { log_id, segment },
            Replica::recovered(len, commit, Default::default()),
        );
    }

    #[test]
    fn no_store_no_lookups() {
        let mut m = ShardMachine::new(0, 1);
        recovered(&mut m, 1, 0, 3, 3);
        assert_eq!(m.poll_timeout(), None);
        assert!(lookups(&m.handle_timeout(SEAL_LEARN_IDLE_MS * 10)).is_empty());
    }

    #[test]
    fn an_idle_segment_learns_its_seal_from_the_record() {
        let mut m = ShardMachine::new(0, 1);
        recovered(&mut m, 1, 0, 5, 3);
        m.learn_seals_from_record(0, 1);
        assert_eq!(m.poll_timeout(), Some(SEAL_LEARN_IDLE_MS));
        assert!(lookups(&m.handle_timeout(SEAL_LEARN_IDLE_MS - 1)).is_empty());
        let out = m.handle_timeout(SEAL_LEARN_IDLE_MS);
        assert_eq!(lookups(&out), vec![1]);
        // Still in flight: not asked again.
        assert!(lookups(&m.handle_timeout(2 * SEAL_LEARN_IDLE_MS)).is_empty());
        let r = record(1, &[(0, Some(4))]);
        let out = m.handle_log_record(1, Ok(Some(&r)));
        let key = SegmentKey {
            log_id: 1,
            segment: 0,
        };
        assert!(out.iter().any(
            |a| matches!(a, Action::PersistControl { state, .. } if state.sealed_len == Some(4))
        ));
        assert!(
            out.iter().all(|a| !matches!(a, Action::Send { .. })),
            "nobody to answer"
        );
        let _ = m.handle_control_durable(key);
        assert_eq!(m.replica(key).map(|r| r.sealed_len()), Some(Some(4)));
        assert!(
            lookups(&m.handle_timeout(3 * SEAL_LEARN_IDLE_MS)).is_empty(),
            "sealed: done"
        );
    }

    /// Learns the record's seal at `len` for segment 0 of log 1 and makes
    /// it durable; returns the actions of the learning.
    fn learn(m: &mut ShardMachine, len: u64) -> Actions {
        m.learn_seals_from_record(0, 1);
        let _ = m.handle_timeout(SEAL_LEARN_IDLE_MS);
        let r = record(1, &[(0, Some(len))]);
        let out = m.handle_log_record(1, Ok(Some(&r)));
        let key = SegmentKey {
            log_id: 1,
            segment: 0,
        };
        let _ = m.handle_control_durable(key);
        out
    }

    #[test]
    fn a_learnt_seal_below_the_watermark_is_taken_from_the_record() {
        // The replica knows watermark 4; the record seals at 2 (a takeover
        // whose answers knew less carried seqs 2.. into the next segment).
        // As a message, the seal is refused; from the record, it is taken.
        let mut m = ShardMachine::new(0, 1);
        recovered(&mut m, 1, 0, 5, 4);
        let key = SegmentKey {
            log_id: 1,
            segment: 0,
        };
        let out = learn(&mut m, 2);
        assert!(out
            .iter()
            .all(|a| !matches!(a, Action::LearntSealRefused { .. })));
        let r = m.replica(key).expect("held");
        assert_eq!((r.sealed_len(), r.durable_len()), (Some(2), 2));
        assert!(lookups(&m.handle_timeout(2 * SEAL_LEARN_IDLE_MS)).is_empty());
        // A seal message at another length is still refused.
        let mut other = ShardMachine::new(0, 1);
        recovered(&mut other, 1, 0, 5, 4);
        let msg = Seal {
            log_id: 1,
            segment: 0,
            epoch: 1,
            len: 2,
        };
        let out = other.handle_seal(C1, 1, &msg);
        assert_eq!(
            code_of(&sends(&out)[0].2),
            Some((ErrorCode::SealBelowCommit, 4))
        );
    }

    #[test]
    fn a_damaged_open_replica_takes_the_record_seal_past_what_it_holds_and_heals() {
        // Damaged from 3 (recovery stopped there); the record seals at 8.
        let mut m = ShardMachine::new(0, 1);
        let key = SegmentKey {
            log_id: 1,
            segment: 0,
        };
        let mut rep = Replica::recovered(3, 3, Default::default());
        rep.mark_damaged(3);
        m.add_recovered(key, rep);
        let out = learn(&mut m, 8);
        assert!(out
            .iter()
            .all(|a| !matches!(a, Action::LearntSealRefused { .. })));
        let r = m.replica(key).expect("held");
        assert_eq!((r.sealed_len(), r.durable_len()), (Some(8), 3));
        assert_eq!(r.missing_from(), Some(3));
        // Sealed and damaged: the damage is dropped, then it heals.
        assert_eq!(m.damaged_sealed(), vec![(key, 3)]);
        assert!(m.rewind_damage(key, 3).is_some());
        assert_eq!(m.healing(), vec![key]);
    }

    #[test]
    fn busy_segments_are_not_asked_about_and_lookups_are_bounded() {
        let mut m = ShardMachine::new(0, 1);
        let logs = SEAL_LOOKUPS_IN_FLIGHT_MAX as u64 + 2;
        for log_id in 1..=logs {
            recovered(&mut m, log_id, 0, 1, 1);
        }
        m.learn_seals_from_record(0, 1);
        let w = trilog_wire::message::Watermark {
            log_id: 1,
            segment: 0,
            epoch: 1,
            commit: 1,
        };
        let _ = m.handle_watermark(&w);
        let asked = lookups(&m.handle_timeout(SEAL_LEARN_IDLE_MS));
        assert_eq!(asked.len(), SEAL_LOOKUPS_IN_FLIGHT_MAX);
        assert!(!asked.contains(&1), "log 1 was busy");
        // A failed lookup frees its place.
        let _ = m.handle_log_record(asked[0], Err("store down".into()));
        let again = lookups(&m.handle_timeout(2 * SEAL_LEARN_IDLE_MS));
        assert_eq!(again.len(), 1);
    }
}
fn delete_ack_of(segment: u64) -> Message {
    Message::DeleteSegmentAck(trilog_wire::message::DeleteSegmentAck { log_id: 7, segment })
}

#[test]
fn a_delete_answers_what_the_segment_owed_and_is_answered_once_unlinked() {
    let mut m = with_segment();
    let owed = staged(&mut m, C1, 1, 0, 2);
    assert!(sends(&owed).is_empty(), "the ack waits for the flush");
    let parked = m.handle_read(0, C2, 2, &read_req(0, 2, u64::MAX, 1000));
    assert!(sends(&parked).is_empty(), "nothing to read yet: parked");
    let out = m.handle_delete(C2, 3, key(0));
    let answers = sends(&out);
    assert_eq!(answers.len(), 2, "the owed ack and the parked read");
    assert_eq!(code_of(&answers[1].2), Some((ErrorCode::Deleted, 0)));
    assert!(out
        .iter()
        .any(|a| *a == Action::DeleteFiles { key: key(0) }));
    assert!(m.replica(key(0)).is_none());
    // A flush still running reports later: ignored.
    assert!(m.handle_durable(key(0), 2).is_empty());
    // Not answered before the unlink is durable; a second delete waits too.
    assert!(sends(&m.handle_delete(C1, 4, key(0))).is_empty());
    let done = sends(&m.handle_deleted(key(0), Ok(())));
    assert_eq!(
        done,
        vec![(C2, 3, delete_ack_of(0)), (C1, 4, delete_ack_of(0))]
    );
}

#[test]
fn a_deleted_segment_is_never_created_again_and_deleting_is_idempotent() {
    let mut m = machine();
    // Unknown here: the files are unlinked anyway (whatever exists).
    let out = m.handle_delete(C1, 1, key(3));
    assert_eq!(out.iter().count(), 1);
    let done = sends(&m.handle_deleted(key(3), Ok(())));
    assert_eq!(done, vec![(C1, 1, delete_ack_of(3))]);
    // Again: answered at once.
    assert_eq!(
        sends(&m.handle_delete(C1, 2, key(3))),
        vec![(C1, 2, delete_ack_of(3))]
    );
    // An append at offset 0, a fence, a seal at 0, a read: all `Deleted`.
    let step = m.handle_append(C1, 3, append_req(3, 1, 0, 1));
    assert_eq!(step.stage, Stage::Nothing);
    assert_eq!(
        code_of(&sends(&step.actions)[0].2),
        Some((ErrorCode::Deleted, 0))
    );
    for out in [
        m.handle_fence(C1, 4, &fence(3, 2)),
        m.handle_seal(C1, 5, &seal(3, 2, 0)),
        m.handle_read(0, C1, 6, &read_req(3, 0, u64::MAX, 0)),
    ] {
        let answers = sends(&out);
        assert_eq!(answers.len(), 1);
        assert_eq!(code_of(&answers[0].2), Some((ErrorCode::Deleted, 0)));
        assert!(!out.iter().any(|a| matches!(a, Action::Create { .. })));
    }
}

#[test]
fn a_segment_being_created_is_not_deleted_yet() {
    let mut m = machine();
    let step = m.handle_append(C1, 1, append_req(0, 1, 0, 1));
    assert_eq!(step.stage, Stage::Park);
    let out = m.handle_delete(C2, 2, key(0));
    assert_eq!(code_of(&sends(&out)[0].2), Some((ErrorCode::Internal, 0)));
    assert!(!out.iter().any(|a| matches!(a, Action::DeleteFiles { .. })));
}

#[test]
fn a_read_only_shard_creates_nothing_and_takes_no_append_but_serves_the_rest() {
    let mut m = with_segment();
    let _ = staged(&mut m, C1, 1, 0, 3);
    let _ = m.handle_durable(key(0), 3);
    m.set_read_only(true);
    assert!(m.is_read_only());
    // No new segment, whatever would create it.
    let step = m.handle_append(C1, 2, append_req(1, 1, 0, 1));
    assert_eq!(step.stage, Stage::Nothing);
    assert_eq!(
        code_of(&sends(&step.actions)[0].2),
        Some((ErrorCode::Full, 0))
    );
    for out in [
        m.handle_fence(C1, 3, &fence(1, 2)),
        m.handle_seal(C1, 4, &seal(1, 2, 0)),
    ] {
        assert!(!out.iter().any(|a| matches!(a, Action::Create { .. })));
        assert_eq!(code_of(&sends(&out)[0].2), Some((ErrorCode::Full, 0)));
    }
    // No append to the open segment it holds.
    let step = m.handle_append(C1, 5, append_req(0, 1, 3, 1));
    assert_eq!(step.stage, Stage::Nothing);
    assert_eq!(
        code_of(&sends(&step.actions)[0].2),
        Some((ErrorCode::Full, 0))
    );
    // A seal still runs (its control write overwrites in place).
    let out = m.handle_seal(C2, 7, &seal(0, 1, 3));
    assert!(out
        .iter()
        .any(|a| matches!(a, Action::PersistControl { .. })));
    let out = sends(&m.handle_control_durable(key(0)));
    assert!(matches!(out[0].2, Message::SealAck(SealAck { len: 3, .. })));
    // Every durable entry is still served.
    let out = m.handle_read(0, C2, 6, &read_req(0, 0, u64::MAX, 0));
    assert!(out.iter().any(|a| matches!(
        a,
        Action::ServeRead {
            from: 0,
            end: 3,
            ..
        }
    )));
    // An append to the sealed segment is refused as sealed, as always.
    let step = m.handle_append(C1, 8, append_req(0, 1, 3, 1));
    assert_eq!(
        code_of(&sends(&step.actions)[0].2),
        Some((ErrorCode::Sealed, 3))
    );
    // Writable again: the first append creates a segment.
    m.set_read_only(false);
    let step = m.handle_append(C1, 9, append_req(1, 1, 0, 1));
    assert_eq!(step.stage, Stage::Park);
    assert!(step
        .actions
        .iter()
        .any(|a| matches!(a, Action::Create { .. })));
}

#[test]
fn deletes_of_made_up_segments_are_remembered_within_a_bound() {
    let mut m = machine();
    let made_up = DELETED_UNKNOWN_MAX as u64 + 10;
    for id in 0..made_up {
        let k = SegmentKey {
            log_id: 1_000_000,
            segment: id,
        };
        let _ = m.handle_delete(C1, id, k);
        let _ = m.handle_deleted(k, Ok(()));
    }
    assert_eq!(m.deleted.len(), DELETED_UNKNOWN_MAX);
    assert_eq!(m.deleted_unknown.len(), DELETED_UNKNOWN_MAX);
    // The oldest were forgotten, the newest are still answered `Deleted`.
    assert!(!m.is_deleted(SegmentKey {
        log_id: 1_000_000,
        segment: 0
    }));
    assert!(m.is_deleted(SegmentKey {
        log_id: 1_000_000,
        segment: made_up - 1
    }));
}

#[test]
fn a_delete_is_checked_against_the_record_when_the_shard_can_look_it_up() {
    use trilog_wire::meta::SegmentMeta;
    let mut m = machine();
    m.learn_seals_from_record(0, 1);
    for s in 0..3 {
        m.add_recovered(key(s), Replica::recovered(2, 2, Durable::default()));
    }
    let seg = |id: u64| SegmentMeta {
        id,
        replicas: vec![1, 2, 3],
        first_seq: id * 2,
        epoch: 1,
        sealed_len: Some(2),
    };
    let record = LogMeta {
        log_id: 7,
        epoch: 1,
        trim_seq: 2,
        segments: vec![seg(1), seg(2)],
        deleting: vec![seg(0)],
        deleted: false,
    };
    // Two deletes of one log: one lookup.
    let out = m.handle_delete(C1, 1, key(0));
    assert_eq!(
        out.iter().collect::<Vec<_>>(),
        [&Action::LookupLog { log_id: 7 }]
    );
    assert!(
        m.handle_delete(C2, 2, key(1)).is_empty(),
        "one lookup per log"
    );
    let out = m.handle_log_record(7, Ok(Some(&record)));
    // Segment 0 is deleting: removed. Segment 1 is listed on node 1: kept.
    assert!(out
        .iter()
        .any(|a| *a == Action::DeleteFiles { key: key(0) }));
    let refused: Vec<_> = sends(&out)
        .into_iter()
        .filter(|(c, r, _)| (*c, *r) == (C2, 2))
        .collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(
        code_of(&refused[0].2).map(|c| c.0),
        Some(ErrorCode::BadRequest)
    );
    assert!(m.replica(key(1)).is_some(), "a listed copy stays");
    // A failed lookup: asked again later.
    let _ = m.handle_delete(C1, 3, key(2));
    let out = sends(&m.handle_log_record(7, Err("store down".into())));
    assert_eq!(code_of(&out[0].2).map(|c| c.0), Some(ErrorCode::Internal));
    assert!(m.replica(key(2)).is_some());
    // Deletes waiting for records are bounded.
    for i in 0..DELETES_CHECKING_MAX as u64 {
        let _ = m.handle_delete(
            C1,
            10 + i,
            SegmentKey {
                log_id: 100 + i,
                segment: 0,
            },
        );
    }
    let out = sends(&m.handle_delete(C1, 5, key(2)));
    assert_eq!(code_of(&out[0].2).map(|c| c.0), Some(ErrorCode::Internal));
}

#[test]
fn unlisted_copies_are_bounded_confirmed_and_swept() {
    use trilog_wire::meta::SegmentMeta;
    let mut m = machine();
    m.learn_seals_from_record(0, 1);
    // A segment the record will list, and one past the record's last.
    let seg = |id: u64, replicas: &[u64]| SegmentMeta {
        id,
        replicas: replicas.to_vec(),
        first_seq: 0,
        epoch: 1,
        sealed_len: Some(1),
    };
    for s in [0, 1, 5] {
        let step = m.handle_append(C1, s, append_req(s, 1, 0, 1));
        assert_eq!(step.stage, Stage::Park);
        let out = m.handle_created(key(s), Ok(()));
        let asks: Vec<_> = out
            .iter()
            .filter(|a| matches!(a, Action::LookupLog { .. }))
            .collect();
        assert!(asks.len() <= 1, "one lookup per log at a time");
    }
    // Segment 0 lists node 1; segment 1 went to other nodes; 5 is past
    // the last one (a takeover may still publish it).
    let record = LogMeta {
        log_id: 7,
        epoch: 1,
        trim_seq: 0,
        segments: vec![seg(0, &[1, 2, 3]), seg(1, &[2, 3, 4])],
        deleting: Vec::new(),
        deleted: false,
    };
    let out = m.handle_log_record(7, Ok(Some(&record)));
    assert!(
        !out.iter().any(|a| matches!(a, Action::DeleteFiles { .. })),
        "not yet: once"
    );
    // Node 1's repair writes segment 1 here: never swept while it does.
    m.set_repairing([key(1)].into_iter().collect());
    let out = m.handle_timeout(ORPHAN_SWEEP_MS);
    assert!(out.iter().any(|a| *a == Action::LookupLog { log_id: 7 }));
    let out = m.handle_log_record(7, Ok(Some(&record)));
    assert!(!out.iter().any(|a| matches!(a, Action::DeleteFiles { .. })));
    m.set_repairing(Default::default());
    for round in 2..5 {
        let _ = m.handle_timeout(ORPHAN_SWEEP_MS * round);
        let out = m.handle_log_record(7, Ok(Some(&record)));
        let swept: Vec<_> = out
            .iter()
            .filter(|a| matches!(a, Action::DeleteFiles { .. }))
            .collect();
        if round == 4 {
            assert_eq!(swept, [&Action::DeleteFiles { key: key(1) }]);
        } else {
            assert!(swept.is_empty(), "not yet a whole sweep since the repair");
        }
    }
    assert!(m.replica(key(0)).is_some() && m.replica(key(5)).is_some());
    let _ = m.handle_deleted(key(1), Ok(()));

    // Made-up segments: at most UNCONFIRMED_SEGMENTS_MAX unconfirmed.
    let mut refused = 0;
    for i in 0..UNCONFIRMED_SEGMENTS_MAX as u64 + 10 {
        let k = SegmentKey {
            log_id: 1000 + i,
            segment: 0,
        };
        let req = AppendRequest {
            key: k,
            ..append_req(0, 1, 0, 1)
        };
        let step = m.handle_append(C2, i, req);
        if step.stage == Stage::Park {
            let _ = m.handle_created(k, Ok(()));
        } else {
            assert_eq!(
                code_of(&sends(&step.actions)[0].2).map(|c| c.0),
                Some(ErrorCode::Internal)
            );
            refused += 1;
        }
    }
    // Segment 5 of log 7 is still unconfirmed, so 255 made-up ones fit.
    assert_eq!(refused, 11);
}
