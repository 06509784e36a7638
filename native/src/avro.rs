//! Avro bodies of the latest TrainingUsage and InferenceUsage schemas, read in place.
//!
//! Written for exactly those two schemas: Python checks their fingerprints against the
//! ones this reader was written for before it enables the fast path. `None` means
//! "not for the fast path" (corrupt, or merely unusual); Python's reader then decides.

use crate::kafka::varint;

pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    pub fn at_end(&self) -> bool {
        self.pos == self.data.len()
    }

    pub fn long(&mut self) -> Option<i64> {
        varint(self.data, &mut self.pos)
    }

    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        let length = usize::try_from(self.long()?).ok()?;
        let end = self.pos.checked_add(length).filter(|end| *end <= self.data.len())?;
        let field = &self.data[self.pos..end];
        self.pos = end;
        Some(field)
    }

    pub fn string(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }

    /// A `["null", T]` union: `Some(None)` for null, `Some(Some(t))` for a value.
    pub fn optional<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        match self.long()? {
            0 => Some(None),
            1 => Some(Some(read(self)?)),
            _ => None,
        }
    }

    /// Item count of the next array or map block (0 ends it), skipping a block's byte size.
    pub fn block(&mut self) -> Option<u64> {
        let count = self.long()?;
        if count < 0 {
            self.long()?;
        }
        Some(count.unsigned_abs())
    }
}

pub struct Training<'a> {
    pub event_id: &'a str,
    pub platform_id: &'a str,
    pub model_id: &'a str,
    pub source_id: &'a str,
    pub units: i64,
    pub unit: &'a str,
    pub occurred_at: i64,
    pub base_model_id: Option<&'a str>,
}

pub struct Inference<'a> {
    pub event_id: &'a str,
    pub platform_id: &'a str,
    pub model_id: &'a str,
    pub occurred_at: i64,
    /// (source_id, weight in millionths)
    pub attributions: Vec<(&'a str, i64)>,
}

/// A non-blank string by any definition of whitespace: it holds a visible ASCII character.
/// (Anything else is left to Python's `str.strip`.)
pub fn visible(text: &str) -> bool {
    text.bytes().any(|b| (0x21..=0x7e).contains(&b))
}

fn text<'a>(reader: &mut Reader<'a>) -> Option<&'a str> {
    reader.string().filter(|t| visible(t))
}

/// UTC microseconds a Python datetime can hold (years 1 to 9999).
pub fn instant(micros: i64) -> Option<i64> {
    (-62_135_596_800_000_000..=253_402_300_799_999_999).contains(&micros).then_some(micros)
}

/// TrainingUsage v2: event_id, platform_id, model_id, run_id, source_id, units, unit,
/// occurred_at, base_model_id, metadata, source_revision.
pub fn training(body: &[u8]) -> Option<Training<'_>> {
    let mut r = Reader::new(body);
    let event_id = text(&mut r)?;
    let platform_id = text(&mut r)?;
    let model_id = text(&mut r)?;
    text(&mut r)?; // run_id
    let source_id = text(&mut r)?;
    let units = r.long().filter(|u| *u > 0)?;
    let unit = text(&mut r)?;
    let occurred_at = instant(r.long()?)?;
    let base_model_id = r.optional(text)?;
    loop {
        let count = r.block()?;
        if count == 0 {
            break;
        }
        for _ in 0..count {
            r.string()?;
            r.string()?;
        }
    }
    r.optional(text)?; // source_revision
    r.at_end().then_some(Training { event_id, platform_id, model_id, source_id, units, unit, occurred_at, base_model_id })
}

/// A decimal(7, 6) weight in (0, 1], as millionths.
fn weight(raw: &[u8]) -> Option<i64> {
    if raw.is_empty() || raw.len() > 8 {
        return None;
    }
    let mut value: i64 = if raw[0] & 0x80 != 0 { -1 } else { 0 };
    for byte in raw {
        value = (value << 8) | i64::from(*byte);
    }
    (1..=1_000_000).contains(&value).then_some(value)
}

/// InferenceUsage v1: event_id, platform_id, model_id, request_id, occurred_at,
/// attributions [{source_id, weight}], output_units. More than `max_attributions`
/// attributions are not for the fast path (reading stops at the first one too many).
pub fn inference(body: &[u8], max_attributions: usize) -> Option<Inference<'_>> {
    let mut r = Reader::new(body);
    let event_id = text(&mut r)?;
    let platform_id = text(&mut r)?;
    let model_id = text(&mut r)?;
    text(&mut r)?; // request_id
    let occurred_at = instant(r.long()?)?;
    let mut attributions = Vec::with_capacity(4);
    let mut total = 0i64;
    loop {
        let count = r.block()?;
        if count == 0 {
            break;
        }
        for _ in 0..count {
            if attributions.len() == max_attributions {
                return None;
            }
            let source_id = text(&mut r)?;
            let share = weight(r.bytes()?)?;
            total += share;
            attributions.push((source_id, share));
        }
    }
    if attributions.is_empty() || total > 1_000_000 {
        return None;
    }
    if let Some(units) = r.optional(|r| r.long())? {
        if units <= 0 {
            return None;
        }
    }
    r.at_end().then_some(Inference { event_id, platform_id, model_id, occurred_at, attributions })
}
