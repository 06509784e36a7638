//! The fast path of batch building: fetched record batches in, priced columns out.
//!
//! It books only what it is sure of: a single-object encoded record in the latest
//! TrainingUsage or InferenceUsage schema that validates (including the bounds of
//! `ledger.core.usage.UsageLimits`) and prices. Every other record (another schema
//! version or framing, revenue, corrections, fine-tune lineage, anything invalid,
//! implausible or unpriceable) is handed back untouched, for Python's reference path to
//! book or quarantine with its exact reason. Pricing is the same arithmetic as
//! `ledger.pricing`, in exact scaled integers.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::avro;
use crate::chain::hex;
use crate::columns::{Accruals, Events};
use crate::decimal::{pow10, write_int, MAX_UNSCALED, SCALE};
use crate::kafka::{self, Record, Unsupported};

pub struct TrainingTerms {
    pub unit: String,
    pub rate: i128,
    pub per: i64,
    pub unit_price: i128,
}

pub struct Version {
    pub license_id: String,
    pub version: i32,
    pub currency: String,
    pub training: Option<TrainingTerms>,
    /// The inference rate in millionths (license parsing allows at most 6 places).
    pub inference_rate: Option<i128>,
}

/// The license book as the fast path reads it: versions by (source, platform), by start.
pub struct Book {
    pub holders: HashMap<String, String>,
    /// source -> platform or "*" -> [(effective_from micros, version; None when only
    /// Python can price it)], in the order `LicenseBook.in_force` bisects. Nested, so a
    /// lookup by `&str` allocates nothing.
    pub index: HashMap<String, HashMap<String, Vec<(i64, Option<Arc<Version>>)>>>,
    pub any_platform: String,
}

impl Book {
    /// `LicenseBook.in_force`: the platform's own license first, then the any-platform one.
    fn in_force(&self, source: &str, platform: &str, at: i64) -> Option<&Option<Arc<Version>>> {
        let platforms = self.index.get(source)?;
        for key_platform in [platform, self.any_platform.as_str()] {
            let Some(versions) = platforms.get(key_platform) else {
                continue;
            };
            let position = versions.partition_point(|(start, _)| *start <= at);
            if position > 0 {
                return Some(&versions[position - 1].1);
            }
        }
        None
    }
}

pub struct Schemas {
    pub training_fingerprint: [u8; 8],
    pub inference_fingerprint: [u8; 8],
    pub training_name: String,
    pub inference_name: String,
}

/// `ledger.core.usage.UsageLimits` as the fast path applies them.
pub struct Limits {
    /// How far `occurred_at` may lie after the record's timestamp, in microseconds.
    pub max_future_us: i128,
    /// Attributions an answer booked here may hold; Python reads longer ones.
    pub max_attributions: usize,
}

pub struct Fallback {
    /// Which of the batch's fetches it came from.
    pub block: usize,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
}

#[derive(Default)]
pub struct Batch {
    pub events: Events,
    pub accruals: Accruals,
    pub fallback: Vec<Fallback>,
    pub offsets: Vec<(String, i32, i64)>,
    /// Two records of this batch share an event key: only the reference path orders that.
    pub needs_reference: bool,
    pub records: u64,
}

pub struct Block<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub min_offset: i64,
    pub data: &'a [u8],
}

/// Civil (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`); also what the JSON row reader checks dates with.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

pub fn period(micros: i64) -> [u8; 7] {
    let (year, month, _) = civil_from_days(micros.div_euclid(86_400_000_000));
    let (year, month) = (year as u32, month); // years 1..=9999: `avro::instant` bounds them
    [
        b'0' + (year / 1000 % 10) as u8,
        b'0' + (year / 100 % 10) as u8,
        b'0' + (year / 10 % 10) as u8,
        b'0' + (year % 10) as u8,
        b'-',
        b'0' + (month / 10) as u8,
        b'0' + (month % 10) as u8,
    ]
}

/// Bytes of the SHA-256 an event's content hash keeps (`consumers.batch.CONTENT_HASH_HEX` / 2).
const CONTENT_HASH_BYTES: usize = 16;

/// Appends the content hash (hex, the digest's first 128 bits) of a record to `out`, as
/// `consumers.batch.content_hash` writes it.
fn content_hash(name: &str, body: &[u8], out: &mut Vec<u8>) {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([0u8]);
    hasher.update(body);
    hex(&hasher.finalize()[..CONTENT_HASH_BYTES], out);
}

