//! Kafka record batches (message format v2) as fetched: the records, read in place.
//!
//! Only what the fast path needs is supported: magic 2, uncompressed, not a control
//! batch, not transactional. Anything else is `Unsupported`, and the caller hands the
//! fetch to kafka-python's own reader, so no record is ever skipped here.

pub const BATCH_HEADER: usize = 61;
const LOG_OVERHEAD: usize = 12;

#[derive(Debug)]
pub struct Unsupported(pub String);

pub struct Record<'a> {
    pub offset: i64,
    /// Milliseconds since 1970 as kafka-python reads it: the batch's max timestamp on a
    /// LogAppendTime batch, else its first timestamp plus the record's delta (wrapping,
    /// as Java's long does; the consumer wraps kafka-python's value the same way).
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [u8],
    pub header_count: i64,
}

/// What a fetch holds, without reading its records one by one.
pub struct Scan {
    pub next_offset: i64,
    pub records: u64,
    pub bytes: u64,
    pub leader_epoch: i32,
}

fn be_i64(b: &[u8]) -> i64 {
    i64::from_be_bytes(b[..8].try_into().unwrap())
}

fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes(b[..4].try_into().unwrap())
}

/// A zigzag varint (Kafka's and Avro's signed encoding), advancing `pos`.
pub fn varint(data: &[u8], pos: &mut usize) -> Option<i64> {
    let mut value: u64 = 0;
    let mut shift = 0u32;
    loop {
        let byte = *data.get(*pos)?;
        *pos += 1;
        if shift == 63 && byte > 1 {
            return None;
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    Some(((value >> 1) as i64) ^ -((value & 1) as i64))
}

fn bytes_field<'a>(data: &'a [u8], pos: &mut usize) -> Result<Option<&'a [u8]>, Unsupported> {
    let length = varint(data, pos).ok_or_else(|| Unsupported("bad varint in record".into()))?;
    if length < 0 {
        return Ok(None);
    }
    let end = pos
        .checked_add(length as usize)
        .filter(|end| *end <= data.len())
        .ok_or_else(|| Unsupported("record field runs past its record".into()))?;
    let field = &data[*pos..end];
    *pos = end;
    Ok(Some(field))
}

/// The complete batches of a fetch, in order. A trailing partial batch is left out, as
/// kafka-python leaves it; a length that cannot be a batch is `Unsupported`, so that
/// kafka-python reads the fetch and raises its own error.
fn batches(data: &[u8]) -> impl Iterator<Item = Result<&[u8], Unsupported>> {
    let mut pos = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || data.len() - pos < LOG_OVERHEAD {
            return None;
        }
        let length = be_i32(&data[pos + 8..]);
        if length < (BATCH_HEADER - LOG_OVERHEAD) as i32 {
            failed = true;
            return Some(Err(Unsupported(format!("record batch length {length}"))));
        }
        let end = pos + LOG_OVERHEAD + length as usize;
        if end > data.len() {
            return None;
        }
        let batch = &data[pos..end];
        pos = end;
        Some(Ok(batch))
    })
}

fn check_batch(batch: &[u8], check_crcs: bool) -> Result<(), Unsupported> {
    if batch.len() < BATCH_HEADER {
        return Err(Unsupported("batch shorter than its header".into()));
    }
    let magic = batch[16] as i8;
    if magic != 2 {
        return Err(Unsupported(format!("message format v{magic}")));
    }
    let attributes = i16::from_be_bytes([batch[21], batch[22]]);
    if attributes & 0x07 != 0 {
        return Err(Unsupported("compressed batch".into()));
    }
    if attributes & 0x30 != 0 {
        return Err(Unsupported("transactional or control batch".into()));
    }
    if check_crcs {
        let expected = u32::from_be_bytes(batch[17..21].try_into().unwrap());
        if crc32c::crc32c(&batch[21..]) != expected {
            return Err(Unsupported("batch fails its CRC".into()));
        }
    }
    Ok(())
}

