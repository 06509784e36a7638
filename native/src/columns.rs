//! Column buffers in Arrow's layout, so Python wraps them as Arrow arrays without copying
//! values one by one: strings as int32 offsets plus UTF-8 data, numbers little-endian.

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

/// A number Arrow stores at its own width, little-endian, as it lies in memory here.
pub trait LittleEndian: Copy {}

impl LittleEndian for i32 {}
impl LittleEndian for i64 {}
impl LittleEndian for i128 {}

/// One accepted event per row (the `usage_events` table, less its batch id).
#[derive(Default)]
pub struct Events {
    pub platform_id: Strings,
    pub event_id: Strings,
    pub event_type: Strings,
    pub content_hash: Strings,
    pub model_id: Strings,
    pub occurred_at: Vec<i64>,
    pub period: Strings,
    pub topic: Strings,
    pub partition: Vec<i32>,
    pub offset: Vec<i64>,
}

/// One priced line per row (the `accruals` table, less entry id, hash and batch id).
#[derive(Default)]
pub struct Accruals {
    /// `<topic>/<partition>` of the record that produced the line (`ledger.core.chain.stream_of`).
    pub stream: Strings,
    /// The record's offset in its stream.
    pub position: Vec<i64>,
    pub platform_id: Strings,
    pub event_id: Strings,
    pub line: Vec<i32>,
    pub kind: Strings,
    pub source_id: Strings,
    pub holder_id: Strings,
    pub model_id: Strings,
    pub license_id: Strings,
    pub license_version: Vec<i32>,
    pub quantity: Vec<i128>,
    pub unit: Strings,
    pub rate: Vec<i128>,
    pub per: Vec<i64>,
    pub currency: Strings,
    pub amount: Vec<i128>,
    pub occurred_at: Vec<i64>,
    pub period: Strings,
}

impl Events {
    pub fn shrink(&mut self) {
        for column in [&mut self.platform_id, &mut self.event_id, &mut self.event_type, &mut self.content_hash,
                       &mut self.model_id, &mut self.period, &mut self.topic] {
            column.shrink();
        }
        self.occurred_at.shrink_to_fit();
        self.partition.shrink_to_fit();
        self.offset.shrink_to_fit();
    }
}

impl Accruals {
    pub fn shrink(&mut self) {
        for column in [&mut self.stream, &mut self.platform_id, &mut self.event_id, &mut self.kind, &mut self.source_id,
                       &mut self.holder_id, &mut self.model_id, &mut self.license_id, &mut self.unit,
                       &mut self.currency, &mut self.period] {
            column.shrink();
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
