//! The invariants of the model check, judged on a simulated cluster after
//! every step: on what the clients observed (the ghost), on the metadata
//! record as the store holds it, and on what is durable on the simulated
//! disks (read as a crash now would leave it, not as a node says).
//!
//! - **CommitDurability**: every entry a producer reported committed, or a
//!   consumer was given, is durable, with its payload, on every replica of
//!   the segment the current record places it in.
//! - **ReadCommitted**: a consumer is given only such entries (judged when
//!   it is given one).
//! - **LogOrder**: each consumer sees seqs dense from where it started, and
//!   one seq has one payload everywhere (every producer's report, every
//!   consumer's read).
//! - **SealedComplete**: every replica of a sealed segment durably holds its
//!   whole sealed prefix, and the replicas agree on every entry of it.
//! - **RealFence** (judged by the harness): a producer stops as fenced only
//!   by an epoch the record really reached.
//!
//! The disk images are parsed once per change of a disk, so checking after
//! every step stays cheap.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use trilog_node::storage::{SegmentKey, SEGMENT_HEADER_BYTES};
use trilog_protocol::metadata::{locate, Location};
use trilog_wire::message::shard_of;
use trilog_wire::meta::LogMeta;
use trilog_wire::record::{parse_record, Parsed};

use crate::disk::SimDisk;

/// A broken invariant: its name and what broke it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub property: &'static str,
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} violated: {}", self.property, self.detail)
    }
}

fn violation(property: &'static str, detail: String) -> Violation {
    Violation { property, detail }
}

/// Where a node keeps its segments.
#[derive(Clone)]
pub struct NodeDisk {
    pub disk: SimDisk,
    pub data_dir: PathBuf,
    pub shards: u32,
}

impl NodeDisk {
    fn segment_path(&self, log_id: u64, segment: u64) -> PathBuf {
        let shard = shard_of(log_id, segment, self.shards);
        let dir = self.data_dir.join(format!("shard-{shard}"));
        SegmentKey { log_id, segment }.data_path(&dir)
    }
}

/// The records of one durable data file: per offset, the payload.
type Image = Vec<Vec<u8>>;

/// Parses a data file's durable bytes: the records after the header
/// block, up to the first that is not a whole valid record.
fn parse_image(bytes: &[u8]) -> Image {
    let mut out = Vec::new();
    let mut pos = SEGMENT_HEADER_BYTES as usize;
    while let Some(rest) = bytes.get(pos..) {
        match parse_record(rest, out.len() as u64) {
            Ok(Parsed::Record { header, payload }) => {
                pos += header.encoded_len();
                out.push(payload.to_vec());
            }
            _ => break,
        }
    }
    out
}

/// What every consumer and producer observed, and the cache of parsed
/// disk images.
#[derive(Default)]
pub struct Checker {
    /// seq -> payload: every seq reported committed or read.
    committed: BTreeMap<u64, Vec<u8>>,
    /// consumer -> the seq it must be given next.
    next_read: BTreeMap<u32, u64>,
    /// (node, path) -> (the disk's change count when parsed, the image).
    images: BTreeMap<(u64, PathBuf), (u64, Image)>,
    /// The record version and disk change counts of the last full check.
    last_full: Option<(u64, Vec<u64>)>,
}

impl Checker {
    pub fn new() -> Checker {
        Checker::default()
    }

    /// Entries known committed so far.
    pub fn committed(&self) -> &BTreeMap<u64, Vec<u8>> {
        &self.committed
    }

    /// The seq consumer `c` reads next (from where it started).
    pub fn next_read(&self, consumer: u32) -> Option<u64> {
        self.next_read.get(&consumer).copied()
    }

    /// One seq, one payload.
    fn learn(&mut self, seq: u64, payload: &[u8], who: &str) -> Result<(), Violation> {
        match self.committed.get(&seq) {
            Some(known) if known.as_slice() != payload => Err(violation(
                "LogOrder",
                format!(
                    "seq {seq}: {who} has payload {:?}, another saw {:?}",
                    short(payload),
                    short(known)
                ),
            )),
            Some(_) => Ok(()),
            None => {
                self.committed.insert(seq, payload.to_vec());
                // Forces the next full check.
                self.last_full = None;
                Ok(())
            }
        }
    }

    /// A producer reported `seq` committed with `payload`.
    pub fn on_committed(
        &mut self,
        producer: &str,
        seq: u64,
        payload: &[u8],
    ) -> Result<(), Violation> {
        self.learn(seq, payload, producer)
    }

    /// Consumer `c`, which started at `start`, was given `seq` with
    /// `payload`. Judged against `record` and the disks now.
    pub fn on_read(
        &mut self,
        c: u32,
        start: u64,
        seq: u64,
        payload: &[u8],
        record: Option<&LogMeta>,
        nodes: &BTreeMap<u64, NodeDisk>,
    ) -> Result<(), Violation> {
        let expected = *self.next_read.entry(c).or_insert(start);
        if seq != expected {
            return Err(violation(
                "LogOrder",
                format!("consumer {c} was given seq {seq} where {expected} comes next"),
            ));
        }
        self.next_read.insert(c, seq + 1);
        self.learn(seq, payload, &format!("consumer {c}"))?;
        self.durable_everywhere(seq, payload, record, nodes)
            .map_err(|d| violation("ReadCommitted", format!("consumer {c} was given {d}")))
    }

