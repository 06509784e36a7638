//! Kafka record batches (message format v2) as fetched: the records, read in place.
//!
//! Only what the fast path needs is supported: magic 2, not a control batch, not
//! transactional, uncompressed or (through [`plain`]) compressed with lz4, the SDK's codec.
//! Anything else is `Unsupported`, and the caller hands the fetch to kafka-python's own
//! reader, so no record is ever skipped here.

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

/// Most bytes a fetch may decompress to; a larger one (a compression bomb, or a fetch far
/// past the consumer's bounds) is left to kafka-python.
pub const MAX_PLAIN_BYTES: usize = 256 << 20;

const LZ4: i16 = 3;

/// The fetch with every lz4-compressed batch rewritten as the uncompressed batch
/// it holds (same header, compression bits cleared, length and CRC recomputed), or None
/// when no batch is compressed and the fetch can be read as it is.
///
/// A compressed batch's own CRC is checked first when `check_crcs`, so a corrupt batch is
/// refused exactly as kafka-python refuses it. Other codecs (gzip, snappy, zstd), a batch that does not
/// decompress and a fetch past [`MAX_PLAIN_BYTES`] are `Unsupported`. A trailing partial
/// batch is dropped, as [`scan`] drops it.
pub fn plain(data: &[u8], check_crcs: bool) -> Result<Option<Vec<u8>>, Unsupported> {
    let mut compressed = false;
    for batch in batches(data) {
        let batch = batch?;
        if batch.len() >= BATCH_HEADER && i16::from_be_bytes([batch[21], batch[22]]) & 0x07 != 0 {
            compressed = true;
            break;
        }
    }
    if !compressed {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(data.len() * 4);
    for batch in batches(data) {
        let batch = batch?;
        if batch.len() < BATCH_HEADER {
            return Err(Unsupported("batch shorter than its header".into()));
        }
        let attributes = i16::from_be_bytes([batch[21], batch[22]]);
        let codec = attributes & 0x07;
        if codec == 0 {
            out.extend_from_slice(batch);
        } else {
            if check_crcs {
                let expected = u32::from_be_bytes(batch[17..21].try_into().unwrap());
                if crc32c::crc32c(&batch[21..]) != expected {
                    return Err(Unsupported("batch fails its CRC".into()));
                }
            }
            let records = decompress(codec, &batch[BATCH_HEADER..], MAX_PLAIN_BYTES.saturating_sub(out.len()))?;
            let start = out.len();
            out.extend_from_slice(&batch[..BATCH_HEADER]);
            out.extend_from_slice(&records);
            let length = i32::try_from(out.len() - start - LOG_OVERHEAD)
                .map_err(|_| Unsupported("decompressed batch too long".into()))?;
            out[start + 8..start + 12].copy_from_slice(&length.to_be_bytes());
            let plain_attributes = (attributes & !0x07).to_be_bytes();
            out[start + 21..start + 23].copy_from_slice(&plain_attributes);
            let crc = crc32c::crc32c(&out[start + 21..]);
            out[start + 17..start + 21].copy_from_slice(&crc.to_be_bytes());
        }
        if out.len() > MAX_PLAIN_BYTES {
            return Err(Unsupported(format!("fetch decompresses past {MAX_PLAIN_BYTES} bytes")));
        }
    }
    Ok(Some(out))
}

fn decompress(codec: i16, body: &[u8], room: usize) -> Result<Vec<u8>, Unsupported> {
    use std::io::Read;
    let failed = |e: std::io::Error| Unsupported(format!("batch does not decompress: {e}"));
    let mut out = Vec::new();
    let limit = room as u64 + 1; // one byte past the room tells a bomb from a fit
    match codec {
        LZ4 => lz4_flex::frame::FrameDecoder::new(body).take(limit).read_to_end(&mut out).map_err(failed)?,
        other => return Err(Unsupported(format!("compression codec {other}"))),
    };
    if out.len() > room {
        return Err(Unsupported(format!("fetch decompresses past {MAX_PLAIN_BYTES} bytes")));
    }
    Ok(out)
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
