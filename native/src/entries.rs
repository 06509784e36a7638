//! Entry digests (ENTRY_FORMAT 3) of stored entries, from the Arrow columns DuckDB returns, and
//! their fold into stream heads: what a close and `learnright verify` compute over every entry
//! a close covers, since the ledger stores no digest beside an entry (schema 14).
//!
//! The bytes are `ledger.core.chain.canonical`'s: a JSON array `[3,...]` of the ENTRY_FIELDS
//! values in order, strings JSON-escaped as Python's `encode_basestring`, integers and times
//! (UTC microseconds) as decimal text, amounts as the scale-12 string, and `null` for a NULL.
//! The fold is `chain.fold_streams`'s: per stream, `head = SHA-256(head || "\n" || digest)` in
//! the order the rows come, starting from the stream's head before (or 64 zeros).

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::chain::{hex_into, write_json_string, ENTRY_FORMAT};
use crate::decimal::{write_int, write_scale12};

/// The values of one Arrow column, as raw little-endian bytes of the whole buffers; rows are
/// read at `offset + row` (Arrow's slice offset).
pub enum Values<'a> {
    /// `string`: int32 offsets and UTF-8 data.
    Text { offsets: &'a [u8], data: &'a [u8] },
    /// `int32`.
    Int32(&'a [u8]),
    /// `int64`, or `timestamp[us]` (microseconds since 1970, UTC).
    Int64(&'a [u8]),
    /// `decimal128(_, 12)`: unscaled i128 values.
    Scale12(&'a [u8]),
}

/// One Arrow column: its values, its validity bitmap (None: no NULLs) and its slice offset.
pub struct FieldColumn<'a> {
    pub values: Values<'a>,
    pub validity: Option<&'a [u8]>,
    pub offset: usize,
}

/// Why columns cannot be read: a buffer shorter than its rows need.
#[derive(Debug)]
pub struct ColumnError(pub String);

fn le_i32(bytes: &[u8], index: usize) -> i32 {
    i32::from_le_bytes(bytes[index * 4..index * 4 + 4].try_into().expect("4 bytes"))
}

fn le_i64(bytes: &[u8], index: usize) -> i64 {
    i64::from_le_bytes(bytes[index * 8..index * 8 + 8].try_into().expect("8 bytes"))
}

fn le_i128(bytes: &[u8], index: usize) -> i128 {
    i128::from_le_bytes(bytes[index * 16..index * 16 + 16].try_into().expect("16 bytes"))
}

impl FieldColumn<'_> {
    /// Checks that every buffer covers `rows` rows from the slice offset, so reads cannot fail.
    pub fn check(&self, rows: usize) -> Result<(), ColumnError> {
        let end = self.offset + rows;
        if let Some(validity) = self.validity {
            if validity.len() * 8 < end {
                return Err(ColumnError(format!("a validity bitmap of {} bytes for {end} rows", validity.len())));
            }
        }
        let (have, width) = match &self.values {
            Values::Text { offsets, data } => {
                if offsets.len() < (end + 1) * 4 {
                    return Err(ColumnError(format!("{} bytes of string offsets for {end} rows", offsets.len())));
                }
                for index in self.offset..=end {
                    let at = le_i32(offsets, index);
                    if at < 0 || at as usize > data.len() || (index > self.offset && at < le_i32(offsets, index - 1)) {
                        return Err(ColumnError(format!("string offset {at} outside {} bytes of data", data.len())));
                    }
                }
                return Ok(());
            }
            Values::Int32(bytes) => (bytes.len(), 4),
            Values::Int64(bytes) => (bytes.len(), 8),
            Values::Scale12(bytes) => (bytes.len(), 16),
        };
        if have < end * width {
            return Err(ColumnError(format!("{have} bytes of {width}-byte values for {end} rows")));
        }
        Ok(())
    }

    fn is_null(&self, row: usize) -> bool {
        let index = self.offset + row;
        self.validity.is_some_and(|bits| bits[index / 8] & (1 << (index % 8)) == 0)
    }

    /// An integer column's value at `row` (None: NULL, or not an integer column).
    fn integer(&self, row: usize) -> Option<i64> {
        if self.is_null(row) {
            return None;
        }
        let index = self.offset + row;
        match &self.values {
            Values::Int32(bytes) => Some(i64::from(le_i32(bytes, index))),
            Values::Int64(bytes) => Some(le_i64(bytes, index)),
            _ => None,
        }
    }

    fn text(&self, row: usize) -> Option<&[u8]> {
        match &self.values {
            Values::Text { offsets, data } if !self.is_null(row) => {
                let index = self.offset + row;
                Some(&data[le_i32(offsets, index) as usize..le_i32(offsets, index + 1) as usize])
            }
            _ => None,
        }
    }

    /// Writes the value of `row` as canonical JSON.
    fn write(&self, out: &mut Vec<u8>, row: usize) {
        if self.is_null(row) {
            out.extend_from_slice(b"null");
            return;
        }
        let index = self.offset + row;
        match &self.values {
            Values::Text { .. } => write_json_string(out, self.text(row).expect("not null")),
            Values::Int32(bytes) => write_int(out, i64::from(le_i32(bytes, index))),
            Values::Int64(bytes) => write_int(out, le_i64(bytes, index)),
            Values::Scale12(bytes) => {
                out.push(b'"');
                write_scale12(out, le_i128(bytes, index));
                out.push(b'"');
            }
        }
    }
}

