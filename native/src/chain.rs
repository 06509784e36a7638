//! Entry digests (ENTRY_FORMAT 3) of accrual columns: the same bytes as
//! `ledger.core.chain.canonical_accrual`, which the Python tests compare entry by entry.
//!
//! Each digest depends on its own row alone (stream, position, line and values), never on
//! the rows before it, so batch boundaries cannot change it; stream heads are folded in
//! Python at a close.

use sha2::{Digest, Sha256};

use crate::columns::Accruals;
use crate::decimal::{write_int, write_scale12};

pub const ENTRY_FORMAT: u32 = 3;

/// A JSON string as Python's `json.encoder.encode_basestring` writes it (ensure_ascii off).
pub fn write_json_string(out: &mut Vec<u8>, text: &[u8]) {
    out.push(b'"');
    for &byte in text {
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x00..=0x1f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(byte >> 4) as usize]);
                out.push(HEX[(byte & 15) as usize]);
            }
            _ => out.push(byte),
        }
    }
    out.push(b'"');
}

/// The canonical bytes of accrual `row`: an entry with no reversal and no description.
pub fn canonical(out: &mut Vec<u8>, a: &Accruals, row: usize) {
    out.clear();
    out.push(b'[');
    write_int(out, i64::from(ENTRY_FORMAT));
    out.push(b',');
    write_json_string(out, a.stream.get(row));
    out.push(b',');
    write_int(out, a.position[row]);
    out.push(b',');
    write_int(out, i64::from(a.line[row]));
    out.push(b',');
    write_json_string(out, a.platform_id.get(row));
    out.push(b',');
    write_json_string(out, a.event_id.get(row));
    out.push(b',');
    write_json_string(out, a.kind.get(row));
    out.push(b',');
    write_json_string(out, a.source_id.get(row));
    out.push(b',');
    write_json_string(out, a.holder_id.get(row));
    out.push(b',');
    write_json_string(out, a.model_id.get(row));
    out.push(b',');
    write_json_string(out, a.license_id.get(row));
    out.push(b',');
    write_int(out, i64::from(a.license_version[row]));
    out.extend_from_slice(b",\"");
    write_scale12(out, a.quantity[row]);
    out.extend_from_slice(b"\",");
    write_json_string(out, a.unit.get(row));
    out.extend_from_slice(b",\"");
    write_scale12(out, a.rate[row]);
    out.extend_from_slice(b"\",");
    write_int(out, a.per[row]);
    out.push(b',');
    write_json_string(out, a.currency.get(row));
    out.extend_from_slice(b",\"");
    write_scale12(out, a.amount[row]);
    out.extend_from_slice(b"\",");
    write_int(out, a.occurred_at[row]);
    out.push(b',');
    write_json_string(out, a.period.get(row));
    out.extend_from_slice(b",null,\"\"]");
}

pub fn hex(digest: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for byte in digest {
        out.push(HEX[(byte >> 4) as usize]);
        out.push(HEX[(byte & 15) as usize]);
    }
}

/// The digest of every accrual (SHA-256 of its canonical bytes), as 64 lowercase hex
/// characters each, back to back, in row order.
pub fn digests(accruals: &Accruals) -> Vec<u8> {
    let rows = accruals.line.len();
    let mut out = Vec::with_capacity(rows * 64);
    let mut entry = Vec::with_capacity(512);
    for row in 0..rows {
        canonical(&mut entry, accruals, row);
        hex(&Sha256::digest(&entry), &mut out);
    }
    out
}
