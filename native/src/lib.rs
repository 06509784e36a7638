//! Python bindings of the native ingest fast path (`learnright_native`).
//!
//! Everything per record runs with the GIL released, so kafka-python's fetching and
//! DuckDB's appending proceed on the other core meanwhile.

mod avro;
mod chain;
mod columns;
mod decimal;
mod entries;
mod ingest;
mod kafka;
mod produce;
mod seen;
mod usage_rows;

use std::collections::HashMap;
use std::sync::Arc;

use std::os::raw::{c_int, c_void};

use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict};

use columns::{Dict, LittleEndian, Strings};

#[cfg(target_endian = "big")]
compile_error!("native columns are handed to Arrow as they lie in memory, which must be little-endian");
use ingest::{Batch, Block, Book, Limits, Schemas, TrainingTerms, Version};

/// (unit, rate, per, unit_price) with amounts as unscaled integers at 12 places.
type TrainingSpec = (String, i128, i64, i128);
/// (license_id, version, currency, training, inference rate in millionths).
type VersionSpec = (String, i32, String, Option<TrainingSpec>, Option<i128>);

/// The schemas, license book and usage limits the fast path prices with; build one per book.
#[pyclass(frozen, module = "learnright_native")]
struct Pricer {
    schemas: Schemas,
    book: Book,
    limits: Limits,
}

#[pymethods]
impl Pricer {
    #[new]
    #[pyo3(signature = (*, training_fingerprint, inference_fingerprint, training_name, inference_name, holders, index, any_platform, max_future_s, max_attributions))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        training_fingerprint: &[u8],
        inference_fingerprint: &[u8],
        training_name: String,
        inference_name: String,
        holders: HashMap<String, String>,
        index: Vec<(String, String, Vec<(i64, Option<VersionSpec>)>)>,
        any_platform: String,
        max_future_s: i64,
        max_attributions: usize,
    ) -> PyResult<Self> {
        let fingerprint = |raw: &[u8]| -> PyResult<[u8; 8]> {
            raw.try_into().map_err(|_| PyValueError::new_err(format!("a fingerprint has 8 bytes, not {}", raw.len())))
        };
        let mut versions: HashMap<(String, i32), Arc<Version>> = HashMap::new();
        let mut book_index = HashMap::new();
        for (source, platform, starts) in index {
            let mut entries = Vec::with_capacity(starts.len());
            for (start, spec) in starts {
                let version = spec.map(|(license_id, version, currency, training, inference_rate)| {
                    versions
                        .entry((license_id.clone(), version))
                        .or_insert_with(|| {
                            Arc::new(Version {
                                license_id,
                                version,
                                currency,
                                training: training.map(|(unit, rate, per, unit_price)| TrainingTerms {
                                    unit,
                                    rate,
                                    per,
                                    unit_price,
                                }),
                                inference_rate,
                            })
                        })
                        .clone()
                });
                entries.push((start, version));
            }
            book_index.entry(source).or_insert_with(HashMap::new).insert(platform, entries);
        }
        Ok(Pricer {
            schemas: Schemas {
                training_fingerprint: fingerprint(training_fingerprint)?,
                inference_fingerprint: fingerprint(inference_fingerprint)?,
                training_name,
                inference_name,
            },
            book: Book { holders, index: book_index, any_platform },
            limits: Limits { max_future_us: i128::from(max_future_s) * 1_000_000, max_attributions },
        })
    }

    /// Builds one batch from fetches given as (topic, partition, first offset, bytes).
    fn build(&self, py: Python<'_>, fetches: Vec<(String, i32, i64, PyBackedBytes)>) -> PyResult<Rows> {
        let batch = py.detach(|| {
            let blocks: Vec<Block<'_>> = fetches
                .iter()
                .map(|(topic, partition, min_offset, data)| Block {
                    topic,
                    partition: *partition,
                    min_offset: *min_offset,
                    data,
                })
                .collect();
            ingest::build(&self.schemas, &self.book, &self.limits, &blocks)
        });
        batch.map(|batch| Rows { batch }).map_err(|e| PyValueError::new_err(format!("cannot read a fetch: {}", e.0)))
    }
}

/// A batch built by the fast path: its columns, and the records it left to Python.
///
/// Frozen: nothing changes its columns once built, so :class:`Column` views may point into them.
#[pyclass(frozen, module = "learnright_native")]
struct Rows {
    batch: Batch,
}

