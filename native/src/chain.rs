//! What entry digests (ENTRY_FORMAT 3) are written with: JSON strings as Python writes them,
//! hex. The digests themselves are computed from stored entries' columns ([`crate::entries`]).

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

/// `digest` as lowercase hex, appended to `out`.
pub fn hex(digest: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + 2 * digest.len(), 0);
    hex_into(digest, &mut out[start..]);
}

/// `digest` as lowercase hex, written over `out` (two characters a byte; `out` holds exactly that many).
pub fn hex_into(digest: &[u8], out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (byte, pair) in digest.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = HEX[(byte >> 4) as usize];
        pair[1] = HEX[(byte & 15) as usize];
    }
}
