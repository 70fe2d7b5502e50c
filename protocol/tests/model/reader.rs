//! The model's consumer: a production [`Cursor`] reading with the record
//! as it last read it, which may be stale.

use trilog_protocol::consumer::{Cursor, Step};
use trilog_protocol::metadata::LogMeta;

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
        let meta = s.consumer.meta.record(&s.meta);
        let c = &mut s.consumer;
        let Step::Read {
            segment,
            node,
            from_offset,
            limit,
        } = c.cursor.next_step(&meta)
        else {
            return false;
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
        } = cursor.next_step(&s.consumer.meta.record(&s.meta))
        else {
            return true;
        };
        let n = &s.nodes[node as usize - 1];
        n.seg(segment).rep.readable_end(limit) <= from_offset
    }
}

/// A version of the record, as the consumer read it. The record only
/// grows (segments are appended, the last one is sealed, nothing else
/// changes), so a past version is the current one cut to its first
/// `segments`, with the last of them open again unless `last_sealed`. The
/// epoch is left out: the consumer does not read it (states that differ
/// only there merge).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Snapshot {
    pub segments: u8,
    pub last_sealed: bool,
}

impl Snapshot {
    pub fn of(meta: &LogMeta) -> Snapshot {
        Snapshot {
            segments: meta.segments.len() as u8,
            last_sealed: meta.segments.last().is_some_and(|s| s.sealed_len.is_some()),
        }
    }

    /// The record as it was at this version.
    pub fn record(&self, current: &LogMeta) -> LogMeta {
        let mut meta = LogMeta {
            epoch: 0,
            segments: current.segments[..self.segments as usize].to_vec(),
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