struct Line<'a> {
    source_id: &'a str,
    holder_id: &'a str,
    version: &'a Version,
    quantity: i128,
    unit: &'a str,
    rate: i128,
    per: i64,
    amount: i128,
}

pub fn build(schemas: &Schemas, book: &Book, limits: &Limits, blocks: &[Block<'_>]) -> Result<Batch, Unsupported> {
    let mut batch = Batch::default();
    let mut keys: HashSet<(&str, &str)> = HashSet::new();
    let mut lines: Vec<Line<'_>> = Vec::with_capacity(4);
    for (index, block) in blocks.iter().enumerate() {
        let mut next = None;
        let mut stream = None; // the block's `<topic>/<partition>` key, made at its first line
        kafka::each_record(block.data, block.min_offset, |record: Record<'_>| {
            batch.records += 1;
            next = Some(record.offset + 1);
            let booked = record.value.and_then(|value| {
                book_record(schemas, book, limits, block, &record, value, &mut lines, &mut keys, &mut stream, &mut batch)
            });
            if booked.is_none() {
                batch.fallback.push(Fallback {
                    block: index,
                    topic: block.topic.to_owned(),
                    partition: block.partition,
                    offset: record.offset,
                    timestamp: record.timestamp,
                    key: record.key.map(<[u8]>::to_vec),
                    value: record.value.map(<[u8]>::to_vec),
                    headers: kafka::headers_of(&record)?
                        .into_iter()
                        .map(|(k, v)| (k.to_vec(), v.to_vec()))
                        .collect(),
                });
            }
            Ok(())
        })?;
        if let Some(next) = next {
            match batch.offsets.iter_mut().find(|(t, p, _)| t == block.topic && *p == block.partition) {
                Some(entry) => entry.2 = entry.2.max(next),
                None => batch.offsets.push((block.topic.to_owned(), block.partition, next)),
            }
        }
    }
    let (e, a) = (&batch.events, &batch.accruals);
    let strings = [&e.event_id, &e.content_hash];
    let dicts = [
        &e.platform_id, &e.event_type, &e.model_id, &e.period, &e.topic,
        &a.stream, &a.kind, &a.source_id, &a.holder_id, &a.license_id, &a.unit, &a.currency,
    ];
    if !strings.iter().all(|column| column.fits()) || !dicts.iter().all(|column| column.fits()) {
        return Err(Unsupported("a batch column outgrew 32-bit string offsets".into()));
    }
    batch.events.shrink();
    batch.accruals.shrink();
    Ok(batch)
}

