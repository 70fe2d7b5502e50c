//! The identity file, `<data dir>/identity`: which node a data directory
//! belongs to, in which cluster, and which incarnation of that node it is.
//!
//! It is text, so an operator can read it, and checksummed, so a torn or
//! edited file is refused rather than believed:
//!
//! ```text
//! # trilog node identity: written at this directory's first start.
//! # Do not edit it, and never copy it to another node's directory.
//! format = 1
//! node_id = 2
//! cluster_id = 3f9c0a61d2b7e845
//! incarnation = 91d04c2ee07a3b16
//! crc32c = 5a1f09c3
//! ```
//!
//! - `node_id`: decimal, not 0: the `--node-id` this directory was created
//!   with.
//! - `cluster_id`: 16 hex digits, the metadata store's cluster id, or
//!   `none` for a node started without a store (learned at the first start
//!   with one).
//! - `incarnation`: 16 hex digits, not 0, drawn at random when the file is
//!   first written; it is the `incarnation` of every registration of this
//!   directory's node, so the store can tell this node restarted from
//!   another process claiming the same id.
//! - `crc32c`: 8 hex digits, the CRC-32C of every byte before the
//!   `crc32c = ` line.
//!
//! Lines starting with `#` are comments (covered by the crc). The keys come
//! in this order, once each. A write is durable before the node goes on:
//! `identity.tmp` is written and fsynced, renamed over `identity`, and the
//! directory fsynced, so after a crash the file is whole or absent.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use trilog_meta::{format_cluster_id, parse_cluster_id};

pub const IDENTITY_FILE_NAME: &str = "identity";
pub const IDENTITY_TEMP_FILE_NAME: &str = "identity.tmp";
pub const IDENTITY_FORMAT: u32 = 1;
/// Far more than a valid file takes: a larger file is not one.
pub const IDENTITY_FILE_BYTES_MAX: u64 = 4096;

const HEADER: &str = "# trilog node identity: written at this directory's first start.\n\
                      # Do not edit it, and never copy it to another node's directory.\n";
const CRC_KEY: &str = "crc32c = ";

/// What a data directory's identity file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeIdentity {
    pub node_id: u64,
    /// None: written by a node started without a metadata store.
    pub cluster_id: Option<u64>,
    pub incarnation: u64,
}

/// Why an identity file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum IdentityFileError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path} is not a valid identity file ({reason}); refusing to guess whose directory this is"
    )]
    Invalid { path: PathBuf, reason: String },
}

impl NodeIdentity {
    /// The file's whole text.
    pub fn encode(&self) -> String {
        assert_ne!(self.node_id, 0);
        assert_ne!(self.incarnation, 0);
        let cluster = self
            .cluster_id
            .map_or_else(|| "none".to_string(), format_cluster_id);
        let body = format!(
            "{HEADER}format = {IDENTITY_FORMAT}\nnode_id = {}\ncluster_id = {cluster}\nincarnation = {:016x}\n",
            self.node_id, self.incarnation
        );
        let crc = crc32c::crc32c(body.as_bytes());
        format!("{body}{CRC_KEY}{crc:08x}\n")
    }

    /// Parses and checks a file's text; the error says what is wrong.
    pub fn parse(text: &str) -> Result<NodeIdentity, String> {
        let body_end = text
            .rfind(CRC_KEY)
            .ok_or_else(|| "no crc32c line".to_string())?;
        let (body, crc_line) = text.split_at(body_end);
        if !body.is_empty() && !body.ends_with('\n') {
            return Err("the crc32c line does not start a line".into());
        }
        let carried = crc_line[CRC_KEY.len()..]
            .strip_suffix('\n')
            .filter(|h| h.len() == 8)
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| "the crc32c line is not 8 hex digits and a newline".to_string())?;
        let computed = crc32c::crc32c(body.as_bytes());
        if computed != carried {
            return Err(format!(
                "crc mismatch: computed {computed:08x}, carried {carried:08x}"
            ));
        }
        let mut fields = body.lines().filter(|l| !l.starts_with('#')).map(|l| {
            l.split_once(" = ")
                .ok_or_else(|| format!("not `key = value`: {l:?}"))
        });
        let mut next = |key: &str| -> Result<String, String> {
            match fields.next() {
                Some(Ok((k, v))) if k == key => Ok(v.to_string()),
                Some(Ok((k, _))) => Err(format!("found {k:?} where {key:?} was expected")),
                Some(Err(e)) => Err(e),
                None => Err(format!("no {key:?}")),
            }
        };
        let format = next("format")?;
        if format != IDENTITY_FORMAT.to_string() {
            return Err(format!("unsupported format {format:?}"));
        }
        let node_id = next("node_id")?
            .parse::<u64>()
            .ok()
            .filter(|&id| id != 0)
            .ok_or_else(|| "node_id is not a non-zero decimal".to_string())?;
        let cluster_id = match next("cluster_id")?.as_str() {
            "none" => None,
            hex => Some(parse_cluster_id(hex).ok_or_else(|| format!("bad cluster_id {hex:?}"))?),
        };
        let incarnation = parse_cluster_id(&next("incarnation")?)
            .ok_or_else(|| "incarnation is not 16 hex digits, non-zero".to_string())?;
        if let Some(extra) = fields.next() {
            return Err(format!("unexpected line after incarnation: {extra:?}"));
        }
        Ok(NodeIdentity {
            node_id,
            cluster_id,
            incarnation,
        })
    }
}

