//! The contents of one simulated file, as a disk with a volatile write
//! cache holds them.
//!
//! A file is a size and a sparse map of 512-byte sectors (an absent sector
//! reads as zeros, so a 16 MiB preallocated file costs nothing). Three
//! views are kept:
//! - **current**: what reads return, every write applied;
//! - **durable**: what the last `fdatasync` made durable, and its size;
//! - **pending**: for each sector changed since that sync, every version
//!   written to it, oldest first.
//!
//! A crash ([`Media::crash`]) keeps, for each pending sector, either its
//! durable content or any one of its pending versions, chosen at random and
//! independently of the other sectors: a write torn at sector boundaries,
//! with its sectors reaching the disk in any order. A sector never holds
//! bytes that no write put there. The size after a crash is either the
//! durable size or the current one.

use std::collections::BTreeMap;

use crate::rng::Rng;

/// The unit a disk writes atomically: a torn write tears at these
/// boundaries.
pub const SECTOR_BYTES: u64 = 512;

type Sector = Box<[u8; SECTOR_BYTES as usize]>;

/// What a crash did to one file (for tests that must see torn writes
/// happen).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CrashEffect {
    /// Sectors written since the last sync.
    pub pending_sectors: u64,
    /// Of those, sectors that kept their durable content.
    pub kept_old: u64,
    /// Of those, sectors that kept the last version written.
    pub kept_newest: u64,
    /// Of those, sectors that kept an older version than the last written.
    pub kept_older_version: u64,
    /// The size went back to the durable size.
    pub size_reverted: bool,
}

impl CrashEffect {
    pub fn add(&mut self, other: CrashEffect) {
        self.pending_sectors += other.pending_sectors;
        self.kept_old += other.kept_old;
        self.kept_newest += other.kept_newest;
        self.kept_older_version += other.kept_older_version;
        self.size_reverted |= other.size_reverted;
    }

    /// Whether some but not all of the pending sectors reached the disk.
    pub fn torn(&self) -> bool {
        self.kept_old > 0 && self.kept_old < self.pending_sectors
    }
}

/// One file's contents: see the module doc.
#[derive(Debug, Default, Clone)]
pub struct Media {
    size: u64,
    sectors: BTreeMap<u64, Sector>,
    durable_size: u64,
    durable: BTreeMap<u64, Sector>,
    /// Versions since the last sync; `None` is a sector of zeros.
    pending: BTreeMap<u64, Vec<Option<Sector>>>,
}

fn is_zero(sector: &[u8]) -> bool {
    sector.iter().all(|b| *b == 0)
}

impl Media {
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether everything is durable (nothing a crash could change).
    pub fn is_synced(&self) -> bool {
        self.pending.is_empty() && self.size == self.durable_size
    }

    /// Sets sector `index` to `content` (`None`: zeros) in the current view
    /// and records the version.
    fn put(&mut self, index: u64, content: Option<Sector>) {
        let content = content.filter(|s| !is_zero(&s[..]));
        if self.sectors.get(&index) == content.as_ref() {
            return;
        }
        match &content {
            Some(s) => self.sectors.insert(index, s.clone()),
            None => self.sectors.remove(&index),
        };
        match self.pending.get_mut(&index) {
            Some(versions) => versions.push(content),
            None => {
                if self.durable.get(&index) != content.as_ref() {
                    self.pending.insert(index, vec![content]);
                }
            }
        }
    }

    /// Writes `bytes` at `pos` (any alignment), extending the size.
    pub fn write(&mut self, pos: u64, bytes: &[u8]) {
        let end = pos + bytes.len() as u64;
        let mut at = pos;
        while at < end {
            let index = at / SECTOR_BYTES;
            let sector_start = index * SECTOR_BYTES;
            let lo = (at - sector_start) as usize;
            let hi = ((end - sector_start).min(SECTOR_BYTES)) as usize;
            let mut sector: Sector = match self.sectors.get(&index) {
                Some(s) => s.clone(),
                None => Box::new([0; SECTOR_BYTES as usize]),
            };
            let from = (at - pos) as usize;
            sector[lo..hi].copy_from_slice(&bytes[from..from + (hi - lo)]);
            self.put(index, Some(sector));
            at = sector_start + hi as u64;
        }
        self.size = self.size.max(end);
    }

