//! Encoding messages into frames and reading them back, zero-copy.

use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor::{BoxedError, Error as RancorError};
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

use crate::error::WireError;
use crate::frame::{FrameHeader, Kind, FRAME_HEADER_BYTES};
use crate::limits::*;
use crate::message::*;
use crate::meta::*;

/// A message type that has a frame kind of its own.
pub trait WireMessage:
    Archive + for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, RancorError>> + Sized
where
    Self::Archived: for<'a> CheckBytes<HighValidator<'a, BoxedError>>
        + Deserialize<Self, HighDeserializer<RancorError>>,
{
    const KIND: Kind;

    /// Limits beyond what the type itself enforces (sizes, counts).
    fn check(_archived: &Self::Archived) -> Result<(), String> {
        Ok(())
    }
}

/// Encodes `msg` as one whole frame: header, then payload.
pub fn encode<T: WireMessage>(request_id: u64, msg: &T) -> Vec<u8>
where
    T::Archived: for<'a> CheckBytes<HighValidator<'a, BoxedError>>
        + Deserialize<T, HighDeserializer<RancorError>>,
{
    frame(T::KIND, request_id, &encode_payload(msg))
}

/// Serializes `msg` into a payload, for sending one payload to several
/// peers behind headers of their own (see [`frame`]).
pub fn encode_payload<T: WireMessage>(msg: &T) -> AlignedVec
where
    T::Archived: for<'a> CheckBytes<HighValidator<'a, BoxedError>>
        + Deserialize<T, HighDeserializer<RancorError>>,
{
    // Serializing plain owned values into memory cannot fail: the only
    // error sources of the high-level serializer are allocation failure and
    // pointer overflow, both programmer errors at these sizes.
    match rkyv::to_bytes::<RancorError>(msg) {
        Ok(p) => p,
        Err(e) => panic!("serializing {:?} failed: {e}", T::KIND),
    }
}

/// A whole frame around an already serialized payload.
pub fn frame(kind: Kind, request_id: u64, payload: &[u8]) -> Vec<u8> {
    let header = FrameHeader::for_payload(kind, request_id, payload);
    let mut out = Vec::with_capacity(FRAME_HEADER_BYTES + payload.len());
    out.extend_from_slice(&header.to_bytes());
    out.extend_from_slice(payload);
    out
}

/// Validates an aligned payload of kind `T::KIND` and returns the archived
/// value in place. `payload` must start at an 8-byte boundary (read frames
/// into an [`AlignedVec`]); a misaligned one is refused, not copied.
pub fn access<T: WireMessage>(payload: &[u8]) -> Result<&T::Archived, WireError>
where
    T::Archived: for<'a> CheckBytes<HighValidator<'a, BoxedError>>
        + Deserialize<T, HighDeserializer<RancorError>>,
{
    let archived =
        rkyv::access::<T::Archived, BoxedError>(payload).map_err(|e| WireError::Invalid {
            kind: T::KIND,
            reason: e.to_string(),
        })?;
    T::check(archived).map_err(|reason| WireError::Invalid {
        kind: T::KIND,
        reason,
    })?;
    Ok(archived)
}

fn owned<T: WireMessage>(payload: &[u8]) -> Result<T, WireError>
where
    T::Archived: for<'a> CheckBytes<HighValidator<'a, BoxedError>>
        + Deserialize<T, HighDeserializer<RancorError>>,
{
    let archived = access::<T>(payload)?;
    rkyv::deserialize::<T, RancorError>(archived).map_err(|e| WireError::Invalid {
        kind: T::KIND,
        reason: e.to_string(),
    })
}

