//! The model's consumer: a production [`Cursor`] reading with the record
//! as it last read it, which may be stale.

use trilog_protocol::consumer::{Cursor, Step};
use trilog_protocol::metadata::LogMeta;
use trilog_wire::meta::SegmentMeta;

use crate::model::net::Tag;
use crate::model::{State, Trilog};

/// The reader: a production [`Cursor`] and the metadata record as it last
/// read it (it may be stale).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Consumer {
    pub cursor: Cursor,
    pub meta: Snapshot,
    /// Ghost: every entry it was given, (seq, payload), in order.
    pub reads: Vec<(u64, Tag)>,
}

impl Trilog {
    /// The consumer's next read, if it gets anything.
    pub(crate) fn read(&self, s: &mut State) -> bool {
        let meta = s.consumer.meta.record(&s.meta, &s.ghost.trimmed);
        let c = &mut s.consumer;
        let (segment, node, from_offset, limit) = match c.cursor.next_step(&meta) {
            Step::Read {
                segment,
                node,
                from_offset,
                limit,
            } => (segment, node, from_offset, limit),
            // The client's reader returns `ClientError::Trimmed` naming
            // the first readable seq: this consumer stops there.
            Step::Trimmed { .. } => {
                let first = !s.ghost.met_trim;
                s.ghost.met_trim = true;
                return first;
            }
            _ => return false,
        };
        let n = &s.nodes[node as usize - 1];
        let seg = n.seg(segment);
        if seg.gone {
            // Answered `Deleted`: nothing read.
            return false;
        }
        let end = seg.rep.readable_end(limit);
        if end <= from_offset {
            return false;
        }
        let tags: Vec<Tag> = seg.recs[from_offset as usize..end as usize]
            .iter()
            .map(|(t, _)| *t)
            .collect();
        let Ok(first) = c.cursor.on_read(segment, from_offset, tags.len() as u64) else {
            return false;
        };
        for (i, t) in tags.into_iter().enumerate() {
            c.reads.push((first + i as u64, t));
        }
        s.ghost.read_after_crash |= n.crashed;
        true
    }

    /// Whether the consumer has nothing to read with what it knows.
    pub(crate) fn consumer_stuck(&self, s: &State) -> bool {
        let mut cursor = s.consumer.cursor.clone();
        let Step::Read {
            segment,
            node,
            from_offset,
            limit,
        } = cursor.next_step(&s.consumer.meta.record(&s.meta, &s.ghost.trimmed))
        else {
            return true;
        };
        let seg = s.nodes[node as usize - 1].seg(segment);
        seg.gone || seg.rep.readable_end(limit) <= from_offset
    }
}

/// A version of the record, as the consumer read it. The chain only
/// grows at its end (segments are appended, the last one is sealed,
/// nothing else changes) and loses segments at its start (a trim moves
/// them out, kept in the ghost `trimmed`, never changed again since they
/// are sealed), so a past version's chain is the `segments` segments from
/// id `first` on of the trimmed ones followed by the current chain, with
/// the last of them open again unless `last_sealed`, and its trim point
/// `trim_seq`. The epoch is left out: the consumer does not read it
/// (states that differ only there merge).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Snapshot {
    pub first: u64,
    pub segments: u8,
    pub last_sealed: bool,
    pub trim_seq: u64,
}

impl Snapshot {
    pub fn of(meta: &LogMeta) -> Snapshot {
        Snapshot {
            first: meta.segments.first().map_or(0, |s| s.id),
            segments: meta.segments.len() as u8,
            last_sealed: meta.segments.last().is_some_and(|s| s.sealed_len.is_some()),
            trim_seq: meta.trim_seq,
        }
    }

    /// The record as it was at this version, given the segments trims
    /// took out of the chain since.
    pub fn record(&self, current: &LogMeta, trimmed: &[SegmentMeta]) -> LogMeta {
        let segments = trimmed
            .iter()
            .chain(&current.segments)
            .filter(|g| g.id >= self.first)
            .take(self.segments as usize)
            .cloned()
            .collect();
        let mut meta = LogMeta {
            epoch: 0,
            segments,
            trim_seq: self.trim_seq,
            ..current.clone()
        };
        if !self.last_sealed {
            if let Some(last) = meta.segments.last_mut() {
                last.sealed_len = None;
            }
        }
        meta
    }
}
