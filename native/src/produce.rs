//! The producer's bulk path: usage events to Kafka record batches (format v2), in one pass.
//!
//! Written for exactly the latest four usage schemas (`PRODUCE_SCHEMAS`); Python checks
//! their fingerprints before it uses this path. Each event is encoded as Avro behind the
//! header Python gives for its kind (single-object or Confluent framing), keyed
//! `<platform>/<event or corrected event id>`, given a partition as kafka-python's default
//! partitioner would (murmur2 of the key), and appended as a record to the open batch of
//! its topic and partition. The bytes equal fastavro's and kafka-python's (tests compare).
//!
//! An event this path is not sure of (an unknown class, a value fastavro might refuse or
//! write otherwise, a bound of the usage limits not plainly kept, an oversize record)
//! stops `add` at that event: Python hands over what was built and sends that event by
//! the reference path, which raises the error that names it or sends it.

use std::collections::HashMap;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyDict, PyList, PyString, PyType};

/// Schemas this encoder writes: record name and the fingerprint (CRC-64-AVRO, hex) of the
/// canonical form of its latest version.
pub const PRODUCE_SCHEMAS: [(&str, &str); 4] = [
    ("TrainingUsage", "353f461750b3e56f"),
    ("InferenceUsage", "738678647aea6c19"),
    ("RevenueReport", "7f3b5ec5c24c9598"),
    ("UsageCorrection", "18ea707414adb6d3"),
];

/// Bytes of a record batch header (format v2) that kafka-python writes when it closes a batch.
const BATCH_HEADER: usize = 61;
const WEIGHT_PRECISION: usize = 7;
const REVENUE_PRECISION: usize = 30;
const SCALE: i32 = 6;

const TRAINING: usize = 0;
const INFERENCE: usize = 1;
const REVENUE: usize = 2;
const CORRECTION: usize = 3;

/// Not for this path: the event (or the JSON row, `usage_rows`) goes to Python's reference path.
pub(crate) struct Unsure;

pub(crate) type Sure<T> = Result<T, Unsure>;

impl From<PyErr> for Unsure {
    fn from(_: PyErr) -> Self {
        Unsure
    }
}

impl From<std::convert::Infallible> for Unsure {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}

/// Kafka's murmur2 (the Java client's `Utils.murmur2`, as kafka-python's default partitioner has it).
pub fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// Zigzag varint, as both Avro longs and Kafka record fields are written.
fn long(out: &mut Vec<u8>, value: i64) {
    let mut n = ((value << 1) ^ (value >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn text(out: &mut Vec<u8>, value: &Bound<'_, PyAny>) -> Sure<()> {
    let value = value.downcast::<PyString>().map_err(|_| Unsure)?.to_str()?;
    long(out, value.len() as i64);
    out.extend_from_slice(value.as_bytes());
    Ok(())
}

fn optional_text(out: &mut Vec<u8>, value: &Bound<'_, PyAny>) -> Sure<()> {
    if value.is_none() {
        out.push(0);
        Ok(())
    } else {
        out.push(2); // union branch 1, zigzag
        text(out, value)
    }
}

fn optional_long(out: &mut Vec<u8>, value: &Bound<'_, PyAny>) -> Sure<()> {
    if value.is_none() {
        out.push(0);
    } else {
        out.push(2);
        long(out, value.extract::<i64>()?);
    }
    Ok(())
}

/// An Avro decimal (bytes) of a `Decimal`'s text, as fastavro's `prepare_bytes_decimal` writes it.
fn decimal(out: &mut Vec<u8>, value: &Bound<'_, PyAny>, precision: usize, class: &Bound<'_, PyType>) -> Sure<()> {
    if !value.is_instance(class.as_any())? {
        return Err(Unsure); // fastavro writes only a Decimal as a decimal
    }
    let shown = value.str()?;
    let bytes = decimal_bytes(shown.to_str()?, precision).ok_or(Unsure)?;
    long(out, bytes.len() as i64);
    out.extend_from_slice(&bytes);
    Ok(())
}

/// Two's-complement big-endian bytes of the unscaled value of a decimal's text at scale 6,
/// `(bit_length + 8) // 8` long as fastavro sizes them; None where fastavro would refuse
/// it (more digits than `precision`, more places than the scale) or it passes 127 bits.
pub fn decimal_bytes(shown: &str, precision: usize) -> Option<Vec<u8>> {
    let (negative, rest) = match shown.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, shown),
    };
    let (mantissa, exponent) = match rest.find(['E', 'e']) {
        Some(at) => (&rest[..at], rest[at + 1..].parse::<i32>().ok()?),
        None => (rest, 0),
    };
    let (whole, fraction) = match mantissa.find('.') {
        Some(at) => (&mantissa[..at], &mantissa[at + 1..]),
        None => (mantissa, ""),
    };
    if whole.is_empty() || !whole.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit()) {
        return None; // NaN, Infinity: fastavro refuses them too
    }
    let digits: String = whole.chars().chain(fraction.chars()).collect();
    let significant = digits.trim_start_matches('0');
    let count = significant.len().max(1);
    if count > precision {
        return None;
    }
    let delta = exponent.checked_sub(fraction.len() as i32)?.checked_add(SCALE)?;
    if delta < 0 {
        return None;
    }
    let mut unscaled: i128 = 0;
    for b in significant.bytes() {
        unscaled = unscaled.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
    }
    for _ in 0..delta {
        unscaled = unscaled.checked_mul(10)?;
    }
    let bit_length = 128 - unscaled.leading_zeros() as usize;
    let size = (bit_length + 8) / 8;
    if size > 16 {
        return None;
    }
    let signed = if negative { -unscaled } else { unscaled };
    Some(signed.to_be_bytes()[16 - size..].to_vec())
}