/// A read-only view of one native column's bytes (buffer protocol), so Arrow wraps the
/// memory the fast path filled instead of a copy of it: a batch's columns are in memory
/// once, not twice, while DuckDB appends them.
#[pyclass(frozen, module = "learnright_native")]
struct Column {
    /// What keeps the memory alive: the batch it lies in.
    #[allow(dead_code)]
    _keep: Py<Rows>,
    address: usize,
    len: usize,
}

#[pymethods]
impl Column {
    unsafe fn __getbuffer__(slf: Bound<'_, Self>, view: *mut pyo3::ffi::Py_buffer, flags: c_int) -> PyResult<()> {
        if flags & pyo3::ffi::PyBUF_WRITABLE == pyo3::ffi::PyBUF_WRITABLE {
            return Err(PyBufferError::new_err("a native column is read-only"));
        }
        let this = slf.get();
        // SAFETY: the memory is owned by `_keep` (a frozen Rows), which
        // this object holds and never changes; the view holds this object.
        let status = pyo3::ffi::PyBuffer_FillInfo(view, slf.as_ptr(), this.address as *mut c_void,
                                                  this.len as pyo3::ffi::Py_ssize_t, 1, flags);
        if status == -1 {
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut pyo3::ffi::Py_buffer) {}

    fn __len__(&self) -> usize {
        self.len
    }
}

fn view<'py>(owner: &Bound<'py, Rows>, bytes: &[u8]) -> PyResult<Bound<'py, Column>> {
    Bound::new(owner.py(), Column { _keep: owner.clone().unbind(), address: bytes.as_ptr() as usize, len: bytes.len() })
}

/// A column of numbers as it lies in memory: Arrow's little-endian layout at the type's width.
fn number_bytes<T: LittleEndian>(values: &[T]) -> &[u8] {
    // SAFETY: plain integers, no padding; the slice covers exactly their memory.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values)) }
}

fn strings<'py>(owner: &Bound<'py, Rows>, column: &Strings) -> PyResult<(Bound<'py, PyAny>, Bound<'py, Column>)> {
    let offsets = if column.offsets.is_empty() {
        PyBytes::new(owner.py(), &0i32.to_le_bytes()).into_any()
    } else {
        view(owner, number_bytes(&column.offsets))?.into_any()
    };
    Ok((offsets, view(owner, &column.data)?))
}

/// A dictionary-encoded column as Arrow lays it out: (keys, (offsets, data) of the values).
fn keyed<'py>(owner: &Bound<'py, Rows>, keys: &[i32], values: &Strings)
              -> PyResult<(Bound<'py, Column>, (Bound<'py, PyAny>, Bound<'py, Column>))> {
    Ok((numbers(owner, keys)?, strings(owner, values)?))
}

fn dict<'py>(owner: &Bound<'py, Rows>, column: &Dict)
             -> PyResult<(Bound<'py, Column>, (Bound<'py, PyAny>, Bound<'py, Column>))> {
    keyed(owner, &column.keys, &column.values)
}

fn numbers<'py, T: LittleEndian>(owner: &Bound<'py, Rows>, values: &[T]) -> PyResult<Bound<'py, Column>> {
    view(owner, number_bytes(values))
}

#[pymethods]
impl Rows {
    #[getter]
    fn event_count(&self) -> usize {
        self.batch.events.offset.len()
    }

    #[getter]
    fn accrual_count(&self) -> usize {
        self.batch.accruals.line.len()
    }

    #[getter]
    fn records(&self) -> u64 {
        self.batch.records
    }

    /// Accepted events per event type.
    fn type_counts(&self) -> HashMap<String, u64> {
        let mut counts = HashMap::new();
        let types = &self.batch.events.event_type;
        for row in 0..self.batch.events.offset.len() {
            *counts.entry(String::from_utf8_lossy(types.get(row)).into_owned()).or_insert(0) += 1;
        }
        counts
    }

    /// True when two records share an event key: the reference path must build the batch.
    #[getter]
    fn needs_reference(&self) -> bool {
        self.batch.needs_reference
    }

    /// (topic, partition, next offset) of every fetch read, fast path or not.
    #[getter]
    fn offsets(&self) -> Vec<(String, i32, i64)> {
        self.batch.offsets.clone()
    }