/// Checks every batch of a fetch and counts the records at or after `min_offset`.
pub fn scan(data: &[u8], min_offset: i64, check_crcs: bool) -> Result<Scan, Unsupported> {
    let mut scan = Scan { next_offset: min_offset, records: 0, bytes: 0, leader_epoch: -1 };
    for batch in batches(data) {
        let batch = batch?;
        check_batch(batch, check_crcs)?;
        scan.leader_epoch = be_i32(&batch[12..]);
        let base = be_i64(batch);
        let last = base + i64::from(be_i32(&batch[23..]));
        scan.next_offset = scan.next_offset.max(last + 1);
        each_record_of(batch, min_offset, |record| {
            scan.records += 1;
            scan.bytes += (record.value.map_or(0, <[u8]>::len) + record.key.map_or(0, <[u8]>::len)) as u64;
            Ok(())
        })?;
    }
    Ok(scan)
}

fn each_record_of<'a>(
    batch: &'a [u8],
    min_offset: i64,
    mut visit: impl FnMut(Record<'a>) -> Result<(), Unsupported>,
) -> Result<(), Unsupported> {
    let base = be_i64(batch);
    let count = be_i32(&batch[57..]);
    let log_append_time = i16::from_be_bytes([batch[21], batch[22]]) & 0x08 != 0;
    let (first_timestamp, max_timestamp) = (be_i64(&batch[27..]), be_i64(&batch[35..]));
    let mut pos = BATCH_HEADER;
    for _ in 0..count.max(0) {
        let length = varint(batch, &mut pos).ok_or_else(|| Unsupported("bad record length".into()))?;
        let end = pos
            .checked_add(usize::try_from(length).map_err(|_| Unsupported("negative record length".into()))?)
            .filter(|end| *end <= batch.len())
            .ok_or_else(|| Unsupported("record runs past its batch".into()))?;
        let record = &batch[..end];
        pos += 1; // attributes
        let timestamp_delta = varint(record, &mut pos).ok_or_else(|| Unsupported("bad timestamp delta".into()))?;
        let delta = varint(record, &mut pos).ok_or_else(|| Unsupported("bad offset delta".into()))?;
        let key = bytes_field(record, &mut pos)?;
        let value = bytes_field(record, &mut pos)?;
        let header_count = varint(record, &mut pos).ok_or_else(|| Unsupported("bad header count".into()))?;
        if header_count < 0 {
            return Err(Unsupported("negative header count".into()));
        }
        let headers = &record[pos..end];
        for _ in 0..header_count {
            bytes_field(record, &mut pos)?.ok_or_else(|| Unsupported("null header key".into()))?;
            bytes_field(record, &mut pos)?;
        }
        if pos != end {
            return Err(Unsupported("record length does not match its fields".into()));
        }
        let offset = base + delta;
        if offset >= min_offset {
            let timestamp = if log_append_time { max_timestamp } else { first_timestamp.wrapping_add(timestamp_delta) };
            visit(Record { offset, timestamp, key, value, headers, header_count })?;
        }
    }
    Ok(())
}

/// Visits every record of a fetch at or after `min_offset`, in offset order.
pub fn each_record<'a>(
    data: &'a [u8],
    min_offset: i64,
    mut visit: impl FnMut(Record<'a>) -> Result<(), Unsupported>,
) -> Result<(), Unsupported> {
    for batch in batches(data) {
        let batch = batch?;
        check_batch(batch, false)?;
        each_record_of(batch, min_offset, &mut visit)?;
    }
    Ok(())
}

/// A record's headers as (key, value) pairs (framing checked when the record was read);
/// a null value reads as empty, as the ledger keeps it.
pub fn headers_of<'a>(record: &Record<'a>) -> Result<Vec<(&'a [u8], &'a [u8])>, Unsupported> {
    let mut pos = 0usize;
    let mut out = Vec::with_capacity(record.header_count.max(0) as usize);
    for _ in 0..record.header_count.max(0) {
        let key = bytes_field(record.headers, &mut pos)?.unwrap_or_default();
        let value = bytes_field(record.headers, &mut pos)?.unwrap_or_default();
        out.push((key, value));
    }
    Ok(out)
}