    /// Makes `[pos, pos + len)` read as zeros (clamped to the size); the
    /// size does not change.
    pub fn zero(&mut self, pos: u64, len: u64) {
        let end = (pos + len).min(self.size);
        if pos >= end {
            return;
        }
        let first_whole = pos.div_ceil(SECTOR_BYTES);
        let last_whole = end / SECTOR_BYTES;
        if first_whole >= last_whole {
            self.write(pos, &vec![0; (end - pos) as usize]);
            return;
        }
        // Partial sectors at either end, then every whole sector that holds
        // something now, held something durably, or has versions pending.
        let head = first_whole * SECTOR_BYTES;
        let tail = last_whole * SECTOR_BYTES;
        if pos < head {
            self.write(pos, &vec![0; (head - pos) as usize]);
        }
        if tail < end {
            self.write(tail, &vec![0; (end - tail) as usize]);
        }
        let mut touched: Vec<u64> = self
            .sectors
            .range(first_whole..last_whole)
            .map(|(i, _)| *i)
            .chain(self.durable.range(first_whole..last_whole).map(|(i, _)| *i))
            .chain(self.pending.range(first_whole..last_whole).map(|(i, _)| *i))
            .collect();
        touched.sort_unstable();
        touched.dedup();
        for index in touched {
            self.put(index, None);
        }
    }

    /// Sets the size; bytes past a smaller size are gone (read as zeros if
    /// the file grows again).
    pub fn set_size(&mut self, size: u64) {
        if size < self.size {
            let old = self.size;
            self.zero(size, old - size);
        }
        self.size = size;
    }

    /// Reads up to `len` bytes at `pos`; fewer past the end of the file.
    pub fn read(&self, pos: u64, len: usize) -> Vec<u8> {
        read_from(&self.sectors, self.size, pos, len)
    }

    /// The durable contents, as a crash right now could leave them at
    /// least: what `fdatasync` made durable.
    pub fn durable_bytes(&self) -> Vec<u8> {
        read_from(
            &self.durable,
            self.durable_size,
            0,
            self.durable_size as usize,
        )
    }

    /// The durable contents up to the end of the last sector that holds
    /// data (the zeros after it are left out: a preallocated file's tail
    /// costs nothing to a checker that scans records).
    pub fn durable_data(&self) -> Vec<u8> {
        let end = self
            .durable
            .keys()
            .next_back()
            .map_or(0, |last| (last + 1) * SECTOR_BYTES)
            .min(self.durable_size);
        read_from(&self.durable, self.durable_size, 0, end as usize)
    }

    /// The position of the first durable byte at or after `pos` that is
    /// not zero, if any (cheap: only sectors holding data are stored).
    pub fn first_durable_nonzero(&self, pos: u64) -> Option<u64> {
        self.durable
            .range(pos / SECTOR_BYTES..)
            .find_map(|(index, sector)| {
                let start = index * SECTOR_BYTES;
                let skip = pos.saturating_sub(start) as usize;
                sector[skip..]
                    .iter()
                    .position(|b| *b != 0)
                    .map(|i| start + (skip + i) as u64)
            })
            .filter(|at| *at < self.durable_size)
    }

    /// Makes everything written so far durable, and the size.
    pub fn sync(&mut self) {
        for index in std::mem::take(&mut self.pending).into_keys() {
            match self.sectors.get(&index) {
                Some(s) => self.durable.insert(index, s.clone()),
                None => self.durable.remove(&index),
            };
        }
        self.durable_size = self.size;
    }

    /// Flips bit `bit` (0 = least significant) of the byte at `pos` in
    /// every view: damage of the medium, which a crash does not undo.
    pub fn flip_bit(&mut self, pos: u64, bit: u8) {
        assert!(bit < 8, "bit {bit} of a byte");
        let index = pos / SECTOR_BYTES;
        let at = (pos % SECTOR_BYTES) as usize;
        let mask = 1u8 << bit;
        let flip = |sector: &mut Option<Sector>| {
            let s = sector.get_or_insert_with(|| Box::new([0; SECTOR_BYTES as usize]));
            s[at] ^= mask;
        };
        for map in [&mut self.sectors, &mut self.durable] {
            let mut sector = map.remove(&index);
            flip(&mut sector);
            if let Some(s) = sector.filter(|s| !is_zero(&s[..])) {
                map.insert(index, s);
            }
        }
        if let Some(versions) = self.pending.get_mut(&index) {
            for version in versions.iter_mut() {
                flip(version);
                if version.as_ref().is_some_and(|s| is_zero(&s[..])) {
                    *version = None;
                }
            }
        }
    }