    /// The records left to the reference path, in order:
    /// (fetch index, topic, partition, offset, timestamp, key, value, headers).
    #[allow(clippy::type_complexity)]
    fn fallback<'py>(&self, py: Python<'py>) -> Vec<(usize, String, i32, i64, i64, Option<Bound<'py, PyBytes>>, Option<Bound<'py, PyBytes>>, Vec<(String, Bound<'py, PyBytes>)>)> {
        self.batch
            .fallback
            .iter()
            .map(|f| {
                (
                    f.block,
                    f.topic.clone(),
                    f.partition,
                    f.offset,
                    f.timestamp,
                    f.key.as_ref().map(|k| PyBytes::new(py, k)),
                    f.value.as_ref().map(|v| PyBytes::new(py, v)),
                    f.headers.iter().map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), PyBytes::new(py, v))).collect(),
                )
            })
            .collect()
    }

    /// Whether any of `keys` ((platform_id, event_id)) is among this batch's events.
    fn holds_any(&self, keys: Vec<(String, String)>) -> bool {
        let wanted: std::collections::HashSet<(&[u8], &[u8])> =
            keys.iter().map(|(p, e)| (p.as_bytes(), e.as_bytes())).collect();
        let events = &self.batch.events;
        (0..events.offset.len()).any(|row| wanted.contains(&(events.platform_id.get(row), events.event_id.get(row))))
    }

    /// Arrow buffers of the event columns: name -> buffer (numbers), (offsets, data) (strings) or
    /// (keys, (offsets, data)) (strings stored once per distinct value: an Arrow dictionary), each a
    /// view of this batch's memory (:class:`Column`), not a copy.
    fn event_buffers<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyDict>> {
        let e = &slf.get().batch.events;
        let out = PyDict::new(slf.py());
        for (name, column) in [("event_id", &e.event_id), ("content_hash", &e.content_hash)] {
            out.set_item(name, strings(slf, column)?)?;
        }
        for (name, column) in [
            ("platform_id", &e.platform_id),
            ("event_type", &e.event_type),
            ("model_id", &e.model_id),
            ("period", &e.period),
            ("topic", &e.topic),
        ] {
            out.set_item(name, dict(slf, column)?)?;
        }
        out.set_item("occurred_at", numbers(slf, &e.occurred_at)?)?;
        out.set_item("kafka_partition", numbers(slf, &e.partition)?)?;
        out.set_item("kafka_offset", numbers(slf, &e.offset)?)?;
        Ok(out)
    }

    /// Arrow buffers of the accrual columns, as :meth:`event_buffers` gives them; those a line
    /// repeats from its event are keys into the event column's values (its rows, for `event_id`).
    fn accrual_buffers<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyDict>> {
        let batch = &slf.get().batch;
        let (a, e) = (&batch.accruals, &batch.events);
        let out = PyDict::new(slf.py());
        for (name, column) in [
            ("stream", &a.stream),
            ("kind", &a.kind),
            ("source_id", &a.source_id),
            ("holder_id", &a.holder_id),
            ("license_id", &a.license_id),
            ("unit", &a.unit),
            ("currency", &a.currency),
        ] {
            out.set_item(name, dict(slf, column)?)?;
        }
        out.set_item("event_id", keyed(slf, &a.event, &e.event_id)?)?;
        out.set_item("platform_id", keyed(slf, &a.platform_id, &e.platform_id.values)?)?;
        out.set_item("model_id", keyed(slf, &a.model_id, &e.model_id.values)?)?;
        out.set_item("period", keyed(slf, &a.period, &e.period.values)?)?;
        out.set_item("position", numbers(slf, &a.position)?)?;
        out.set_item("line", numbers(slf, &a.line)?)?;
        out.set_item("license_version", numbers(slf, &a.license_version)?)?;
        out.set_item("per", numbers(slf, &a.per)?)?;
        out.set_item("occurred_at", numbers(slf, &a.occurred_at)?)?;
        out.set_item("quantity", numbers(slf, &a.quantity)?)?;
        out.set_item("rate", numbers(slf, &a.rate)?)?;
        out.set_item("amount", numbers(slf, &a.amount)?)?;
        Ok(out)
    }
}