/// Books one record into `batch`; `None` leaves it to the reference path (nothing written).
#[allow(clippy::too_many_arguments)]
fn book_record<'a>(
    schemas: &Schemas,
    book: &'a Book,
    limits: &Limits,
    block: &Block<'_>,
    record: &Record<'_>,
    value: &'a [u8],
    lines: &mut Vec<Line<'a>>,
    keys: &mut HashSet<(&'a str, &'a str)>,
    stream: &mut Option<i32>,
    batch: &mut Batch,
) -> Option<()> {
    if value.len() < 10 || value[..2] != [0xc3, 0x01] {
        return None;
    }
    let fingerprint = &value[2..10];
    let body = &value[10..];
    lines.clear();
    let (name, event_type, kind, platform_id, event_id, model_id, occurred_at);
    if fingerprint == schemas.training_fingerprint {
        let event = avro::training(body)?;
        plausible(limits, record, event.occurred_at)?;
        if event.base_model_id.is_some() {
            return None; // lineage rows are the reference path's
        }
        let version = priced_by(book, event.source_id, event.platform_id, event.occurred_at)?;
        let terms = version.training.as_ref()?;
        if terms.unit != event.unit {
            return None;
        }
        let amount = terms.unit_price.checked_mul(i128::from(event.units)).filter(|a| a.abs() <= MAX_UNSCALED)?;
        lines.push(Line {
            source_id: event.source_id,
            holder_id: book.holders.get(event.source_id)?,
            version,
            quantity: i128::from(event.units) * pow10(SCALE),
            unit: event.unit,
            rate: terms.rate,
            per: terms.per,
            amount,
        });
        (name, event_type, kind) = (&schemas.training_name, "TrainingUsage", "training");
        (platform_id, event_id, model_id, occurred_at) =
            (event.platform_id, event.event_id, event.model_id, event.occurred_at);
    } else if fingerprint == schemas.inference_fingerprint {
        let event = avro::inference(body, limits.max_attributions)?;
        plausible(limits, record, event.occurred_at)?;
        for (source_id, weight) in &event.attributions {
            if lines.iter().any(|line| line.source_id == *source_id) {
                return None; // a source named twice: Python refuses it, naming both positions
            }
            let version = priced_by(book, source_id, event.platform_id, event.occurred_at)?;
            let rate = version.inference_rate?;
            lines.push(Line {
                source_id,
                holder_id: book.holders.get(*source_id)?,
                version,
                quantity: i128::from(*weight) * pow10(SCALE - 6),
                unit: "answer",
                rate: rate.checked_mul(pow10(SCALE - 6)).filter(|r| r.abs() <= MAX_UNSCALED)?,
                per: 1,
                amount: rate.checked_mul(i128::from(*weight)).filter(|a| a.abs() <= MAX_UNSCALED)?,
            });
        }
        (name, event_type, kind) = (&schemas.inference_name, "InferenceUsage", "inference");
        (platform_id, event_id, model_id, occurred_at) =
            (event.platform_id, event.event_id, event.model_id, event.occurred_at);
    } else {
        return None;
    }
    if !keys.insert((platform_id, event_id)) {
        batch.needs_reference = true;
        return Some(()); // the whole batch goes to the reference path; this record is not booked twice
    }
    let period = period(occurred_at);
    let events = &mut batch.events;
    let event = events.offset.len() as i32;
    let platform_key = events.platform_id.push(platform_id.as_bytes());
    events.event_id.push(event_id.as_bytes());
    events.event_type.push(event_type.as_bytes());
    events.content_hash.push_with(|data| content_hash(name, body, data));
    let model_key = events.model_id.push(model_id.as_bytes());
    events.occurred_at.push(occurred_at);
    let period_key = events.period.push(&period);
    events.topic.push(block.topic.as_bytes());
    events.partition.push(block.partition);
    events.offset.push(record.offset);
    let accruals = &mut batch.accruals;
    if lines.is_empty() {
        return Some(());
    }
    let stream_key = *stream.get_or_insert_with(|| {
        let mut name = Vec::with_capacity(block.topic.len() + 12);
        name.extend_from_slice(block.topic.as_bytes());
        name.push(b'/');
        write_int(&mut name, i64::from(block.partition));
        accruals.stream.key(&name)
    });
    for (line, l) in lines.iter().enumerate() {
        accruals.stream.keys.push(stream_key);
        accruals.position.push(record.offset);
        accruals.event.push(event);
        accruals.platform_id.push(platform_key);
        accruals.line.push(line as i32);
        accruals.kind.push(kind.as_bytes());
        accruals.source_id.push(l.source_id.as_bytes());
        accruals.holder_id.push(l.holder_id.as_bytes());
        accruals.model_id.push(model_key);
        accruals.license_id.push(l.version.license_id.as_bytes());
        accruals.license_version.push(l.version.version);
        accruals.quantity.push(l.quantity);
        accruals.unit.push(l.unit.as_bytes());
        accruals.rate.push(l.rate);
        accruals.per.push(l.per);
        accruals.currency.push(l.version.currency.as_bytes());
        accruals.amount.push(l.amount);
        accruals.occurred_at.push(occurred_at);
        accruals.period.push(period_key);
    }
    Some(())
}

/// `ledger.core.usage`'s bound on `occurred_at`: at most `max_future_us` after the record's
/// timestamp, which must be set (Python refuses a record without one). Exact, in i128.
fn plausible(limits: &Limits, record: &Record<'_>, occurred_at: i64) -> Option<()> {
    let latest = i128::from(record.timestamp) * 1000 + limits.max_future_us;
    (record.timestamp >= 0 && i128::from(occurred_at) <= latest).then_some(())
}

fn priced_by<'a>(book: &'a Book, source: &str, platform: &str, at: i64) -> Option<&'a Version> {
    book.in_force(source, platform, at)?.as_deref()
}
