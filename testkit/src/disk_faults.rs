//! Disk faults on a node's segment files, as a failing disk or a careless
//! operator would cause them: a flipped byte inside a record, a file cut
//! inside a record. For tests and the chaos run; the node must notice
//! both (recovery or the scrub) and never serve the damaged entries.

use std::io::Write;
use std::path::{Path, PathBuf};

use trilog_wire::record::{parse_record, Parsed, RECORD_HEADER_BYTES};

/// Where a segment data file's records start (its header block).
pub const SEGMENT_HEADER_BYTES: usize = 4096;

/// How to harm a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Harm {
    /// Flip one bit of a byte inside the record's payload (or its header,
    /// for an empty payload).
    FlipByte,
    /// Cut the file inside the record.
    Truncate,
}

/// Why a fault could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DiskFaultError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: record {offset} of {len} is not intact ({why})")]
    NotIntact {
        path: PathBuf,
        offset: u64,
        len: u64,
        why: String,
    },
}

/// The data file of `log_id`'s segment `segment` anywhere under `dir`.
pub fn find_segment_file(dir: &Path, log_id: u64, segment: u64) -> Option<PathBuf> {
    let name = format!("{log_id:016x}-{segment:016x}.seg");
    for entry in std::fs::read_dir(dir).ok()? {
        let path = entry.ok()?.path();
        if path.is_dir() {
            if let Some(found) = find_segment_file(&path, log_id, segment) {
                return Some(found);
            }
        } else if path.file_name().is_some_and(|n| n == name.as_str()) {
            return Some(path);
        }
    }
    None
}

/// File positions of the first `len` records of a data file's bytes, and
/// each record's encoded length.
pub fn record_positions(bytes: &[u8], len: u64) -> Result<Vec<(usize, usize)>, (u64, String)> {
    let mut positions = Vec::new();
    let mut pos = SEGMENT_HEADER_BYTES;
    for offset in 0..len {
        let rest = bytes
            .get(pos..)
            .ok_or((offset, "past the end".to_string()))?;
        match parse_record(rest, offset) {
            Ok(Parsed::Record { header, .. }) => {
                positions.push((pos, header.encoded_len()));
                pos += header.encoded_len();
            }
            Ok(Parsed::End) => return Err((offset, "the file ends".into())),
            Err(e) => return Err((offset, e.to_string())),
        }
    }
    Ok(positions)
}

/// Harms record `which` (of the `len` the file holds) in place; returns
/// its offset.
pub fn harm(path: &Path, len: u64, which: u64, how: Harm) -> Result<u64, DiskFaultError> {
    assert!(which < len, "record {which} of {len}");
    let io = |source| DiskFaultError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bytes = std::fs::read(path).map_err(io)?;
    let positions =
        record_positions(&bytes, len).map_err(|(offset, why)| DiskFaultError::NotIntact {
            path: path.to_path_buf(),
            offset,
            len,
            why,
        })?;
    let (at, encoded) = positions[which as usize];
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io)?;
    match how {
        Harm::FlipByte => {
            // The middle of the payload, or of the header if it is empty.
            let inside = if encoded > RECORD_HEADER_BYTES {
                RECORD_HEADER_BYTES + (encoded - RECORD_HEADER_BYTES) / 2
            } else {
                encoded / 2
            };
            let pos = at + inside;
            use std::io::{Seek, SeekFrom};
            file.seek(SeekFrom::Start(pos as u64)).map_err(io)?;
            file.write_all(&[bytes[pos] ^ 0x01]).map_err(io)?;
        }
        Harm::Truncate => file.set_len((at + encoded / 2) as u64).map_err(io)?,
    }
    file.sync_all().map_err(io)?;
    Ok(which)
}