/// Checks a fetch's record batches and counts its records at or after `min_offset`:
/// (next offset, records, bytes, leader epoch), or None when kafka-python must read it
/// (compressed, transactional or control batches, an old format, a failed CRC).
#[pyfunction]
#[pyo3(signature = (data, min_offset, check_crcs=true))]
fn scan_fetch(py: Python<'_>, data: PyBackedBytes, min_offset: i64, check_crcs: bool) -> Option<(i64, u64, u64, i32)> {
    py.detach(|| kafka::scan(&data, min_offset, check_crcs).ok())
        .map(|s| (s.next_offset, s.records, s.bytes, s.leader_epoch))
}

/// The fetch with its lz4-compressed batches rewritten uncompressed
/// ([`kafka::plain`]): new bytes, or None when no batch is compressed or the fetch is
/// one kafka-python must read (another codec, a failed CRC, a batch that does not decompress).
#[pyfunction]
#[pyo3(signature = (data, check_crcs=true))]
fn plain_fetch(py: Python<'_>, data: PyBackedBytes, check_crcs: bool) -> Option<Py<PyBytes>> {
    py.detach(|| kafka::plain(&data, check_crcs).ok().flatten())
        .map(|plain| PyBytes::new(py, &plain).unbind())
}

/// Every record of a fetch at or after `min_offset`: (offset, timestamp, key, value, headers).
#[pyfunction]
#[allow(clippy::type_complexity)]
fn fetch_records<'py>(
    py: Python<'py>,
    data: &[u8],
    min_offset: i64,
) -> PyResult<Vec<(i64, i64, Option<Bound<'py, PyBytes>>, Option<Bound<'py, PyBytes>>, Vec<(String, Bound<'py, PyBytes>)>)>> {
    let mut out = Vec::new();
    kafka::each_record(data, min_offset, |record| {
        let headers = kafka::headers_of(&record)?;
        out.push((
            record.offset,
            record.timestamp,
            record.key.map(|k| PyBytes::new(py, k)),
            record.value.map(|v| PyBytes::new(py, v)),
            headers.into_iter().map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), PyBytes::new(py, v))).collect(),
        ));
        Ok(())
    })
    .map_err(|e| PyValueError::new_err(format!("cannot read a fetch: {}", e.0)))?;
    Ok(out)
}

/// `str(Decimal(unscaled).scaleb(-12))` as entry digests write it (for equivalence tests).
#[pyfunction]
fn format_scale12(unscaled: i128) -> String {
    let mut out = Vec::new();
    decimal::write_scale12(&mut out, unscaled);
    String::from_utf8(out).expect("ASCII")
}

/// The JSON text of one string as entry digests write it (for equivalence tests).
#[pyfunction]
fn json_string(text: &str) -> String {
    let mut out = Vec::new();
    chain::write_json_string(&mut out, text.as_bytes());
    String::from_utf8(out).expect("escaping keeps UTF-8")
}

/// The bytes of a buffer of little-endian u64 values: an Arrow UInt64 buffer (format `b`)
/// or any bytes-like object (format `B`).
fn u64_bytes(py: Python<'_>, hashes: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    let raw = match PyBuffer::<u8>::get(hashes) {
        Ok(buffer) => buffer.to_vec(py)?,
        Err(_) => PyBuffer::<i8>::get(hashes)?.to_vec(py)?.into_iter().map(|b| b as u8).collect(),
    };
    if raw.len() % 8 != 0 {
        return Err(PyValueError::new_err(format!("a buffer of u64 hashes has a multiple of 8 bytes, not {}", raw.len())));
    }
    Ok(raw)
}

/// The 64-bit key hashes of the events a ledger file holds ([`seen`]): about 9 bytes an
/// event, where the primary key's ART index took about 60 in memory and on disk.
#[pyclass(module = "learnright_native")]
struct EventHashes {
    seen: seen::Hashes,
}

#[pymethods]
impl EventHashes {
    #[new]
    #[pyo3(signature = (capacity=0))]
    fn new(capacity: usize) -> Self {
        EventHashes { seen: seen::Hashes::with_capacity(capacity) }
    }

    /// Adds the hashes of a buffer of little-endian u64 values.
    fn extend(&mut self, py: Python<'_>, hashes: &Bound<'_, PyAny>) -> PyResult<()> {
        let raw = u64_bytes(py, hashes)?;
        let seen = &mut self.seen;
        py.detach(|| seen.extend(seen::values(&raw)));
        Ok(())
    }

