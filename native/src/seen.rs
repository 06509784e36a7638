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

/// Recent hashes held in a hash table before they are merged into the sorted ones: at least
/// this many, or an eighth of the sorted ones.
const RECENT_MIN: usize = 1 << 16;

/// The set: every hash but the most recent in one sorted vector (8 bytes a hash, grown in
/// place by a merge from its end), the most recent in a small hash table.
///
/// Why not one hash table: at 5M events a table holds 8M buckets of 9 bytes (72 MB), and
/// while it doubles both the old and the new table are alive (108 MB), outside DuckDB's
/// memory limit; the sorted vector holds 40 MB and a merge adds only what it merges.
#[derive(Default)]
pub struct Hashes {
    sorted: Vec<u64>,
    /// The first hash of every [`BLOCK`] of `sorted`: small enough to stay in cache, so a
    /// lookup searches it, then one block, instead of jumping across the whole vector.
    fences: Vec<u64>,
    recent: HashSet64,
}

/// Hashes of `sorted` per fence (512 bytes: a handful of cache lines).
const BLOCK: usize = 64;

impl Hashes {
    pub fn with_capacity(capacity: usize) -> Self {
        Hashes { sorted: Vec::with_capacity(capacity), fences: Vec::new(), recent: HashSet64::default() }
    }

    /// Distinct hashes held (a recent hash already sorted counts once).
    pub fn len(&self) -> usize {
        let sorted = |&&hash: &&u64| self.in_block(self.fences.partition_point(|&fence| fence <= hash), hash);
        self.sorted.len() + self.recent.iter().filter(|hash| !sorted(hash)).count()
    }

    /// Whether `hash` is in the sorted block that `blocks` fences (those <= `hash`) point to.
    fn in_block(&self, blocks: usize, hash: u64) -> bool {
        if blocks == 0 {
            return false; // below the smallest sorted hash (or none sorted yet)
        }
        let start = (blocks - 1) * BLOCK;
        let end = (start + BLOCK).min(self.sorted.len());
        self.sorted[start..end].binary_search(&hash).is_ok()
    }

    /// Adds `hashes`, merging the recent ones into the sorted vector when they are more than
    /// [`RECENT_MIN`] and an eighth of it. A hash added twice is kept once (the merge drops
    /// repeats), so [`Hashes::len`] counts distinct hashes.
    pub fn extend(&mut self, hashes: impl Iterator<Item = u64>) {
        self.recent.extend(hashes);
        if self.recent.len() > RECENT_MIN.max(self.sorted.len() / 8) {
            self.merge();
        }
    }

    fn merge(&mut self) {
        let mut added: Vec<u64> = self.recent.drain().collect();
        self.recent = HashSet64::default(); // let go of the drained table's buckets
        added.sort_unstable();
        let (old, new) = (self.sorted.len(), added.len());
        self.sorted.reserve_exact(new);
        self.sorted.resize(old + new, 0);
        let (mut i, mut j, mut k) = (old, new, old + new);
        while j > 0 {
            if i > 0 && self.sorted[i - 1] > added[j - 1] {
                self.sorted[k - 1] = self.sorted[i - 1];
                i -= 1;
            } else {
                self.sorted[k - 1] = added[j - 1];
                j -= 1;
            }
            k -= 1;
        }
        self.sorted.dedup();
        self.fences = self.sorted.iter().step_by(BLOCK).copied().collect();
    }
}

/// Indices of `batch` whose hash is in `seen` or occurs earlier in `batch` itself.
///
/// The batch's hashes are looked up in ascending order, so the fences are walked forward
/// (galloping from the last one found) and the sorted blocks read in memory order.
pub fn hits(seen: &Hashes, batch: &[u8]) -> Vec<usize> {
    let hashes: Vec<u64> = values(batch).collect();
    let mut order: Vec<u32> = (0..hashes.len() as u32).collect();
    order.sort_unstable_by_key(|&i| hashes[i as usize]);
    let mut found = vec![false; hashes.len()];
    let fences = &seen.fences;
    let mut below = 0usize; // fences <= every hash looked up so far
    for &i in &order {
        let hash = hashes[i as usize];
        let mut step = 1;
        while below + step <= fences.len() && fences[below + step - 1] <= hash {
            below += step;
            step *= 2;
        }
        let unknown = &fences[below..(below + step - 1).min(fences.len())];
        below += unknown.partition_point(|&fence| fence <= hash);
        found[i as usize] = seen.in_block(below, hash) || seen.recent.contains(&hash);
    }
    let mut own = HashSet64::with_capacity_and_hasher(hashes.len(), Default::default());
    (0..hashes.len()).filter(|&i| found[i] | !own.insert(hashes[i])).collect()
}
