//! crc32c, with the arithmetic that lets a sender or a receiver read each
//! payload byte once for two checksums.
//!
//! A frame's crc covers its whole payload, and an entry's or a record's
//! crc covers its own bytes, which lie inside that payload. Computing both
//! directly reads every payload byte twice. crc32c is linear, so the crc of
//! a concatenation follows from the crcs of its parts and their lengths
//! ([`combine`]); [`Fold`] builds a frame's crc from the bytes between the
//! payloads (read directly, a few dozen bytes each) and the payloads' own
//! crcs (read once, for their own check). See `docs/wire.md`.
//!
//! Every crc in `trilog-wire` over bytes is taken through [`crc32c()`] and
//! [`crc32c_append`], which count the bytes read on the calling thread
//! ([`bytes_summed`]), so a test can show how often a payload was read.

use std::cell::Cell;

/// The crc32c (Castagnoli) polynomial, bit-reversed: bit 31 is the
/// coefficient of x^0, as the crc32c register holds it.
const POLY: u32 = 0x82F6_3B78;

/// x^0 in the bit-reversed representation.
const ONE: u32 = 1 << 31;

/// `POWERS[k]` is x^(2^k) mod P, for every k that a byte length of up to
/// 2^64 bytes (2^67 bits) needs.
const POWERS: [u32; 67] = powers();

thread_local! {
    static SUMMED: Cell<u64> = const { Cell::new(0) };
}

/// The crc32c of `bytes`.
pub fn crc32c(bytes: &[u8]) -> u32 {
    count(bytes.len());
    crc32c::crc32c(bytes)
}

/// The crc32c of what `crc` was taken over, followed by `bytes`.
pub fn crc32c_append(crc: u32, bytes: &[u8]) -> u32 {
    count(bytes.len());
    crc32c::crc32c_append(crc, bytes)
}

/// Bytes this thread has checksummed with [`crc32c()`] and
/// [`crc32c_append`] since it started. Compare two readings.
pub fn bytes_summed() -> u64 {
    SUMMED.with(Cell::get)
}

fn count(n: usize) {
    SUMMED.with(|s| s.set(s.get().wrapping_add(n as u64)));
}

/// The crc32c of `a ++ b`, from `crc_a` = crc32c(a), `crc_b` = crc32c(b)
/// and b's length, without reading either. Costs a few dozen word
/// operations per set bit of `len_b`.
pub fn combine(crc_a: u32, crc_b: u32, len_b: usize) -> u32 {
    // crc32c pre- and post-inverts its register. With that, the register
    // after a ++ b is crc_a's register shifted over len_b zero bytes,
    // plus (in GF(2)) crc_b: the inversions cancel out of the sum.
    multiply(crc_a, x_to_8n(len_b as u64)) ^ crc_b
}

/// x^(8n) mod P: the factor that shifts a register over n zero bytes.
fn x_to_8n(n: u64) -> u32 {
    let mut power = ONE;
    let mut rest = n;
    // Bit j of n stands for 8 * 2^j = 2^(j + 3) bits.
    let mut k = 3;
    while rest != 0 {
        if rest & 1 == 1 {
            power = multiply(power, POWERS[k]);
        }
        rest >>= 1;
        k += 1;
    }
    power
}

/// a * b mod P, both bit-reversed.
const fn multiply(a: u32, mut b: u32) -> u32 {
    let mut product = 0u32;
    // Walk a's coefficients from x^0 (bit 31) upwards, b times x each step.
    let mut bit = ONE;
    while bit != 0 {
        if a & bit != 0 {
            product ^= b;
            // No higher coefficient left in a: done early, which is the
            // common case for the sparse powers `x_to_8n` multiplies.
            if a & (bit - 1) == 0 {
                break;
            }
        }
        bit >>= 1;
        // b * x: shift towards the high powers, reduce x^32 by P.
        b = if b & 1 == 1 { (b >> 1) ^ POLY } else { b >> 1 };
    }
    product
}

const fn powers() -> [u32; 67] {
    let mut table = [0u32; 67];
    // x^1.
    table[0] = ONE >> 1;
    let mut k = 1;
    while k < table.len() {
        table[k] = multiply(table[k - 1], table[k - 1]);
        k += 1;
    }
    table
}