/// One open record batch of a topic's partition: its bytes after a reserved header.
struct Open {
    data: Vec<u8>,
    count: i64,
    first_ts: i64,
    max_ts: i64,
    max_record: usize,
    ids: Vec<Py<PyAny>>,
}

impl Open {
    fn new(capacity: usize) -> Self {
        let mut data = Vec::with_capacity(capacity);
        data.resize(BATCH_HEADER, 0);
        Open { data, count: 0, first_ts: 0, max_ts: 0, max_record: 0, ids: Vec::new() }
    }
}

/// A closed batch as Python receives it:
/// (topic index, partition, bytes with room for the header, records, first and max timestamp,
/// largest record, event ids in record order).
type Built<'py> = (usize, u32, Bound<'py, PyByteArray>, i64, i64, i64, usize, Bound<'py, PyList>);

/// Builds record batches of usage events for one producer; see the module's documentation.
#[pyclass(module = "learnright_native")]
pub struct UsageBatcher {
    classes: Vec<Py<PyType>>,
    headers: Vec<Option<Vec<u8>>>,
    topic_of: Vec<usize>,
    batch_size: usize,
    max_event_bytes: usize,
    max_future_us: i128,
    max_attributions: usize,
    datetime: Py<PyType>,
    decimal: Py<PyType>,
    epoch: Py<PyAny>,
    microsecond: Py<PyAny>,
    open: HashMap<(usize, u32), Open>,
    order: Vec<(usize, u32)>,
    ready: Vec<(usize, u32, Open)>,
    value: Vec<u8>,
    key: Vec<u8>,
}

impl UsageBatcher {
    fn occurred_at(&self, py: Python<'_>, out: &mut Vec<u8>, value: &Bound<'_, PyAny>, now_ms: i64) -> Sure<()> {
        if !value.is_instance(self.datetime.bind(py).as_any())? {
            return Err(Unsure);
        }
        let micros: i64 = value.sub(self.epoch.bind(py))?.floor_div(self.microsecond.bind(py))?.extract()?;
        if i128::from(micros) > i128::from(now_ms) * 1000 + self.max_future_us {
            return Err(Unsure); // the reference path names the bound it breaks
        }
        long(out, micros);
        Ok(())
    }