/// The canonical bytes (format 3) of `row` given its ENTRY_FIELDS columns in order.
pub fn canonical(out: &mut Vec<u8>, columns: &[FieldColumn<'_>], row: usize) {
    out.clear();
    out.push(b'[');
    write_int(out, i64::from(ENTRY_FORMAT));
    for column in columns {
        out.push(b',');
        column.write(out, row);
    }
    out.push(b']');
}

/// The digest (64 lowercase hex characters) of every row, back to back, in row order.
pub fn digests(columns: &[FieldColumn<'_>], rows: usize) -> Vec<u8> {
    let mut out = vec![0u8; rows * 64];
    digests_into(columns, 0, &mut out);
    out
}

/// Rows at least this many are digested on several threads (the fold itself stays in order).
const PARALLEL_ROWS: usize = 4_096;

/// Writes the digests of rows `first..first + out.len() / 64` into `out`, 64 hex characters each.
fn digests_into(columns: &[FieldColumn<'_>], first: usize, out: &mut [u8]) {
    let mut entry = Vec::with_capacity(512);
    for (index, slot) in out.chunks_exact_mut(64).enumerate() {
        canonical(&mut entry, columns, first + index);
        hex_into(&Sha256::digest(&entry), slot);
    }
}

/// [`digests`] on up to `threads` threads: each row's digest depends on its row alone.
pub fn digests_parallel(columns: &[FieldColumn<'_>], rows: usize, threads: usize) -> Vec<u8> {
    if threads < 2 || rows < PARALLEL_ROWS {
        return digests(columns, rows);
    }
    let mut out = vec![0u8; rows * 64];
    let per = rows.div_ceil(threads);
    std::thread::scope(|scope| {
        for (part, chunk) in out.chunks_mut(per * 64).enumerate() {
            scope.spawn(move || digests_into(columns, part * per, chunk));
        }
    });
    out
}

pub const GENESIS: [u8; 64] = [b'0'; 64];

/// Stream heads folded from entries given in (stream, position, line) order, batch after batch.
pub struct Folder {
    start: HashMap<Vec<u8>, (i64, [u8; 64])>,
    touched: HashMap<Vec<u8>, (i64, [u8; 64])>,
    current: Option<Vec<u8>>,
    count: i64,
    head: [u8; 64],
    /// The (position, line) of each stream's last row folded by `fold_rows`.
    last_keys: HashMap<Vec<u8>, (i64, i64)>,
    /// False once `fold_rows` met a row whose (position, line) did not rise within its stream:
    /// the heads are then not the fold in key order, and the caller must fold again sorted.
    in_order: bool,
}

impl Folder {
    /// A folder continuing from `start`: each stream's (entry count, head) before.
    pub fn new(start: HashMap<Vec<u8>, (i64, [u8; 64])>) -> Self {
        Folder { start, touched: HashMap::new(), current: None, count: 0, head: GENESIS, last_keys: HashMap::new(),
                 in_order: true }
    }

    fn switch(&mut self, stream: &[u8]) {
        if let Some(previous) = self.current.take() {
            self.touched.insert(previous, (self.count, self.head));
        }
        let (count, head) = self.touched.get(stream).or_else(|| self.start.get(stream)).copied().unwrap_or((0, GENESIS));
        self.current = Some(stream.to_vec());
        self.count = count;
        self.head = head;
    }

    /// Folds one entry's digest (64 hex characters) into its stream.
    pub fn fold(&mut self, stream: &[u8], digest: &[u8]) {
        if self.current.as_deref() != Some(stream) {
            self.switch(stream);
        }
        let mut link = Sha256::new();
        link.update(self.head);
        link.update(b"\n");
        link.update(digest);
        hex_into(&link.finalize(), &mut self.head);
        self.count += 1;
    }

    /// Folds every row of `columns` (ENTRY_FIELDS in order; the first is the stream, never NULL),
    /// their digests computed on up to `threads` threads first.
    pub fn fold_rows(&mut self, columns: &[FieldColumn<'_>], rows: usize, threads: usize) {
        let digests = digests_parallel(columns, rows, threads);
        for (row, digest) in digests.chunks_exact(64).enumerate() {
            let stream = columns[0].text(row).unwrap_or(b"");
            let key = (columns[1].integer(row).unwrap_or(i64::MIN), columns[2].integer(row).unwrap_or(i64::MIN));
            match self.last_keys.get_mut(stream) {
                Some(last) => {
                    if key <= *last {
                        self.in_order = false;
                    }
                    *last = key;
                }
                None => {
                    self.last_keys.insert(stream.to_vec(), key);
                }
            }
            self.fold(stream, digest);
        }
    }

    /// Whether every row `fold_rows` folded came after its stream's previous one in (position,
    /// line) order, so that rows given in any interleaving of the streams were folded in key order.
    pub fn in_order(&self) -> bool {
        self.in_order
    }

    /// The (entry count, head) of every stream touched so far.
    pub fn heads(&self) -> HashMap<Vec<u8>, (i64, [u8; 64])> {
        let mut heads = self.touched.clone();
        if let Some(current) = &self.current {
            heads.insert(current.clone(), (self.count, self.head));
        }
        heads
    }
}
