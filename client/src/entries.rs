//! Turning a byte stream into log entries, for `trilog append`: the bytes
//! of each entry are kept exactly (no text decoding, no line-ending
//! rewriting), each entry is checked against the entry limit, and input
//! is never dropped without an error.
//!
//! Formats:
//! - [`Format::Raw`]: fixed chunks of `chunk` bytes (the last one shorter);
//!   a file appended this way reads back (`trilog read --raw`) byte for
//!   byte;
//! - [`Format::Lines`]: one entry per line, without its `\n` (a `\r` before
//!   it is kept); a last line without `\n` is an entry too;
//! - [`Format::LengthPrefixed`]: a u32 little-endian length, then that many
//!   bytes; a stream that ends inside a length or an entry is an error.
//!
//! [`EntryReader`] reads from any `std::io::Read` as entries arrive, so a
//! pipe is streamed, not read whole first.

use std::io::{self, BufRead, BufReader, Read};

/// How a byte stream is cut into entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Raw { chunk: usize },
    Lines,
    LengthPrefixed,
}

/// Why the input could not be turned into entries.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("entry {index} is {len} bytes, over the limit of {max} bytes")]
    TooLarge { index: u64, len: u64, max: usize },
    #[error("the input ends inside entry {index} ({what})")]
    Truncated { index: u64, what: &'static str },
    #[error("reading the input: {0}")]
    Io(#[from] io::Error),
}

/// Entries read one at a time from `input` (see the module doc).
pub struct EntryReader<R: Read> {
    input: BufReader<R>,
    format: Format,
    max: usize,
    index: u64,
    done: bool,
}

impl<R: Read> EntryReader<R> {
    /// Entries of at most `max` bytes. A raw chunk over `max` is a
    /// caller's bug: the chunk is checked against the limit before
    /// anything is read.
    pub fn new(input: R, format: Format, max: usize) -> EntryReader<R> {
        if let Format::Raw { chunk } = format {
            assert!(
                chunk > 0 && chunk <= max,
                "chunk of {chunk} bytes, limit {max}"
            );
        }
        EntryReader {
            input: BufReader::with_capacity(256 * 1024, input),
            format,
            max,
            index: 0,
            done: false,
        }
    }

    /// The next entry; `None` at the end of the input. After an error,
    /// `None` for ever.
    pub fn next_entry(&mut self) -> Option<Result<Vec<u8>, EntryError>> {
        if self.done {
            return None;
        }
        let next = match self.format {
            Format::Raw { chunk } => self.raw(chunk),
            Format::Lines => self.line(),
            Format::LengthPrefixed => self.prefixed(),
        };
        match &next {
            Some(Ok(_)) => self.index += 1,
            Some(Err(_)) | None => self.done = true,
        }
        next
    }

    fn raw(&mut self, chunk: usize) -> Option<Result<Vec<u8>, EntryError>> {
        let mut buf = Vec::with_capacity(chunk);
        match (&mut self.input).take(chunk as u64).read_to_end(&mut buf) {
            Ok(0) => None,
            Ok(_) => Some(Ok(buf)),
            Err(e) => Some(Err(e.into())),
        }
    }

    fn line(&mut self) -> Option<Result<Vec<u8>, EntryError>> {
        // At most one byte past the limit is read: enough to know a line
        // is too long without holding all of it.
        let mut buf = Vec::new();
        let limit = self.max as u64 + 2;
        match (&mut self.input).take(limit).read_until(b'\n', &mut buf) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) => return Some(Err(e.into())),
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        if buf.len() > self.max {
            return Some(Err(EntryError::TooLarge {
                index: self.index,
                len: buf.len() as u64,
                max: self.max,
            }));
        }
        Some(Ok(buf))
    }

    fn prefixed(&mut self) -> Option<Result<Vec<u8>, EntryError>> {
        let mut len = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match self.input.read(&mut len[got..]) {
                Ok(0) if got == 0 => return None,
                Ok(0) => {
                    return Some(Err(EntryError::Truncated {
                        index: self.index,
                        what: "its length",
                    }))
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Some(Err(e.into())),
            }
        }
        let len = u32::from_le_bytes(len) as u64;
        if len > self.max as u64 {
            return Some(Err(EntryError::TooLarge {
                index: self.index,
                len,
                max: self.max,
            }));
        }
        let mut buf = Vec::with_capacity(len as usize);
        match (&mut self.input).take(len).read_to_end(&mut buf) {
            Ok(n) if n as u64 == len => Some(Ok(buf)),
            Ok(_) => Some(Err(EntryError::Truncated {
                index: self.index,
                what: "its bytes",
            })),
            Err(e) => Some(Err(e.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8], format: Format, max: usize) -> Vec<Result<Vec<u8>, String>> {
        let mut r = EntryReader::new(input, format, max);
        let mut out = Vec::new();
        while let Some(e) = r.next_entry() {
            out.push(e.map_err(|e| e.to_string()));
        }
        out
    }

    #[test]
    fn raw_chunks_keep_every_byte() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let got = all(&bytes, Format::Raw { chunk: 300 }, 300);
        let lens: Vec<usize> = got.iter().map(|e| e.as_ref().expect("ok").len()).collect();
        assert_eq!(lens, vec![300, 300, 300, 100]);
        let back: Vec<u8> = got.into_iter().flat_map(|e| e.expect("ok")).collect();
        assert_eq!(back, bytes);
        assert!(all(b"", Format::Raw { chunk: 4 }, 4).is_empty());
    }

    #[test]
    fn lines_keep_their_bytes_and_a_long_one_is_an_error() {
        let got = all(b"a\r\n\xff\xfe\n\nlast", Format::Lines, 8);
        let ok: Vec<Vec<u8>> = got.into_iter().map(|e| e.expect("ok")).collect();
        assert_eq!(
            ok,
            vec![
                b"a\r".to_vec(),
                b"\xff\xfe".to_vec(),
                Vec::new(),
                b"last".to_vec()
            ]
        );
        let got = all(b"ok\n0123456789\nnever", Format::Lines, 8);
        assert_eq!(got.len(), 2, "nothing after the error: {got:?}");
        assert_eq!(got[0].as_deref(), Ok(&b"ok"[..]));
        let err = got[1].as_ref().expect_err("too long");
        assert!(
            err.contains("entry 1") && err.contains("over the limit of 8"),
            "{err}"
        );
    }

    #[test]
    fn length_prefixed_entries_and_a_cut_stream() {
        let mut input = Vec::new();
        for e in [&b"one"[..], b"", b"\x00\n\xff"] {
            input.extend_from_slice(&(e.len() as u32).to_le_bytes());
            input.extend_from_slice(e);
        }
        let ok: Vec<Vec<u8>> = all(&input, Format::LengthPrefixed, 16)
            .into_iter()
            .map(|e| e.expect("ok"))
            .collect();
        assert_eq!(
            ok,
            vec![b"one".to_vec(), Vec::new(), b"\x00\n\xff".to_vec()]
        );
        let mut cut = input.clone();
        cut.extend_from_slice(&10u32.to_le_bytes());
        cut.extend_from_slice(b"short");
        let got = all(&cut, Format::LengthPrefixed, 16);
        let err = got.last().expect("entries").as_ref().expect_err("cut");
        assert!(err.contains("ends inside entry 3"), "{err}");
        let mut big = Vec::new();
        big.extend_from_slice(&17u32.to_le_bytes());
        let got = all(&big, Format::LengthPrefixed, 16);
        assert!(got[0].as_ref().expect_err("big").contains("17 bytes"));
        let got = all(&[1, 0], Format::LengthPrefixed, 16);
        assert!(got[0].as_ref().expect_err("cut").contains("its length"));
    }
}