    /// An array of Attribution records; Unsure past the limit or with a source named twice.
    fn attributions(&self, out: &mut Vec<u8>, value: &Bound<'_, PyAny>) -> Sure<()> {
        let count = value.len()?;
        if count == 0 || count > self.max_attributions {
            return Err(Unsure);
        }
        let mut sources: Vec<Bound<'_, PyString>> = Vec::with_capacity(count);
        long(out, count as i64);
        for item in value.try_iter()? {
            let item = item?;
            let source = item.getattr(intern!(value.py(), "source_id"))?;
            let source = source.downcast_into::<PyString>().map_err(|_| Unsure)?;
            let name = source.to_str()?;
            for seen in &sources {
                if seen.to_str()? == name {
                    return Err(Unsure);
                }
            }
            long(out, name.len() as i64);
            out.extend_from_slice(name.as_bytes());
            decimal(out, &item.getattr(intern!(value.py(), "weight"))?, WEIGHT_PRECISION, self.decimal.bind(value.py()))?;
            sources.push(source);
        }
        out.push(0);
        Ok(())
    }

    /// The Avro body of `event` (after its header) into `out`, and its key into `key`.
    fn encode<'py>(&self, py: Python<'py>, kind: usize, event: &Bound<'py, PyAny>, now_ms: i64,
                   out: &mut Vec<u8>, key: &mut Vec<u8>) -> Sure<Py<PyAny>> {
        let field = |name: &Bound<'py, PyString>| -> PyResult<Bound<'py, PyAny>> { event.getattr(name) };
        let event_id = field(intern!(py, "event_id"))?;
        let platform_id = field(intern!(py, "platform_id"))?;
        text(out, &event_id)?;
        text(out, &platform_id)?;
        match kind {
            TRAINING => {
                for name in [intern!(py, "model_id"), intern!(py, "run_id"), intern!(py, "source_id")] {
                    text(out, &field(name)?)?;
                }
                long(out, field(intern!(py, "units"))?.extract::<i64>()?);
                text(out, &field(intern!(py, "unit"))?)?;
                self.occurred_at(py, out, &field(intern!(py, "occurred_at"))?, now_ms)?;
                optional_text(out, &field(intern!(py, "base_model_id"))?)?;
                let metadata = field(intern!(py, "metadata"))?;
                let metadata = metadata.downcast::<PyDict>().map_err(|_| Unsure)?;
                if !metadata.is_empty() {
                    long(out, metadata.len() as i64);
                    for (name, value) in metadata.iter() {
                        text(out, &name)?;
                        text(out, &value)?;
                    }
                }
                out.push(0);
                optional_text(out, &field(intern!(py, "source_revision"))?)?;
            }
            INFERENCE => {
                text(out, &field(intern!(py, "model_id"))?)?;
                text(out, &field(intern!(py, "request_id"))?)?;
                self.occurred_at(py, out, &field(intern!(py, "occurred_at"))?, now_ms)?;
                self.attributions(out, &field(intern!(py, "attributions"))?)?;
                optional_long(out, &field(intern!(py, "output_units"))?)?;
            }
            REVENUE => {
                text(out, &field(intern!(py, "model_id"))?)?;
                text(out, &field(intern!(py, "period"))?)?;
                decimal(out, &field(intern!(py, "revenue"))?, REVENUE_PRECISION, self.decimal.bind(py))?;
                text(out, &field(intern!(py, "currency"))?)?;
                self.occurred_at(py, out, &field(intern!(py, "occurred_at"))?, now_ms)?;
            }
            _ => {
                let corrects = field(intern!(py, "corrects_event_id"))?;
                text(out, &corrects)?;
                let action = field(intern!(py, "action"))?;
                match action.downcast::<PyString>().map_err(|_| Unsure)?.to_str()? {
                    "VOID" => long(out, 0),
                    "REPLACE" => long(out, 1),
                    _ => return Err(Unsure),
                }
                optional_long(out, &field(intern!(py, "replacement_units"))?)?;
                let replacement = field(intern!(py, "replacement_attributions"))?;
                if replacement.is_none() {
                    out.push(0);
                } else {
                    out.push(2);
                    self.attributions(out, &replacement)?;
                }
                text(out, &field(intern!(py, "reason"))?)?;
                self.occurred_at(py, out, &field(intern!(py, "occurred_at"))?, now_ms)?;
                key.extend_from_slice(platform_id.downcast::<PyString>().map_err(|_| Unsure)?.to_str()?.as_bytes());
                key.push(b'/');
                key.extend_from_slice(corrects.downcast::<PyString>().map_err(|_| Unsure)?.to_str()?.as_bytes());
                return Ok(event_id.unbind());
            }
        }
        key.extend_from_slice(platform_id.downcast::<PyString>().map_err(|_| Unsure)?.to_str()?.as_bytes());
        key.push(b'/');
        key.extend_from_slice(event_id.downcast::<PyString>().map_err(|_| Unsure)?.to_str()?.as_bytes());
        Ok(event_id.unbind())
    }

    /// Appends one record (key, value, no headers) to the open batch of `(topic, partition)`.
    fn append(&mut self, topic: usize, partition: u32, now_ms: i64, id: Py<PyAny>) {
        let mut body = Vec::with_capacity(self.key.len() + self.value.len() + 16);
        let slot = (topic, partition);
        let batch_size = self.batch_size;
        let capacity = batch_size.min(1 << 20);
        let open = self.open.entry(slot).or_insert_with(|| Open::new(capacity));
        let encode = |open: &Open, body: &mut Vec<u8>, key: &[u8], value: &[u8]| {
            body.clear();
            body.push(0); // attributes
            long(body, if open.count == 0 { 0 } else { now_ms - open.first_ts });
            long(body, open.count);
            long(body, key.len() as i64);
            body.extend_from_slice(key);
            long(body, value.len() as i64);
            body.extend_from_slice(value);
            body.push(0); // no headers
        };
        encode(open, &mut body, &self.key, &self.value);
        let mut length = Vec::with_capacity(5);
        long(&mut length, body.len() as i64);
        if open.count > 0 && open.data.len() + length.len() + body.len() > batch_size {
            let full = std::mem::replace(open, Open::new(capacity));
            self.ready.push((topic, partition, full));
            encode(open, &mut body, &self.key, &self.value);
            length.clear();
            long(&mut length, body.len() as i64);
        }
        if open.count == 0 {
            open.first_ts = now_ms;
            open.max_ts = now_ms;
            if !self.order.contains(&slot) {
                self.order.push(slot);
            }
        }
        open.max_ts = open.max_ts.max(now_ms);
        open.max_record = open.max_record.max(length.len() + body.len());
        open.data.extend_from_slice(&length);
        open.data.extend_from_slice(&body);
        open.count += 1;
        open.ids.push(id);
    }
}

