//! Column buffers in Arrow's layout, so Python wraps them as Arrow arrays without copying
//! values one by one: strings as int32 offsets plus UTF-8 data, numbers little-endian.

#[derive(Default)]
pub struct Strings {
    pub offsets: Vec<i32>,
    pub data: Vec<u8>,
}

impl Strings {
    pub fn push(&mut self, value: &[u8]) {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        self.data.extend_from_slice(value);
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
        le_bytes(&self.offsets, |v| v.to_le_bytes())
    }
}

pub fn le_bytes<T: Copy, const N: usize>(values: &[T], bytes: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * N);
    for value in values {
        out.extend_from_slice(&bytes(*value));
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