    /// Garbles one version of one sector written since the last sync (a
    /// bit flipped on its way to the medium): a crash may then keep that
    /// version, and recovery must see its crc fail. Nothing synced is
    /// touched. Returns whether there was an unsynced sector to garble.
    pub fn garble_unsynced(&mut self, rng: &mut Rng) -> bool {
        let indices: Vec<u64> = self.pending.keys().copied().collect();
        if indices.is_empty() {
            return false;
        }
        let index = indices[rng.index(indices.len())];
        let Some(versions) = self.pending.get_mut(&index) else {
            return false;
        };
        let v = rng.index(versions.len());
        let at = rng.index(SECTOR_BYTES as usize);
        let mask = 1u8 << rng.below(8);
        let last = v + 1 == versions.len();
        let sector = versions[v].get_or_insert_with(|| Box::new([0; SECTOR_BYTES as usize]));
        sector[at] ^= mask;
        let garbled = sector.clone();
        if last {
            // The newest version is also what reads see now.
            self.sectors.insert(index, garbled);
        }
        true
    }

    /// What survives a crash: see the module doc. Afterwards every view is
    /// the surviving contents, all durable.
    pub fn crash(&mut self, rng: &mut Rng) -> CrashEffect {
        let mut effect = CrashEffect::default();
        let size = if self.size != self.durable_size && rng.chance(1, 2) {
            effect.size_reverted = true;
            self.durable_size
        } else {
            self.size
        };
        let mut survived = std::mem::take(&mut self.durable);
        for (index, mut versions) in std::mem::take(&mut self.pending) {
            assert!(!versions.is_empty(), "a pending sector without a version");
            effect.pending_sectors += 1;
            let pick = rng.below(versions.len() as u64 + 1) as usize;
            let content = if pick == 0 {
                effect.kept_old += 1;
                survived.remove(&index)
            } else {
                if pick == versions.len() {
                    effect.kept_newest += 1;
                } else {
                    effect.kept_older_version += 1;
                }
                versions.swap_remove(pick - 1)
            };
            match content {
                Some(s) => survived.insert(index, s),
                None => survived.remove(&index),
            };
        }
        self.durable = survived;
        self.durable_size = size;
        self.size = size;
        // Nothing past the size survives; a partial last sector keeps only
        // its bytes below the size.
        let _ = self.durable.split_off(&size.div_ceil(SECTOR_BYTES));
        if !size.is_multiple_of(SECTOR_BYTES) {
            let index = size / SECTOR_BYTES;
            if let Some(s) = self.durable.get_mut(&index) {
                s[(size % SECTOR_BYTES) as usize..].fill(0);
            }
        }
        self.sectors = self.durable.clone();
        effect
    }
}