macro_rules! messages {
    ($($name:ident),* $(,)?) => {
        $(impl WireMessage for $name {
            const KIND: Kind = Kind::$name;
            fn check(a: &Self::Archived) -> Result<(), String> {
                checks::$name(a)
            }
        })*

        /// Any message, owned. The node reads appends in place instead.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Message { $($name($name),)* }

        impl Message {
            pub fn kind(&self) -> Kind {
                match self { $(Message::$name(_) => Kind::$name,)* }
            }

            /// Encodes this message as a whole frame.
            pub fn encode(&self, request_id: u64) -> Vec<u8> {
                match self { $(Message::$name(m) => encode(request_id, m),)* }
            }
        }

        /// Decodes a checked payload of `kind` into an owned message.
        /// Copies the payload once if it is not 8-byte aligned.
        pub fn decode_payload(kind: Kind, payload: &[u8]) -> Result<Message, WireError> {
            if (payload.as_ptr() as usize).is_multiple_of(8) {
                return decode_aligned(kind, payload);
            }
            // A real allocation even for an empty payload: an empty
            // AlignedVec's dangling pointer need not be aligned (the fuzzer
            // found that this recursed forever when it was not).
            let mut aligned = AlignedVec::<16>::with_capacity(payload.len().max(16));
            aligned.extend_from_slice(payload);
            decode_aligned(kind, &aligned)
        }

        fn decode_aligned(kind: Kind, payload: &[u8]) -> Result<Message, WireError> {
            match kind { $(Kind::$name => owned::<$name>(payload).map(Message::$name),)* }
        }
    };
}

messages! {
    Hello, HelloOk, Append, AppendAck, Watermark, Read, ReadResponse, Seal, SealAck,
    Fence, FenceAck, ErrorMsg, MetaGetLog, MetaLog, MetaCasLog, MetaCasResult, MetaListLogs,
    MetaLogs, MetaRegister, MetaRegistered, MetaListNodes, MetaNodes, MetaError, MetaGetCluster,
    MetaCluster, MetaRegisterRefused, DeleteSegment, DeleteSegmentAck, MetaSetNodeMode,
    MetaGetNodeModes, MetaNodeModes, MetaDeregister, MetaDeregistered,
}

/// Decodes one whole frame from the front of `bytes`: header, crc, payload.
/// Returns the request id, the message and how many bytes it took.
pub fn decode(bytes: &[u8]) -> Result<(u64, Message, usize), WireError> {
    let header = FrameHeader::parse(bytes)?;
    let end = FRAME_HEADER_BYTES + header.payload_len as usize;
    let Some(payload) = bytes.get(FRAME_HEADER_BYTES..end) else {
        return Err(WireError::Truncated {
            needed: end,
            have: bytes.len(),
        });
    };
    header.verify(payload)?;
    let msg = decode_payload(header.kind, payload)?;
    Ok((header.request_id, msg, end))
}

/// Per-message limits, checked on the archived value before anyone uses it.
#[allow(non_snake_case)]
mod checks {
    use super::*;

    fn ensure(ok: bool, why: impl FnOnce() -> String) -> Result<(), String> {
        if ok {
            Ok(())
        } else {
            Err(why())
        }
    }

    fn short_string(s: &str, what: &str) -> Result<(), String> {
        ensure(s.len() <= ERROR_MESSAGE_BYTES_MAX, || {
            format!("{what} of {} bytes", s.len())
        })
    }

