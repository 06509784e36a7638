//! Amounts at the accrual scale (12 places) as unscaled `i128`, written exactly as
//! Python writes `str(Decimal)` of a value quantized to 12 places.
//!
//! Entry digests cover that text, so it must match Python's byte for byte: plain
//! notation from 1E-6 up (`0.500000000000`), scientific below (`1.00000E-7`, `0E-12`).

pub const SCALE: u32 = 12;
/// The largest unscaled value a DECIMAL(38, 12) column holds.
pub const MAX_UNSCALED: i128 = 99_999_999_999_999_999_999_999_999_999_999_999_999;

pub fn pow10(exponent: u32) -> i128 {
    10i128.pow(exponent)
}

/// The decimal digits of `value`, without allocating (u64 arithmetic when it fits).
pub struct Digits {
    buffer: [u8; 40],
    start: usize,
}

impl Digits {
    pub fn new(value: u128) -> Self {
        let mut buffer = [0u8; 40];
        let mut start = buffer.len();
        if let Ok(mut small) = u64::try_from(value) {
            loop {
                start -= 1;
                buffer[start] = b'0' + (small % 10) as u8;
                small /= 10;
                if small == 0 {
                    break;
                }
            }
        } else {
            let mut large = value;
            loop {
                start -= 1;
                buffer[start] = b'0' + (large % 10) as u8;
                large /= 10;
                if large == 0 {
                    break;
                }
            }
        }
        Digits { buffer, start }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buffer[self.start..]
    }
}

/// An integer as decimal text.
pub fn write_int(out: &mut Vec<u8>, value: i64) {
    if value < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(Digits::new(u128::from(value.unsigned_abs())).as_bytes());
}

/// `str(Decimal(unscaled).scaleb(-12))`, as Python writes it.
pub fn write_scale12(out: &mut Vec<u8>, unscaled: i128) {
    if unscaled < 0 {
        out.push(b'-');
    }
    let digits = Digits::new(unscaled.unsigned_abs());
    let digits = digits.as_bytes();
    let left = digits.len() as i64 - SCALE as i64; // Python's "leftdigits"
    if left > -6 {
        if left <= 0 {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat(b'0').take((-left) as usize));
            out.extend_from_slice(digits);
        } else {
            let point = left as usize;
            out.extend_from_slice(&digits[..point]);
            out.push(b'.');
            out.extend_from_slice(&digits[point..]);
        }
    } else {
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        let exponent = if unscaled == 0 { -(SCALE as i64) } else { left - 1 };
        out.extend_from_slice(if exponent < 0 { b"E-" } else { b"E+" });
        out.extend_from_slice(Digits::new(u128::from(exponent.unsigned_abs())).as_bytes());
    }
}
