//! Encodings shared by the disk and the wire: one bincode configuration
//! (varint integers, little-endian, a size limit on every decode so a bad
//! length cannot make us allocate gigabytes), byte strings encoded as
//! blocks, and the checksummed record every file of a node is made of.
//!
//! A record is, little-endian:
//!
//! ```text
//! offset 0  u32  body length in bytes (1 ..= the record's limit)
//! offset 4  u32  crc32c of the body
//! offset 8  body (bincode)
//! ```
//!
//! A zero length (preallocated, never written space), a length past the
//! limit, a short body or a checksum mismatch all read as "no record
//! here": the end of a log.

use std::collections::VecDeque;

use bincode::Options;
use serde::de::{DeserializeOwned, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Bytes before a record's body.
pub const RECORD_HEADER_BYTES: usize = 8;

/// The one bincode configuration, limited to `limit_bytes` per value.
fn options(limit_bytes: usize) -> impl Options {
    bincode::DefaultOptions::new()
        .with_little_endian()
        .with_varint_encoding()
        .with_limit(limit_bytes as u64)
}

/// Appends `value` encoded to `buf`.
pub fn encode_into<T: Serialize>(
    buf: &mut Vec<u8>,
    value: &T,
    limit_bytes: usize,
) -> Result<(), bincode::Error> {
    options(limit_bytes).serialize_into(buf, value)
}

/// Decodes one value that spans all of `bytes`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], limit_bytes: usize) -> Result<T, bincode::Error> {
    options(limit_bytes).deserialize(bytes)
}

/// Appends one record holding `value` to `buf`; returns the record's size.
pub fn encode_record<T: Serialize>(
    buf: &mut Vec<u8>,
    value: &T,
    limit_bytes: usize,
) -> Result<usize, bincode::Error> {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; RECORD_HEADER_BYTES]);
    if let Err(e) = encode_into(buf, value, limit_bytes) {
        buf.truncate(start);
        return Err(e);
    }
    let body = &buf[start + RECORD_HEADER_BYTES..];
    let body_len = body.len();
    debug_assert!(body_len <= limit_bytes);
    let crc = crc32c::crc32c(body);
    buf[start..start + 4].copy_from_slice(&(body_len as u32).to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(RECORD_HEADER_BYTES + body_len)
}

/// The body of the record at the start of `bytes` and the record's size,
/// or `None` if there is no intact record there.
pub fn read_record(bytes: &[u8], limit_bytes: usize) -> Option<(&[u8], usize)> {
    let header = bytes.get(..RECORD_HEADER_BYTES)?;
    let body_len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if body_len == 0 || body_len > limit_bytes {
        return None;
    }
    let body = bytes.get(RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + body_len)?;
    (crc32c::crc32c(body) == crc).then_some((body, RECORD_HEADER_BYTES + body_len))
}

/// Serde for a list of byte strings as blocks (serde's default for
/// `Vec<u8>` is a sequence of single bytes: one call per byte).
pub mod payloads {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|p| Bytes(p)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        let v: Vec<ByteBuf> = Vec::deserialize(d)?;
        Ok(v.into_iter().map(|b| b.0).collect())
    }
}

/// [`payloads`] for a deque.
pub mod payload_deque {
    use super::*;

    pub fn serialize<S: Serializer>(v: &VecDeque<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|p| Bytes(p)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<VecDeque<Vec<u8>>, D::Error> {
        let v: Vec<ByteBuf> = Vec::deserialize(d)?;
        Ok(v.into_iter().map(|b| b.0).collect())
    }
}

/// Serde for one byte string as a block.
pub mod bytes {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        ByteBuf::deserialize(d).map(|b| b.0)
    }
}

struct Bytes<'a>(&'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

struct ByteBuf(Vec<u8>);

impl<'de> Deserialize<'de> for ByteBuf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ByteBuf, D::Error> {
        d.deserialize_byte_buf(ByteBufVisitor)
    }
}

struct ByteBufVisitor;

impl<'de> Visitor<'de> for ByteBufVisitor {
    type Value = ByteBuf;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<ByteBuf, E> {
        Ok(ByteBuf(v.to_vec()))
    }

    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<ByteBuf, E> {
        Ok(ByteBuf(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ByteBuf, A::Error> {
        let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(b) = seq.next_element()? {
            v.push(b);
        }
        Ok(ByteBuf(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_rejects_damage() {
        let mut buf = Vec::new();
        let n = encode_record(&mut buf, &(7u64, "abc".to_string()), 1024).expect("encode");
        assert_eq!(n, buf.len());
        let (body, used) = read_record(&buf, 1024).expect("intact");
        assert_eq!(used, n);
        let v: (u64, String) = decode(body, 1024).expect("decode");
        assert_eq!(v, (7, "abc".to_string()));
        let mut bad = buf.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(read_record(&bad, 1024).is_none(), "checksum mismatch");
        assert!(read_record(&buf[..n - 1], 1024).is_none(), "short body");
        assert!(read_record(&[0u8; 16], 1024).is_none(), "zeroes");
        assert!(read_record(&buf, 2).is_none(), "over the limit");
    }

    #[test]
    fn payloads_encode_as_blocks() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct P(#[serde(with = "payloads")] Vec<Vec<u8>>);
        let p = P(vec![vec![1, 2, 3], vec![], vec![9; 1000]]);
        let mut buf = Vec::new();
        encode_into(&mut buf, &p, 1 << 20).expect("encode");
        assert!(buf.len() < 1000 + 16);
        assert_eq!(decode::<P>(&buf, 1 << 20).expect("decode"), p);
    }
}