#[pymethods]
impl UsageBatcher {
    /// `classes` and `headers` in the order training, inference, revenue, correction;
    /// `topic_of[kind]` numbers the kind's topic (kinds sharing a topic share a number).
    #[new]
    #[pyo3(signature = (*, classes, headers, topic_of, batch_size, max_event_bytes, max_future_s, max_attributions, datetime, decimal, epoch, microsecond))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        classes: Vec<Py<PyType>>,
        headers: Vec<Option<Vec<u8>>>,
        topic_of: Vec<usize>,
        batch_size: usize,
        max_event_bytes: usize,
        max_future_s: i64,
        max_attributions: usize,
        datetime: Py<PyType>,
        decimal: Py<PyType>,
        epoch: Py<PyAny>,
        microsecond: Py<PyAny>,
    ) -> PyResult<Self> {
        if classes.len() != 4 || headers.len() != 4 || topic_of.len() != 4 {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "classes, headers and topic_of name the four usage kinds",
            ));
        }
        Ok(UsageBatcher {
            classes,
            headers,
            topic_of,
            batch_size,
            max_event_bytes,
            max_future_us: i128::from(max_future_s) * 1_000_000,
            max_attributions,
            datetime,
            decimal,
            epoch,
            microsecond,
            open: HashMap::new(),
            order: Vec::new(),
            ready: Vec::new(),
            value: Vec::new(),
            key: Vec::new(),
        })
    }

    /// The header written before every body of `kind` (0-3); None stops `add` at such events.
    fn set_header(&mut self, kind: usize, header: Option<Vec<u8>>) -> PyResult<()> {
        match self.headers.get_mut(kind) {
            Some(slot) => {
                *slot = header;
                Ok(())
            }
            None => Err(pyo3::exceptions::PyIndexError::new_err(format!("no usage kind {kind}"))),
        }
    }

    /// Encodes `events[start:]` into the open batches, the partition of each from
    /// `partitions[topic]` (the topic's partition count); `now_ms` is every record's timestamp.
    /// Returns the index of the first event not taken (`len(events)` when all were): the
    /// caller takes the batches built so far and sends that event by the reference path.
    fn add(&mut self, py: Python<'_>, events: &Bound<'_, PyList>, start: usize, partitions: Vec<u32>, now_ms: i64) -> usize {
        let mut value = std::mem::take(&mut self.value);
        let mut key = std::mem::take(&mut self.key);
        let total = events.len();
        let mut index = start;
        while index < total {
            let Ok(event) = events.get_item(index) else { break };
            let event_type = event.get_type();
            let Some(kind) = self.classes.iter().position(|class| event_type.is(class.bind(py))) else { break };
            let Some(header) = self.headers[kind].as_ref() else { break };
            let topic = self.topic_of[kind];
            let Some(&count) = partitions.get(topic).filter(|count| **count > 0) else { break };
            value.clear();
            key.clear();
            value.extend_from_slice(header);
            let Ok(id) = self.encode(py, kind, &event, now_ms, &mut value, &mut key) else { break };
            if value.len() > self.max_event_bytes {
                break;
            }
            let partition = (murmur2(&key) & 0x7fff_ffff) % count;
            self.value = std::mem::take(&mut value);
            self.key = std::mem::take(&mut key);
            self.append(topic, partition, now_ms, id);
            value = std::mem::take(&mut self.value);
            key = std::mem::take(&mut self.key);
            index += 1;
        }
        self.value = value;
        self.key = key;
        index
    }

    /// The batches that filled up, oldest first; with `everything`, then every open one.
    fn take<'py>(&mut self, py: Python<'py>, everything: bool) -> Vec<Built<'py>> {
        let mut done = std::mem::take(&mut self.ready);
        if everything {
            for slot in std::mem::take(&mut self.order) {
                if let Some(open) = self.open.remove(&slot) {
                    if open.count > 0 {
                        done.push((slot.0, slot.1, open));
                    }
                }
            }
        }
        done.into_iter()
            .map(|(topic, partition, open)| {
                let ids = PyList::new(py, open.ids.iter().map(|id| id.bind(py))).expect("a list of ids");
                (topic, partition, PyByteArray::new(py, &open.data), open.count, open.first_ts, open.max_ts,
                 open.max_record, ids)
            })
            .collect()
    }

    /// Records held in batches not yet taken.
    #[getter]
    fn held(&self) -> i64 {
        self.open.values().map(|open| open.count).sum::<i64>() + self.ready.iter().map(|(_, _, open)| open.count).sum::<i64>()
    }
}

/// Kafka's murmur2 of `data` (for equivalence tests with kafka-python's partitioner).
#[pyfunction]
pub fn kafka_murmur2(data: &[u8]) -> u32 {
    murmur2(data)
}

/// The Avro decimal bytes of a decimal's text, or None where the bulk path leaves it to fastavro.
#[pyfunction]
pub fn avro_decimal(shown: &str, precision: usize) -> Option<Vec<u8>> {
    decimal_bytes(shown, precision)
}

/// Registers this module's classes and functions on the extension module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<UsageBatcher>()?;
    m.add_function(wrap_pyfunction!(kafka_murmur2, m)?)?;
    m.add_function(wrap_pyfunction!(avro_decimal, m)?)?;
    m.add("PRODUCE_SCHEMAS", PRODUCE_SCHEMAS.iter().map(|(n, f)| (*n, *f)).collect::<HashMap<_, _>>())?;
    Ok(())
}