/// A crc built piece by piece over consecutive bytes: bytes read here, or
/// pieces whose crc is already known.
#[derive(Debug, Clone, Copy)]
pub struct Fold {
    crc: u32,
    len: usize,
}

impl Fold {
    /// The crc of `start`, read now.
    pub fn new(start: &[u8]) -> Fold {
        Fold {
            crc: crc32c(start),
            len: start.len(),
        }
    }

    /// Follows with `bytes`, read now.
    pub fn bytes(&mut self, bytes: &[u8]) {
        self.crc = crc32c_append(self.crc, bytes);
        self.len += bytes.len();
    }

    /// Follows with `len` bytes whose crc32c is `crc`, not read again.
    pub fn known(&mut self, crc: u32, len: usize) {
        self.crc = combine(self.crc, crc, len);
        self.len += len;
    }

    /// Follows with `body`, where each of `pieces` (ranges of `body` in
    /// order, none overlapping) has the crc paired with it: the bytes
    /// between them are read, the pieces not. `None` if the ranges are out
    /// of order, overlap or leave `body` (then nothing is added).
    pub fn body_with_known<I>(&mut self, body: &[u8], pieces: I) -> Option<()>
    where
        I: IntoIterator<Item = (std::ops::Range<usize>, u32)>,
    {
        let mut folded = *self;
        let mut at = 0usize;
        for (range, crc) in pieces {
            if range.start < at || range.end < range.start || range.end > body.len() {
                return None;
            }
            folded.bytes(&body[at..range.start]);
            folded.known(crc, range.len());
            at = range.end;
        }
        folded.bytes(&body[at..]);
        *self = folded;
        Some(())
    }

    /// The crc of everything folded.
    pub fn crc(&self) -> u32 {
        self.crc
    }

    /// Bytes folded.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if nothing was folded.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn combining_two_crcs_gives_the_crc_of_the_concatenation() {
        for (la, lb) in [
            (0, 0),
            (0, 5),
            (5, 0),
            (1, 1),
            (16, 4096),
            (3, 65_537),
            (4096, 1 << 20),
        ] {
            let (a, b) = (bytes(la, 1), bytes(lb, 2));
            let whole = [a.as_slice(), b.as_slice()].concat();
            let (ca, cb) = (crc32c::crc32c(&a), crc32c::crc32c(&b));
            assert_eq!(combine(ca, cb, lb), crc32c::crc32c(&whole), "{la}+{lb}");
            assert_eq!(combine(ca, cb, lb), crc32c::crc32c_combine(ca, cb, lb));
        }
    }

    #[test]
    fn huge_lengths_agree_with_the_reference_combine() {
        // Lengths past what a frame holds exercise the high powers.
        for len in [1usize << 32, (1 << 40) + 12_345, usize::MAX] {
            assert_eq!(
                combine(0x1234_5678, 0x9abc_def0, len),
                crc32c::crc32c_combine(0x1234_5678, 0x9abc_def0, len),
                "{len}"
            );
        }
    }

    #[test]
    fn a_fold_with_known_pieces_reads_only_the_gaps() {
        let body = bytes(10_000, 7);
        let pieces = [(100..4196, 0u32), (4200..4200, 0), (4300..9990, 0)];
        let pieces: Vec<_> = pieces
            .iter()
            .map(|(r, _)| (r.clone(), crc32c::crc32c(&body[r.clone()])))
            .collect();
        let before = bytes_summed();
        let mut fold = Fold::new(b"head");
        fold.body_with_known(&body, pieces)
            .expect("pieces in order");
        let read = bytes_summed() - before;
        assert_eq!(fold.crc(), crc32c::crc32c(&[b"head", &body[..]].concat()));
        assert_eq!(fold.len(), 4 + body.len());
        assert_eq!(read, 4 + 100 + 4 + 100 + 10, "only the gaps are read");
    }

    #[test]
    fn pieces_out_of_order_overlapping_or_outside_are_refused() {
        let body = bytes(100, 3);
        let mut fold = Fold::new(b"");
        for bad in [
            vec![(10..20, 0), (5..30, 0)],
            vec![(10..20, 0), (15..30, 0)],
            vec![(90..101, 0)],
            vec![(std::ops::Range { start: 20, end: 10 }, 0)],
        ] {
            assert_eq!(fold.body_with_known(&body, bad), None);
            assert!(fold.is_empty(), "a refused body adds nothing");
        }
    }
}