    pub fn Hello(a: &ArchivedHello) -> Result<(), String> {
        short_string(&a.client, "client name")
    }
    pub fn HelloOk(a: &ArchivedHelloOk) -> Result<(), String> {
        ensure(
            a.shard_count.to_native() as usize == a.shard_ports.len()
                && !a.shard_ports.is_empty()
                && a.shard_ports.len() <= SHARDS_MAX
                && a.shard.to_native() < a.shard_count.to_native(),
            || "inconsistent shard map".into(),
        )
    }
    pub fn Append(a: &ArchivedAppend) -> Result<(), String> {
        ensure(
            a.entries.len() as u64 <= u64::from(APPEND_ENTRIES_MAX),
            || format!("{} entries, over {APPEND_ENTRIES_MAX}", a.entries.len()),
        )?;
        let mut total = 0u64;
        for e in a.entries.iter() {
            ensure(e.payload.len() as u64 <= u64::from(ENTRY_BYTES_MAX), || {
                format!("entry of {} bytes, over {ENTRY_BYTES_MAX}", e.payload.len())
            })?;
            total += e.payload.len() as u64;
        }
        ensure(total <= u64::from(APPEND_BYTES_MAX), || {
            format!("append of {total} bytes, over {APPEND_BYTES_MAX}")
        })?;
        ensure(
            a.first_offset
                .to_native()
                .checked_add(a.entries.len() as u64)
                .is_some()
                && a.first_seq
                    .to_native()
                    .checked_add(a.first_offset.to_native())
                    .is_some(),
            || "offsets overflow".into(),
        )
    }
    pub fn AppendAck(_: &ArchivedAppendAck) -> Result<(), String> {
        Ok(())
    }
    pub fn Watermark(_: &ArchivedWatermark) -> Result<(), String> {
        Ok(())
    }
    pub fn Read(a: &ArchivedRead) -> Result<(), String> {
        ensure(a.max_bytes.to_native() <= READ_BYTES_MAX, || {
            "max_bytes over the limit".into()
        })?;
        ensure(a.wait_ms.to_native() <= READ_WAIT_MS_MAX, || {
            "wait_ms over the limit".into()
        })
    }
    pub fn ReadResponse(a: &ArchivedReadResponse) -> Result<(), String> {
        ensure(a.records.len() as u64 <= u64::from(READ_BYTES_MAX), || {
            "records over the limit".into()
        })
    }
    pub fn Seal(_: &ArchivedSeal) -> Result<(), String> {
        Ok(())
    }
    pub fn SealAck(_: &ArchivedSealAck) -> Result<(), String> {
        Ok(())
    }
    pub fn Fence(_: &ArchivedFence) -> Result<(), String> {
        Ok(())
    }
    pub fn FenceAck(_: &ArchivedFenceAck) -> Result<(), String> {
        Ok(())
    }
    pub fn ErrorMsg(a: &ArchivedErrorMsg) -> Result<(), String> {
        short_string(&a.message, "error message")
    }
    pub fn MetaGetLog(a: &ArchivedMetaGetLog) -> Result<(), String> {
        ensure(a.wait_ms.to_native() <= READ_WAIT_MS_MAX, || {
            "wait_ms over the limit".into()
        })
    }
    fn log_meta(a: &ArchivedLogMeta) -> Result<(), String> {
        for s in a.segments.iter().chain(a.deleting.iter()) {
            ensure(
                !s.replicas.is_empty() && s.replicas.len() <= REPLICAS_MAX,
                || {
                    format!(
                        "segment {} with {} replicas",
                        s.id.to_native(),
                        s.replicas.len()
                    )
                },
            )?;
        }
        Ok(())
    }
    pub fn MetaLog(a: &ArchivedMetaLog) -> Result<(), String> {
        match a.record.as_ref() {
            Some(r) => log_meta(r),
            None => Ok(()),
        }
    }
    pub fn MetaCasLog(a: &ArchivedMetaCasLog) -> Result<(), String> {
        log_meta(&a.record)
    }
    pub fn MetaCasResult(a: &ArchivedMetaCasResult) -> Result<(), String> {
        match a.current.as_ref() {
            Some(r) => log_meta(r),
            None => Ok(()),
        }
    }
    pub fn MetaListLogs(_: &ArchivedMetaListLogs) -> Result<(), String> {
        Ok(())
    }
    pub fn MetaLogs(_: &ArchivedMetaLogs) -> Result<(), String> {
        Ok(())
    }
    fn node_info(a: &ArchivedNodeInfo) -> Result<(), String> {
        short_string(&a.host, "host")?;
        short_string(&a.zone, "zone")?;
        ensure(
            !a.shard_ports.is_empty() && a.shard_ports.len() <= SHARDS_MAX,
            || "bad shard port list".into(),
        )
    }
    pub fn MetaRegister(a: &ArchivedMetaRegister) -> Result<(), String> {
        node_info(&a.node)
    }
    pub fn MetaRegistered(_: &ArchivedMetaRegistered) -> Result<(), String> {
        Ok(())
    }
    pub fn MetaListNodes(_: &ArchivedMetaListNodes) -> Result<(), String> {
        Ok(())
    }
    pub fn MetaNodes(a: &ArchivedMetaNodes) -> Result<(), String> {
        for n in a.nodes.iter() {
            node_info(&n.info)?;
        }
        Ok(())
    }
    pub fn MetaError(a: &ArchivedMetaError) -> Result<(), String> {
        short_string(&a.message, "error message")
    }
    pub fn MetaGetCluster(_: &ArchivedMetaGetCluster) -> Result<(), String> {
        Ok(())
    }
    pub fn MetaCluster(a: &ArchivedMetaCluster) -> Result<(), String> {
        ensure(a.cluster_id != 0, || "cluster id 0".into())
    }
    pub fn MetaRegisterRefused(a: &ArchivedMetaRegisterRefused) -> Result<(), String> {
        node_info(&a.holder)
    }
    pub fn MetaSetNodeMode(_: &ArchivedMetaSetNodeMode) -> Result<(), String> {
        Ok(())
    }
    pub fn MetaGetNodeModes(_: &ArchivedMetaGetNodeModes) -> Result<(), String> {
        Ok(())
    }
    pub fn MetaNodeModes(a: &ArchivedMetaNodeModes) -> Result<(), String> {
        ensure(a.modes.len() <= NODE_MODES_MAX, || {
            format!("{} node modes, over {NODE_MODES_MAX}", a.modes.len())
        })
    }
    pub fn MetaDeregister(_: &ArchivedMetaDeregister) -> Result<(), String> {
        Ok(())
    }
    pub fn MetaDeregistered(_: &ArchivedMetaDeregistered) -> Result<(), String> {
        Ok(())
    }
    pub fn DeleteSegment(_: &ArchivedDeleteSegment) -> Result<(), String> {
        Ok(())
    }
    pub fn DeleteSegmentAck(_: &ArchivedDeleteSegmentAck) -> Result<(), String> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_append() -> Append {
        Append {
            log_id: 1,
            segment: 2,
            epoch: 3,
            first_seq: 100,
            first_offset: 4,
            commit: 3,
            entries: vec![Entry::new(b"one".to_vec()), Entry::new(vec![7u8; 300])],
        }
    }

