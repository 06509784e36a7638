//! The set of booked events' 64-bit key hashes a ledger file's one writer holds
//! (`ledger.storage.event_filter`), in place of the primary key's ART index.
//!
//! A hash is DuckDB's `hash(platform_id, event_id)`, computed by the caller; this set
//! only answers "seen before?". A hit is a candidate, never a verdict: the caller
//! confirms it against the table, so a collision of two keys' hashes costs one query
//! and never refuses an event.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

/// Spreads an already hashed key over all 64 bits (splitmix64's finalizer), so the
/// table's bucket bits (low) and control bits (high) are both well mixed.
#[derive(Default)]
pub struct Mix(u64);

impl Hasher for Mix {
    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

pub type HashSet64 = HashSet<u64, BuildHasherDefault<Mix>>;

/// The little-endian u64 values of `raw` (an Arrow UInt64 buffer's bytes).
pub fn values(raw: &[u8]) -> impl Iterator<Item = u64> + '_ {
    raw.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
}

/// Indices of `batch` whose hash is in `seen` or occurs earlier in `batch` itself.
pub fn hits(seen: &HashSet64, batch: &[u8]) -> Vec<usize> {
    let mut own = HashSet64::with_capacity_and_hasher(batch.len() / 8, Default::default());
    values(batch)
        .enumerate()
        .filter(|&(_, h)| seen.contains(&h) | !own.insert(h))
        .map(|(i, _)| i)
        .collect()
}