/// The identity file of `dir`, if it has one.
pub fn load(dir: &Path) -> Result<Option<NodeIdentity>, IdentityFileError> {
    let path = dir.join(IDENTITY_FILE_NAME);
    let len = match fs::metadata(&path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("stat", &path)(e)),
    };
    let invalid = |reason: String| IdentityFileError::Invalid {
        path: path.clone(),
        reason,
    };
    if len > IDENTITY_FILE_BYTES_MAX {
        return Err(invalid(format!("{len} bytes")));
    }
    let bytes = fs::read(&path).map_err(io_err("read", &path))?;
    let text = String::from_utf8(bytes).map_err(|_| invalid("not UTF-8".into()))?;
    NodeIdentity::parse(&text).map(Some).map_err(invalid)
}

/// Writes `identity` as `dir`'s identity file, durably (see the module doc).
pub fn save(dir: &Path, identity: &NodeIdentity) -> Result<(), IdentityFileError> {
    trilog_meta::persist::replace_durably(
        dir,
        IDENTITY_TEMP_FILE_NAME,
        IDENTITY_FILE_NAME,
        identity.encode().as_bytes(),
    )
    .map_err(|(op, path, source)| IdentityFileError::Io { op, path, source })
}

fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> IdentityFileError + 'a {
    move |source| IdentityFileError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NodeIdentity {
        NodeIdentity {
            node_id: 2,
            cluster_id: Some(0x3f9c_0a61_d2b7_e845),
            incarnation: 0x91d0_4c2e_e07a_3b16,
        }
    }

    #[test]
    fn identity_roundtrips_with_and_without_cluster() {
        for identity in [
            sample(),
            NodeIdentity {
                cluster_id: None,
                ..sample()
            },
        ] {
            let text = identity.encode();
            assert_eq!(NodeIdentity::parse(&text), Ok(identity), "{text}");
        }
        let text = sample().encode();
        assert!(text.contains("node_id = 2\n"), "{text}");
        assert!(text.contains("cluster_id = 3f9c0a61d2b7e845\n"), "{text}");
    }

    #[test]
    fn identity_damage_and_edits_are_refused() {
        let good = sample().encode();
        // Every single-byte change of the file is caught.
        for at in 0..good.len() {
            let mut bytes = good.clone().into_bytes();
            bytes[at] ^= 0x01;
            if let Ok(text) = String::from_utf8(bytes) {
                assert!(
                    NodeIdentity::parse(&text).is_err(),
                    "byte {at} flipped: accepted"
                );
            }
        }
        assert!(NodeIdentity::parse("").is_err());
        assert!(NodeIdentity::parse(&good[..good.len() - 1]).is_err());
        assert!(NodeIdentity::parse(&format!("{good}x")).is_err());
        // An edit with a recomputed crc is still checked field by field.
        let sealed =
            |body: &str| format!("{body}{CRC_KEY}{:08x}\n", crc32c::crc32c(body.as_bytes()));
        let cases = [
            "format = 2\nnode_id = 2\ncluster_id = none\nincarnation = 0000000000000001\n",
            "format = 1\nnode_id = 0\ncluster_id = none\nincarnation = 0000000000000001\n",
            "format = 1\nnode_id = 2\ncluster_id = 12\nincarnation = 0000000000000001\n",
            "format = 1\nnode_id = 2\ncluster_id = none\nincarnation = 0000000000000000\n",
            "format = 1\ncluster_id = none\nnode_id = 2\nincarnation = 0000000000000001\n",
            "format = 1\nnode_id = 2\ncluster_id = none\nincarnation = 0000000000000001\nx = 1\n",
            "format = 1\nnode_id = 2\ncluster_id = none\n",
        ];
        for body in cases {
            assert!(NodeIdentity::parse(&sealed(body)).is_err(), "{body}");
        }
        let ok =
            sealed("format = 1\nnode_id = 2\ncluster_id = none\nincarnation = 0000000000000001\n");
        assert_eq!(
            NodeIdentity::parse(&ok),
            Ok(NodeIdentity {
                node_id: 2,
                cluster_id: None,
                incarnation: 1
            })
        );
    }

    #[test]
    fn identity_file_saves_loads_and_refuses_garbage() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(load(dir.path()), Ok(None)));
        save(dir.path(), &sample()).expect("saves");
        assert_eq!(load(dir.path()).expect("loads"), Some(sample()));
        assert!(!dir.path().join(IDENTITY_TEMP_FILE_NAME).exists());
        fs::write(dir.path().join(IDENTITY_FILE_NAME), b"node_id = 2\n").expect("write");
        match load(dir.path()) {
            Err(IdentityFileError::Invalid { path, .. }) => {
                assert!(path.ends_with(IDENTITY_FILE_NAME))
            }
            other => panic!("garbage accepted: {other:?}"),
        }
    }
}