    fn image(&mut self, node: u64, nd: &NodeDisk, path: &Path) -> Option<&Image> {
        let changes = nd.disk.changes();
        let key = (node, path.to_path_buf());
        let fresh = self.images.get(&key).is_some_and(|(at, _)| *at == changes);
        if !fresh {
            let bytes = nd.disk.durable_data(path)?;
            self.images
                .insert(key.clone(), (changes, parse_image(&bytes)));
        }
        self.images.get(&key).map(|(_, image)| image)
    }

    /// `seq` with `payload` is durable on every replica of its segment.
    fn durable_everywhere(
        &mut self,
        seq: u64,
        payload: &[u8],
        record: Option<&LogMeta>,
        nodes: &BTreeMap<u64, NodeDisk>,
    ) -> Result<(), String> {
        let Some(record) = record else {
            return Err(format!("seq {seq} of a log with no record"));
        };
        let (index, offset) = match locate(record, seq) {
            Location::At { index, offset, .. } => (index, offset),
            Location::PastEnd => {
                return Err(format!(
                    "seq {seq}, which the record places past the end of the log"
                ))
            }
            // Nothing is trimmed in these runs.
            Location::Trimmed => return Err(format!("seq {seq}, before the trim point")),
        };
        let seg = &record.segments[index];
        for node in &seg.replicas {
            let Some(nd) = nodes.get(node) else {
                return Err(format!(
                    "seq {seq}: segment {} names unknown node {node}",
                    seg.id
                ));
            };
            let path = nd.segment_path(record.log_id, seg.id);
            let held = self
                .image(*node, nd, &path)
                .and_then(|image| image.get(offset as usize).cloned());
            match held {
                Some(p) if p == payload => {}
                Some(p) => {
                    return Err(format!(
                        "seq {seq} (segment {} offset {offset}): node {node} holds {:?}, not {:?}",
                        seg.id,
                        short(&p),
                        short(payload)
                    ))
                }
                None => {
                    return Err(format!(
                        "seq {seq} (segment {} offset {offset}): not durable on node {node}",
                        seg.id
                    ))
                }
            }
        }
        Ok(())
    }

    /// CommitDurability and SealedComplete, if the record or a disk changed
    /// since the last time.
    pub fn check_durable(
        &mut self,
        record_version: u64,
        record: Option<&LogMeta>,
        nodes: &BTreeMap<u64, NodeDisk>,
    ) -> Result<(), Violation> {
        let stamp = (
            record_version,
            nodes.values().map(|n| n.disk.changes()).collect::<Vec<_>>(),
        );
        if self.last_full.as_ref() == Some(&stamp) {
            return Ok(());
        }
        let known: Vec<(u64, Vec<u8>)> = self
            .committed
            .iter()
            .map(|(s, p)| (*s, p.clone()))
            .collect();
        for (seq, payload) in known {
            self.durable_everywhere(seq, &payload, record, nodes)
                .map_err(|d| violation("CommitDurability", format!("committed {d}")))?;
        }
        if let Some(record) = record {
            self.sealed_complete(record, nodes)?;
        }
        self.last_full = Some(stamp);
        Ok(())
    }

    fn sealed_complete(
        &mut self,
        record: &LogMeta,
        nodes: &BTreeMap<u64, NodeDisk>,
    ) -> Result<(), Violation> {
        for seg in &record.segments {
            let Some(len) = seg.sealed_len else { continue };
            let mut first: Option<(u64, Image)> = None;
            for node in &seg.replicas {
                let Some(nd) = nodes.get(node) else { continue };
                let path = nd.segment_path(record.log_id, seg.id);
                let prefix: Image = self
                    .image(*node, nd, &path)
                    .map(|image| image.iter().take(len as usize).cloned().collect())
                    .unwrap_or_default();
                if (prefix.len() as u64) < len {
                    return Err(violation(
                        "SealedComplete",
                        format!(
                            "segment {} sealed at {len}: node {node} durably holds {}",
                            seg.id,
                            prefix.len()
                        ),
                    ));
                }
                match &first {
                    None => first = Some((*node, prefix)),
                    Some((other, theirs)) if *theirs != prefix => {
                        let at = theirs.iter().zip(&prefix).position(|(a, b)| a != b);
                        return Err(violation(
                            "SealedComplete",
                            format!(
                                "segment {}: nodes {other} and {node} differ at offset {at:?}",
                                seg.id
                            ),
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(())
    }
}

/// A payload, shortened for a message.
fn short(p: &[u8]) -> String {
    let text = String::from_utf8_lossy(&p[..p.len().min(24)]).into_owned();
    if p.len() > 24 {
        format!("{text}...")
    } else {
        text
    }
}