    /// The indices of the buffer's hashes that are in the set or occur earlier in the buffer.
    fn hits(&self, py: Python<'_>, hashes: &Bound<'_, PyAny>) -> PyResult<Vec<usize>> {
        let raw = u64_bytes(py, hashes)?;
        let seen = &self.seen;
        Ok(py.detach(|| seen::hits(seen, &raw)))
    }

    fn __len__(&self) -> usize {
        self.seen.len()
    }
}

/// A buffer Python lends (an Arrow buffer: format `b`, or any bytes-like object: `B`),
/// held while its memory is read.
enum Lent {
    Unsigned(#[allow(dead_code)] PyBuffer<u8>),
    Signed(#[allow(dead_code)] PyBuffer<i8>),
}

/// Borrows a buffer: (what keeps it lent, address, length in bytes).
fn lend(obj: &Bound<'_, PyAny>) -> PyResult<(Lent, usize, usize)> {
    let (lent, address, len, contiguous) = match PyBuffer::<u8>::get(obj) {
        Ok(b) => { let (a, l, c) = (b.buf_ptr() as usize, b.len_bytes(), b.is_c_contiguous()); (Lent::Unsigned(b), a, l, c) }
        Err(_) => {
            let b = PyBuffer::<i8>::get(obj)?;
            let (a, l, c) = (b.buf_ptr() as usize, b.len_bytes(), b.is_c_contiguous());
            (Lent::Signed(b), a, l, c)
        }
    };
    if !contiguous {
        return Err(PyValueError::new_err("an entry column's buffer is not contiguous"));
    }
    Ok((lent, address, len))
}

/// One Arrow column as Python hands it: (kind, slice offset, validity buffer or None, values
/// buffer, string data buffer or None); kind is `text` (int32 offsets + data), `int32`,
/// `int64` (also times in microseconds) or `scale12` (decimal128 at 12 places).
type ColumnSpec<'py> = (String, usize, Option<Bound<'py, PyAny>>, Bound<'py, PyAny>, Option<Bound<'py, PyAny>>);

/// A column's buffers by address, to be read once the GIL is released.
struct RawColumn {
    kind: u8,
    offset: usize,
    validity: Option<(usize, usize)>,
    values: (usize, usize),
    data: (usize, usize),
}

fn raw_columns(columns: &[ColumnSpec<'_>], held: &mut Vec<Lent>) -> PyResult<Vec<RawColumn>> {
    let mut raw = Vec::with_capacity(columns.len());
    for (kind, offset, validity, values, data) in columns {
        let kind = match kind.as_str() {
            "text" => b't',
            "int32" => b'4',
            "int64" => b'8',
            "scale12" => b'd',
            other => return Err(PyValueError::new_err(format!("an entry column of unknown kind {other:?}"))),
        };
        let mut take = |obj: &Bound<'_, PyAny>| -> PyResult<(usize, usize)> {
            let (lent, address, len) = lend(obj)?;
            held.push(lent);
            Ok((address, len))
        };
        let validity = validity.as_ref().map(&mut take).transpose()?;
        let values = take(values)?;
        let data = match (kind, data) {
            (b't', Some(data)) => take(data)?,
            (b't', None) => return Err(PyValueError::new_err("a text column needs its data buffer")),
            _ => (0, 0),
        };
        raw.push(RawColumn { kind, offset: *offset, validity, values, data });
    }
    Ok(raw)
}

/// # Safety
/// Every address must be a buffer still lent (held) for the lifetime of the result.
unsafe fn field_columns<'a>(raw: &[RawColumn], rows: usize) -> Result<Vec<entries::FieldColumn<'a>>, entries::ColumnError> {
    let slice = |(address, len): (usize, usize)| -> &'a [u8] {
        if len == 0 { &[] } else { std::slice::from_raw_parts(address as *const u8, len) }
    };
    let mut columns = Vec::with_capacity(raw.len());
    for column in raw {
        let values = match column.kind {
            b't' => entries::Values::Text { offsets: slice(column.values), data: slice(column.data) },
            b'4' => entries::Values::Int32(slice(column.values)),
            b'8' => entries::Values::Int64(slice(column.values)),
            _ => entries::Values::Scale12(slice(column.values)),
        };
        let field = entries::FieldColumn { values, validity: column.validity.map(slice), offset: column.offset };
        field.check(rows)?;
        columns.push(field);
    }
    Ok(columns)
}