fn read_from(map: &BTreeMap<u64, Sector>, size: u64, pos: u64, len: usize) -> Vec<u8> {
    let end = (pos + len as u64).min(size);
    if pos >= end {
        return Vec::new();
    }
    let mut out = vec![0u8; (end - pos) as usize];
    let first = pos / SECTOR_BYTES;
    let last = end.div_ceil(SECTOR_BYTES);
    for (index, sector) in map.range(first..last) {
        let sector_start = index * SECTOR_BYTES;
        let lo = pos.max(sector_start);
        let hi = end.min(sector_start + SECTOR_BYTES);
        out[(lo - pos) as usize..(hi - pos) as usize]
            .copy_from_slice(&sector[(lo - sector_start) as usize..(hi - sector_start) as usize]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: usize = SECTOR_BYTES as usize;

    #[test]
    fn reads_see_writes_and_zeros_elsewhere() {
        let mut m = Media::default();
        m.write(1000, &[7; 100]);
        assert_eq!(m.size(), 1100);
        let bytes = m.read(0, 4096);
        assert_eq!(bytes.len(), 1100);
        assert!(bytes[..1000].iter().all(|b| *b == 0));
        assert!(bytes[1000..].iter().all(|b| *b == 7));
        m.zero(1010, 20);
        let bytes = m.read(1000, 100);
        assert_eq!(&bytes[..10], &[7; 10]);
        assert_eq!(&bytes[10..30], &[0; 20]);
        assert_eq!(&bytes[30..], &[7; 70]);
        m.set_size(1020);
        m.set_size(2000);
        assert!(m.read(1020, 980).iter().all(|b| *b == 0));
    }

    #[test]
    fn sync_makes_durable_and_a_crash_keeps_it() {
        let mut m = Media::default();
        m.write(0, &[1; 2 * S]);
        m.sync();
        assert!(m.is_synced());
        m.write(0, &[2; 2 * S]);
        assert!(!m.is_synced());
        assert_eq!(m.durable_bytes(), vec![1; 2 * S]);
        assert_eq!(m.read(0, 2 * S), vec![2; 2 * S]);
        m.sync();
        let mut rng = Rng::new(1);
        let effect = m.crash(&mut rng);
        assert_eq!(effect, CrashEffect::default());
        assert_eq!(m.read(0, 2 * S), vec![2; 2 * S]);
    }

    #[test]
    fn a_crash_tears_unsynced_writes_by_sector_and_invents_nothing() {
        let mut torn = 0;
        let mut older = 0;
        let mut reverted = 0;
        for seed in 0..200 {
            let mut rng = Rng::new(seed);
            let mut m = Media::default();
            m.write(0, &[1; 8 * S]);
            m.sync();
            // Two unsynced versions of every sector, and an extension.
            m.write(0, &[2; 8 * S]);
            m.write(0, &[3; 10 * S]);
            let effect = m.crash(&mut rng);
            assert_eq!(effect.pending_sectors, 10);
            torn += u32::from(effect.torn());
            older += u32::from(effect.kept_older_version > 0);
            reverted += u32::from(effect.size_reverted);
            let size = if effect.size_reverted { 8 * S } else { 10 * S };
            assert_eq!(m.size(), size as u64);
            let bytes = m.read(0, 10 * S);
            for (i, sector) in bytes.chunks(S).enumerate() {
                let v = sector[0];
                assert!(sector.iter().all(|b| *b == v), "sector {i} mixed");
                let allowed: &[u8] = if i < 8 { &[1, 2, 3] } else { &[0, 3] };
                assert!(allowed.contains(&v), "sector {i} holds {v}");
            }
            assert!(m.is_synced());
            assert_eq!(m.durable_bytes(), bytes);
        }
        assert!(torn > 100, "torn {torn}");
        assert!(older > 50, "older versions {older}");
        assert!(reverted > 50, "size reverted {reverted}");
    }

    #[test]
    fn zeroing_unsynced_is_a_version_too() {
        let mut m = Media::default();
        m.write(0, &[5; 4 * S]);
        m.sync();
        m.zero(0, 4 * S as u64);
        assert!(m.read(0, 4 * S).iter().all(|b| *b == 0));
        let mut saw_old = false;
        let mut saw_zero = false;
        for seed in 0..50 {
            let mut copy = m.clone();
            copy.crash(&mut Rng::new(seed));
            for sector in copy.read(0, 4 * S).chunks(S) {
                saw_old |= sector.iter().all(|b| *b == 5);
                saw_zero |= sector.iter().all(|b| *b == 0);
            }
        }
        assert!(saw_old && saw_zero);
    }

    #[test]
    fn first_durable_nonzero_finds_the_first_byte_of_data() {
        let mut m = Media::default();
        m.write(0, &vec![0; 8 * S]);
        m.write(3 * S as u64 + 7, &[4]);
        m.write(5 * S as u64, &[5]);
        assert_eq!(m.first_durable_nonzero(0), None, "nothing synced");
        m.sync();
        assert_eq!(m.first_durable_nonzero(0), Some(3 * S as u64 + 7));
        assert_eq!(
            m.first_durable_nonzero(3 * S as u64 + 7),
            Some(3 * S as u64 + 7)
        );
        assert_eq!(
            m.first_durable_nonzero(3 * S as u64 + 8),
            Some(5 * S as u64)
        );
        assert_eq!(m.first_durable_nonzero(5 * S as u64 + 1), None);
    }

    #[test]
    fn a_flipped_bit_survives_a_crash() {
        let mut m = Media::default();
        m.write(0, &[0; S]);
        m.write(S as u64, &[9; S]);
        m.sync();
        m.write(S as u64, &[8; S]);
        m.flip_bit(3, 0);
        m.flip_bit(S as u64 + 4, 7);
        assert_eq!(m.read(3, 1), vec![1]);
        m.crash(&mut Rng::new(3));
        assert_eq!(m.read(3, 1), vec![1]);
        let b = m.read(S as u64 + 4, 1)[0];
        assert!(b == 9 ^ 0x80 || b == 8 ^ 0x80, "{b}");
    }
}
