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

    pub fn offsets_bytes(&self) -> Vec<u8> {
        if self.offsets.is_empty() {
            return 0i32.to_le_bytes().to_vec();
        }
        le_bytes(&self.offsets)
    }
}

/// A number Arrow stores little-endian at its own width.
pub trait LittleEndian: Copy {
    fn extend(self, out: &mut Vec<u8>);
}

macro_rules! little_endian {
    ($($t:ty),*) => {$(
        impl LittleEndian for $t {
            fn extend(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
little_endian!(i32, i64, i128);

/// A column of numbers as Arrow's data buffer.
pub fn le_bytes<T: LittleEndian>(values: &[T]) -> Vec<u8> {
    let mut out = Vec::with_capacity(std::mem::size_of_val(values));
    for value in values {
        value.extend(&mut out);
    }
    out
}

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