fn head_bytes(head: &str) -> PyResult<[u8; 64]> {
    head.as_bytes().try_into().map_err(|_| PyValueError::new_err(format!("a stream head has 64 hex characters, not {:?}", head)))
}

/// Threads that compute entry digests: the machine's cores, at most 4 (the fold that follows is sequential).
fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// The entry digest (format 3) of every row of a batch of ENTRY_FIELDS columns (see
/// `ColumnSpec`), 64 lowercase hex characters each, back to back: `chain.digest` of each row.
#[pyfunction]
fn entry_digests<'py>(py: Python<'py>, rows: usize, columns: Vec<ColumnSpec<'py>>) -> PyResult<Bound<'py, PyBytes>> {
    let mut held = Vec::new();
    let raw = raw_columns(&columns, &mut held)?;
    let out = py.detach(|| {
        // SAFETY: `held` keeps every buffer lent until this returns.
        let columns = unsafe { field_columns(&raw, rows) }?;
        Ok::<_, entries::ColumnError>(entries::digests_parallel(&columns, rows, threads()))
    }).map_err(|e| PyValueError::new_err(format!("cannot read entry columns: {}", e.0)))?;
    drop(held);
    Ok(PyBytes::new(py, &out))
}

/// Stream heads folded from stored entries: `chain.fold_streams` over each row's digest,
/// computed from its ENTRY_FIELDS columns batch after batch (rows in (stream, position, line)
/// order), outside the GIL.
#[pyclass(module = "learnright_native")]
struct EntryFolder {
    folder: entries::Folder,
}

#[pymethods]
impl EntryFolder {
    /// ``start``: each stream's (entry count, head) before; a stream not in it starts at (0, 64 zeros).
    #[new]
    fn new(start: HashMap<String, (i64, String)>) -> PyResult<Self> {
        let mut heads = HashMap::with_capacity(start.len());
        for (stream, (count, head)) in start {
            heads.insert(stream.into_bytes(), (count, head_bytes(&head)?));
        }
        Ok(EntryFolder { folder: entries::Folder::new(heads) })
    }

    /// Folds `rows` entries given as their ENTRY_FIELDS columns in order (the first, the stream, never NULL).
    fn fold_columns<'py>(&mut self, py: Python<'py>, rows: usize, columns: Vec<ColumnSpec<'py>>) -> PyResult<()> {
        let mut held = Vec::new();
        let raw = raw_columns(&columns, &mut held)?;
        let folder = &mut self.folder;
        py.detach(|| {
            // SAFETY: `held` keeps every buffer lent until this returns.
            let columns = unsafe { field_columns(&raw, rows) }?;
            folder.fold_rows(&columns, rows, threads());
            Ok::<_, entries::ColumnError>(())
        }).map_err(|e| PyValueError::new_err(format!("cannot read entry columns: {}", e.0)))?;
        drop(held);
        Ok(())
    }

    /// Whether every row folded by `fold_columns` rose in (position, line) within its stream (see
    /// `ledger.storage.entry_digests.fold_entries_in_stored_order`).
    fn in_order(&self) -> bool {
        self.folder.in_order()
    }

    /// The (entry count, head) of every stream touched.
    fn heads(&self) -> HashMap<String, (i64, String)> {
        self.folder
            .heads()
            .into_iter()
            .map(|(stream, (count, head))| {
                (String::from_utf8_lossy(&stream).into_owned(), (count, String::from_utf8_lossy(&head).into_owned()))
            })
            .collect()
    }
}

#[pymodule]
fn learnright_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Pricer>()?;
    m.add_class::<Rows>()?;
    m.add_class::<Column>()?;
    m.add_class::<EventHashes>()?;
    m.add_class::<EntryFolder>()?;
    m.add_function(wrap_pyfunction!(entry_digests, m)?)?;
    m.add_function(wrap_pyfunction!(scan_fetch, m)?)?;
    m.add_function(wrap_pyfunction!(plain_fetch, m)?)?;
    m.add_function(wrap_pyfunction!(fetch_records, m)?)?;
    m.add_function(wrap_pyfunction!(format_scale12, m)?)?;
    m.add_function(wrap_pyfunction!(json_string, m)?)?;
    m.add("ENTRY_FORMAT", chain::ENTRY_FORMAT)?;
    produce::register(m)?;
    usage_rows::register(m)?;
    Ok(())
}
