//! Column buffers in Arrow's layout, so Python wraps them as Arrow arrays without copying
//! values one by one: strings as int32 offsets plus UTF-8 data (or, where a batch repeats
//! few values, int32 keys into such strings: an Arrow dictionary), numbers little-endian.

use std::collections::HashMap;

#[derive(Default)]
pub struct Strings {
    pub offsets: Vec<i32>,
    pub data: Vec<u8>,
}

impl Strings {
    pub fn push(&mut self, value: &[u8]) {
        self.push_with(|data| data.extend_from_slice(value));
    }

    /// Pushes the value `write` appends to the column's data (no intermediate buffer).
    pub fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        write(&mut self.data);
        self.offsets.push(self.data.len() as i32);
    }

    /// False once the data outgrew Arrow's 32-bit string offsets (the batch is then refused).
    pub fn fits(&self) -> bool {
        self.data.len() <= i32::MAX as usize
    }

    pub fn get(&self, row: usize) -> &[u8] {
        &self.data[self.offsets[row] as usize..self.offsets[row + 1] as usize]
    }

    /// Gives back the room a column grew into and did not fill (a batch's columns may
    /// have doubled past their rows), so a batch held in memory is the size of its rows.
    pub fn shrink(&mut self) {
        self.offsets.shrink_to_fit();
        self.data.shrink_to_fit();
    }
}

/// A string column that stores each distinct value once: a key per row into `values`, as
/// Arrow's dictionary arrays lay it out. A batch repeats few values in most of its string
/// columns (a platform, a period, a holder, a currency), so a row costs 4 bytes instead of
/// the value and its offset; DuckDB reads an Arrow dictionary into the same `VARCHAR` rows.
#[derive(Default)]
pub struct Dict {
    pub keys: Vec<i32>,
    pub values: Strings,
    index: HashMap<Box<[u8]>, i32>,
    last: Option<i32>,
}

impl Dict {
    /// Appends a row holding `value`; returns its key.
    pub fn push(&mut self, value: &[u8]) -> i32 {
        let key = self.key(value);
        self.keys.push(key);
        key
    }

    /// The key of `value`, added to the values if it is new (no row is appended).
    pub fn key(&mut self, value: &[u8]) -> i32 {
        // A run of one value is the common case (one topic, one period): no hashing then.
        if let Some(last) = self.last {
            if self.values.get(last as usize) == value {
                return last;
            }
        }
        let key = match self.index.get(value) {
            Some(&key) => key,
            None => {
                let key = self.values.offsets.len().saturating_sub(1) as i32;
                self.values.push(value);
                self.index.insert(value.into(), key);
                key
            }
        };
        self.last = Some(key);
        key
    }

    /// The value of row `row`.
    pub fn get(&self, row: usize) -> &[u8] {
        self.values.get(self.keys[row] as usize)
    }

    pub fn fits(&self) -> bool {
        self.values.fits()
    }

    /// Gives back the room the column grew into; drops the lookup index (a built batch gets no more rows).
    pub fn shrink(&mut self) {
        self.keys.shrink_to_fit();
        self.values.shrink();
        self.index = HashMap::new();
        self.last = None;
    }
}

/// A number Arrow stores at its own width, little-endian, as it lies in memory here.
pub trait LittleEndian: Copy {}

impl LittleEndian for i32 {}
impl LittleEndian for i64 {}
impl LittleEndian for i128 {}

/// One accepted event per row (the `usage_events` table, less its batch id).
#[derive(Default)]
pub struct Events {
    pub platform_id: Dict,
    pub event_id: Strings,
    pub event_type: Dict,
    pub content_hash: Strings,
    pub model_id: Dict,
    pub occurred_at: Vec<i64>,
    pub period: Dict,
    pub topic: Dict,
    pub partition: Vec<i32>,
    pub offset: Vec<i64>,
}

/// One priced line per row (the `accruals` table, less entry id, hash and batch id).
///
/// The columns a line repeats from its event are keys into the event columns' values
/// (`platform_id`, `model_id`, `period`: that column's dictionary; `event`: the event's row,
/// for `event_id`), not copies: a line costs its own fields only.
#[derive(Default)]
pub struct Accruals {
    /// `<topic>/<partition>` of the record that produced the line (`ledger.core.chain.stream_of`).
    pub stream: Dict,
    /// The record's offset in its stream.
    pub position: Vec<i64>,
    /// The event's row in `Events` (its `event_id`).
    pub event: Vec<i32>,
    /// Keys into `Events::platform_id`'s values.
    pub platform_id: Vec<i32>,
    pub line: Vec<i32>,
    pub kind: Dict,
    pub source_id: Dict,
    pub holder_id: Dict,
    /// Keys into `Events::model_id`'s values.
    pub model_id: Vec<i32>,
    pub license_id: Dict,
    pub license_version: Vec<i32>,
    pub quantity: Vec<i128>,
    pub unit: Dict,
    pub rate: Vec<i128>,
    pub per: Vec<i64>,
    pub currency: Dict,
    pub amount: Vec<i128>,
    pub occurred_at: Vec<i64>,
    /// Keys into `Events::period`'s values.
    pub period: Vec<i32>,
}

impl Events {
    pub fn shrink(&mut self) {
        for column in [&mut self.platform_id, &mut self.event_type, &mut self.model_id, &mut self.period,
                       &mut self.topic] {
            column.shrink();
        }
        self.event_id.shrink();
        self.content_hash.shrink();
        self.occurred_at.shrink_to_fit();
        self.partition.shrink_to_fit();
        self.offset.shrink_to_fit();
    }
}

impl Accruals {
    pub fn shrink(&mut self) {
        for column in [&mut self.stream, &mut self.kind, &mut self.source_id, &mut self.holder_id,
                       &mut self.license_id, &mut self.unit, &mut self.currency] {
            column.shrink();
        }
        for keys in [&mut self.event, &mut self.platform_id, &mut self.model_id, &mut self.period] {
            keys.shrink_to_fit();
        }
        self.position.shrink_to_fit();
        self.line.shrink_to_fit();
        self.license_version.shrink_to_fit();
        self.quantity.shrink_to_fit();
        self.rate.shrink_to_fit();
        self.per.shrink_to_fit();
        self.amount.shrink_to_fit();
        self.occurred_at.shrink_to_fit();
    }
}