    #[test]
    fn frame_roundtrip() {
        let bytes = encode(9, &sample_append());
        let (rid, msg, used) = decode(&bytes).expect("decodes");
        assert_eq!(rid, 9);
        assert_eq!(used, bytes.len());
        assert_eq!(msg, Message::Append(sample_append()));
    }

    #[test]
    fn zero_copy_access() {
        let bytes = encode(1, &sample_append());
        let mut aligned = AlignedVec::<16>::new();
        aligned.extend_from_slice(&bytes[FRAME_HEADER_BYTES..]);
        let a = access::<Append>(&aligned).expect("valid");
        assert_eq!(a.entries.len(), 2);
        assert_eq!(a.entries[1].payload.as_slice(), &[7u8; 300][..]);
    }

    #[test]
    fn every_truncation_and_flip_is_an_error() {
        let bytes = encode(5, &sample_append());
        for cut in 0..bytes.len() {
            assert!(
                decode(&bytes[..cut]).is_err(),
                "truncation at {cut} accepted"
            );
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad).is_err(), "flip at {i} accepted");
        }
    }

    #[test]
    fn payload_garbage_with_valid_crc_is_invalid() {
        // A peer can compute a crc over nonsense: validation must still hold.
        for len in [0usize, 1, 7, 8, 64, 1000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let h = FrameHeader::for_payload(Kind::Append, 1, &payload);
            let mut frame = h.to_bytes().to_vec();
            frame.extend_from_slice(&payload);
            assert!(decode(&frame).is_err(), "garbage of {len} bytes accepted");
        }
    }

    #[test]
    fn misaligned_and_empty_payloads_are_errors_not_crashes() {
        // Found by the fuzzer: an empty payload at an odd address.
        let buf = [0u8; 64];
        for kind in Kind::ALL {
            assert!(decode_payload(*kind, &buf[1..1]).is_err());
            // Where a payload sits must not change what it decodes to.
            let mut aligned = AlignedVec::<16>::new();
            aligned.extend_from_slice(&buf[3..40]);
            assert_eq!(
                decode_payload(*kind, &buf[3..40]).ok(),
                decode_payload(*kind, &aligned).ok()
            );
        }
    }

    #[test]
    fn limits_are_checked() {
        let mut a = sample_append();
        a.entries = vec![Entry::new(vec![0u8; ENTRY_BYTES_MAX as usize + 1])];
        let bytes = encode(1, &a);
        assert!(matches!(decode(&bytes), Err(WireError::Invalid { .. })));
    }

    #[test]
    fn every_message_roundtrips() {
        let msgs = vec![
            Message::Hello(Hello { client: "c".into() }),
            Message::HelloOk(HelloOk {
                node_id: 1,
                shard: 0,
                shard_count: 2,
                shard_ports: vec![1, 2],
            }),
            Message::AppendAck(AppendAck {
                log_id: 1,
                segment: 2,
                durable_len: 3,
            }),
            Message::Watermark(Watermark {
                log_id: 1,
                segment: 2,
                epoch: 3,
                commit: 4,
            }),
            Message::Read(Read {
                log_id: 1,
                segment: 2,
                from_offset: 3,
                limit: u64::MAX,
                max_bytes: 10,
                wait_ms: 5,
            }),
            Message::ReadResponse(ReadResponse {
                log_id: 1,
                segment: 2,
                from_offset: 0,
                count: 0,
                watermark: 0,
                sealed_len: Some(4),
                records: vec![],
            }),
            Message::Seal(Seal {
                log_id: 1,
                segment: 2,
                epoch: 3,
                len: 4,
            }),
            Message::SealAck(SealAck {
                log_id: 1,
                segment: 2,
                len: 4,
            }),
            Message::Fence(Fence {
                log_id: 1,
                segment: 2,
                epoch: 3,
            }),
            Message::FenceAck(FenceAck {
                log_id: 1,
                segment: 2,
                epoch: 3,
                durable_len: 4,
                watermark: 2,
                sealed_len: None,
            }),
            Message::ErrorMsg(ErrorMsg {
                code: ErrorCode::Gap,
                log_id: 1,
                segment: 2,
                value: 3,
                message: "gap".into(),
            }),
            Message::MetaCasLog(MetaCasLog {
                log_id: 1,
                expected_version: 0,
                record: LogMeta {
                    log_id: 1,
                    epoch: 1,
                    trim_seq: 0,
                    segments: vec![SegmentMeta {
                        id: 0,
                        replicas: vec![1, 2, 3],
                        first_seq: 0,
                        epoch: 1,
                        sealed_len: None,
                    }],
                    deleting: Vec::new(),
                    deleted: false,
                },
            }),
            Message::MetaNodes(MetaNodes {
                nodes: vec![NodeStatus {
                    info: NodeInfo {
                        node_id: 1,
                        host: "127.0.0.1".into(),
                        shard_ports: vec![7000],
                        zone: "z".into(),
                        capacity_bytes: 0,
                        incarnation: 9,
                        bytes_used: 0,
                        bytes_free: 0,
                        full: false,
                    },
                    alive: true,
                    lease_remaining_ms: 10,
                    mode: NodeMode::Leaving,
                }],
            }),
            Message::MetaRegistered(MetaRegistered {
                lease_ms: 3000,
                mode: NodeMode::Removed,
            }),
            Message::MetaSetNodeMode(MetaSetNodeMode {
                node_id: 4,
                mode: NodeMode::Leaving,
            }),
            Message::MetaGetNodeModes(MetaGetNodeModes { reserved: 0 }),
            Message::MetaDeregister(MetaDeregister {
                node_id: 4,
                incarnation: 77,
            }),
            Message::MetaDeregistered(MetaDeregistered { removed: true }),
            Message::MetaNodeModes(MetaNodeModes {
                modes: vec![
                    NodeModeEntry {
                        node_id: 4,
                        mode: NodeMode::Leaving,
                    },
                    NodeModeEntry {
                        node_id: 9,
                        mode: NodeMode::Removed,
                    },
                ],
            }),
            Message::MetaGetCluster(MetaGetCluster { reserved: 0 }),
            Message::MetaCluster(MetaCluster {
                cluster_id: u64::MAX - 7,
            }),
            Message::MetaRegisterRefused(MetaRegisterRefused {
                node_id: 2,
                holder: NodeInfo {
                    node_id: 2,
                    host: "127.0.0.1".into(),
                    shard_ports: vec![7001],
                    zone: String::new(),
                    capacity_bytes: 0,
                    incarnation: 11,
                    bytes_used: 0,
                    bytes_free: 0,
                    full: false,
                },
                lease_remaining_ms: 900,
            }),
        ];
        for m in msgs {
            let bytes = m.encode(3);
            let (_, back, _) = decode(&bytes).expect("decodes");
            assert_eq!(back, m);
            assert_eq!(back.kind(), m.kind());
        }
    }
}
