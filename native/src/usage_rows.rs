//! `learnright emit`'s fast path: JSON Lines rows to validated usage events, natively.
//!
//! `UsageRowReader.read` takes a list of lines (bytes, as a binary file yields them) and
//! gives back, for each line, the `TrainingUsage` or `InferenceUsage` event that
//! `producers.files` would build from it, or None. It builds an event only for a row it
//! is *sure* the Python path (`json` with `parse_float=Decimal`, then
//! `ledger.core.usage.parse_event`) accepts and builds the same event from: a strict
//! subset of JSON (no escapes, no `true`/`false` where a value is read, no duplicate
//! keys, no exponents in weights), canonical ISO 8601 timestamps, every check of
//! `parse_event` plainly kept (texts with a visible ASCII character, positive 64-bit
//! integers, weights in (0, 1] with at most 6 places summing to at most 1, each source
//! once, at most `max_attributions` of them, `occurred_at` no further than
//! `max_future_s` after `now_ms`). Everything else — a bad row, a revenue report or a
//! correction, a blank line, a long line, any doubt — is None, and Python reads that
//! line by its reference path, which accepts it or names its problem as before. So the
//! fast path changes what is fast, never what is accepted or how an error reads.
//!
//! Events are made as their dataclasses' `__init__` makes them (every field set by
//! `object.__setattr__`), with the same values: strings, ints, `Decimal(text)` of the
//! weight's own text (never a float), `occurred_at` as an aware UTC `datetime`.

use std::borrow::Cow;
use std::collections::HashMap;

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple, PyType};

use crate::produce::{Sure, Unsure}; // Unsure here: Python reads the line

/// The dataclass fields this reader sets, per record name, in declaration order; Python
/// checks them against the classes before it uses this path.
pub const ROW_FIELDS: [(&str, &[&str]); 3] = [
    ("TrainingUsage", &["event_id", "platform_id", "model_id", "run_id", "source_id", "units", "unit",
                        "occurred_at", "base_model_id", "metadata", "source_revision"]),
    ("InferenceUsage", &["event_id", "platform_id", "model_id", "request_id", "occurred_at", "attributions",
                         "output_units"]),
    ("Attribution", &["source_id", "weight"]),
];

const MAX_DEPTH: usize = 16;
const MAX_WEIGHT: u64 = 1_000_000; // millionths
/// Weights' `Decimal`s kept for reuse (a `Decimal` is immutable); the cache is emptied when full.
const CACHED_WEIGHTS: usize = 4096;

/// A JSON value of the strict subset, borrowing the line's text.
enum Json<'a> {
    Null,
    Bool,
    Str(Cow<'a, str>),
    /// An integer's text (`-?(0|[1-9][0-9]*)`): Python's `json` makes an `int` of it.
    Int(&'a str),
    /// A number with a fraction or an exponent: Python's `json` makes `Decimal(text)` of it.
    Fraction(&'a str),
    Array(Vec<Json<'a>>),
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

struct Parser<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    /// JSON's whitespace, as Python's decoder skips it.
    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Sure<()> {
        self.space();
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(Unsure)
        }
    }

    fn value(&mut self, depth: usize) -> Sure<Json<'a>> {
        if depth > MAX_DEPTH {
            return Err(Unsure);
        }
        self.space();
        match self.peek().ok_or(Unsure)? {
            b'{' => self.object(depth),
            b'[' => self.array(depth),
            b'"' => self.string().map(Json::Str),
            b'-' | b'0'..=b'9' => self.number(),
            b'n' => self.word("null", Json::Null),
            b't' => self.word("true", Json::Bool),
            b'f' => self.word("false", Json::Bool),
            _ => Err(Unsure),
        }
    }

    fn word(&mut self, word: &str, value: Json<'a>) -> Sure<Json<'a>> {
        if self.text[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(value)
        } else {
            Err(Unsure)
        }
    }

    /// A string without control characters (Python's strict decoder refuses them); its
    /// escapes decoded as Python's decoder does, Unsure of a lone surrogate (Python keeps it
    /// in a `str`, Rust cannot).
    fn string(&mut self) -> Sure<Cow<'a, str>> {
        self.at += 1;
        let start = self.at;
        let bytes = self.text.as_bytes();
        loop {
            match bytes.get(self.at).copied().ok_or(Unsure)? {
                b'"' => {
                    self.at += 1;
                    return Ok(Cow::Borrowed(&self.text[start..self.at - 1]));
                }
                b'\\' => break,
                byte if byte < 0x20 => return Err(Unsure),
                _ => self.at += 1,
            }
        }
        let mut owned = String::from(&self.text[start..self.at]);
        loop {
            match bytes.get(self.at).copied().ok_or(Unsure)? {
                b'"' => {
                    self.at += 1;
                    return Ok(Cow::Owned(owned));
                }
                b'\\' => {
                    let escape = bytes.get(self.at + 1).copied().ok_or(Unsure)?;
                    self.at += 2;
                    owned.push(match escape {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let high = self.hex4()?;
                            if (0xdc00..0xe000).contains(&high) {
                                return Err(Unsure);
                            }
                            if (0xd800..0xdc00).contains(&high) {
                                if bytes.get(self.at..self.at + 2) != Some(b"\\u") {
                                    return Err(Unsure);
                                }
                                self.at += 2;
                                let low = self.hex4()?;
                                if !(0xdc00..0xe000).contains(&low) {
                                    return Err(Unsure);
                                }
                                char::from_u32(0x10000 + ((high - 0xd800) << 10) + (low - 0xdc00)).ok_or(Unsure)?
                            } else {
                                char::from_u32(high).ok_or(Unsure)?
                            }
                        }
                        _ => return Err(Unsure),
                    });
                }
                byte if byte < 0x20 => return Err(Unsure),
                _ => {
                    let rest = &self.text[self.at..];
                    let next = rest.find(['"', '\\']).unwrap_or(rest.len());
                    if rest.as_bytes()[..next].iter().any(|b| *b < 0x20) {
                        return Err(Unsure);
                    }
                    owned.push_str(&rest[..next]);
                    self.at += next;
                }
            }
        }
    }

    /// Four hex digits of a `\\u` escape.
    fn hex4(&mut self) -> Sure<u32> {
        let digits = self.text.get(self.at..self.at + 4).ok_or(Unsure)?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Unsure);
        }
        self.at += 4;
        u32::from_str_radix(digits, 16).map_err(|_| Unsure)
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        self.at - start
    }

    /// Python's `NUMBER_RE`: `(-?(?:0|[1-9]\d*))(\.\d+)?([eE][-+]?\d+)?`.
    fn number(&mut self) -> Sure<Json<'a>> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(Unsure),
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return Err(Unsure);
            }
            integer = false;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if self.digits() == 0 {
                return Err(Unsure);
            }
            integer = false;
        }
        let text = &self.text[start..self.at];
        Ok(if integer { Json::Int(text) } else { Json::Fraction(text) })
    }

    fn array(&mut self, depth: usize) -> Sure<Json<'a>> {
        self.at += 1;
        let mut items = Vec::new();
        self.space();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(Json::Array(items));
        }
        loop {
            items.push(self.value(depth + 1)?);
            self.space();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(Json::Array(items));
                }
                _ => return Err(Unsure),
            }
        }
    }

    /// An object; a key given twice (Python keeps the last) is left to Python.
    fn object(&mut self, depth: usize) -> Sure<Json<'a>> {
        self.at += 1;
        let mut members: Vec<(Cow<'a, str>, Json<'a>)> = Vec::new();
        self.space();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(Json::Object(members));
        }
        loop {
            self.space();
            if self.peek() != Some(b'"') {
                return Err(Unsure);
            }
            let key = self.string()?;
            if members.iter().any(|(seen, _)| *seen == key) {
                return Err(Unsure);
            }
            self.expect(b':')?;
            let value = self.value(depth + 1)?;
            members.push((key, value));
            self.space();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(Json::Object(members));
                }
                _ => return Err(Unsure),
            }
        }
    }
}

/// The whole line as one JSON object (whitespace around it allowed, as Python's `decode`).
fn parse_line(text: &str) -> Sure<Vec<(Cow<'_, str>, Json<'_>)>> {
    let mut parser = Parser { text, at: 0 };
    parser.space();
    if parser.peek() != Some(b'{') {
        return Err(Unsure);
    }
    let Json::Object(members) = parser.value(0)? else { return Err(Unsure) };
    parser.space();
    if parser.at != text.len() {
        return Err(Unsure);
    }
    Ok(members)
}

fn get<'j, 'a>(members: &'j [(Cow<'a, str>, Json<'a>)], name: &str) -> Option<&'j Json<'a>> {
    members.iter().find(|(key, _)| key == name).map(|(_, value)| value)
}

/// A string `parse_event` surely takes as non-empty text: one visible ASCII character
/// makes both `not value.isspace()` and `value.strip()` true, whatever else it holds.
fn text<'j>(value: Option<&'j Json<'_>>) -> Sure<&'j str> {
    match value {
        Some(Json::Str(s)) if s.bytes().any(|b| b > b' ' && b < 0x80) => Ok(s),
        _ => Err(Unsure),
    }
}

/// Absent or null: None; else a surely non-blank string.
fn optional_text<'j>(value: Option<&'j Json<'_>>) -> Sure<Option<&'j str>> {
    match value {
        None | Some(Json::Null) => Ok(None),
        other => text(other).map(Some),
    }
}

/// An integer > 0 that fits an Avro long.
fn positive_int(value: Option<&Json<'_>>) -> Sure<i64> {
    match value {
        Some(Json::Int(t)) if !t.starts_with('-') && *t != "0" => t.parse::<i64>().map_err(|_| Unsure),
        _ => Err(Unsure),
    }
}

/// A weight's text as `digits[.digits]` and its value in millionths; Unsure unless it is
/// in (0, 1] with at most 6 places (`Decimal(text)`'s exponent >= -6).
fn weight<'j>(value: Option<&'j Json<'_>>) -> Sure<(&'j str, u64)> {
    let shown: &str = match value {
        Some(Json::Str(s)) => s,
        Some(Json::Int(s)) | Some(Json::Fraction(s)) => s,
        _ => return Err(Unsure),
    };
    let (whole, fraction) = match shown.find('.') {
        Some(at) => (&shown[..at], &shown[at + 1..]),
        None => (shown, ""),
    };
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit())
        || (shown.contains('.') && fraction.is_empty()) || fraction.len() > 6
    {
        return Err(Unsure);
    }
    let whole = whole.trim_start_matches('0');
    if whole.len() > 1 {
        return Err(Unsure);
    }
    let mut millionths = whole.parse::<u64>().unwrap_or(0) * MAX_WEIGHT;
    let mut scale = 100_000;
    for b in fraction.bytes() {
        millionths += u64::from(b - b'0') * scale;
        scale /= 10;
    }
    if millionths == 0 || millionths > MAX_WEIGHT {
        return Err(Unsure);
    }
    Ok((shown, millionths))
}

fn two(bytes: &[u8], at: usize) -> Sure<u32> {
    let (a, b) = (bytes[at], bytes[at + 1]);
    if a.is_ascii_digit() && b.is_ascii_digit() {
        Ok(u32::from(a - b'0') * 10 + u32::from(b - b'0'))
    } else {
        Err(Unsure)
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Microseconds since 1970 of `YYYY-MM-DDTHH:MM:SS[.f{1,6}](Z|±HH:MM)`, the forms of
/// `datetime.fromisoformat` this path is sure of; years 1900-9000 only (no overflow near
/// the ends of `datetime`'s range when converted to UTC).
fn instant(shown: &str) -> Sure<i64> {
    let b = shown.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return Err(Unsure);
    }
    let year = i64::from(two(b, 0)? * 100 + two(b, 2)?);
    let (month, day) = (two(b, 5)?, two(b, 8)?);
    let (hour, minute, second) = (two(b, 11)?, two(b, 14)?, two(b, 17)?);
    if !(1900..=9000).contains(&year) || !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month)
        || hour > 23 || minute > 59 || second > 59
    {
        return Err(Unsure);
    }
    let mut at = 19;
    let mut micros: i64 = 0;
    if b[at] == b'.' {
        at += 1;
        let start = at;
        while at < b.len() && b[at].is_ascii_digit() {
            at += 1;
        }
        let count = at - start;
        if count == 0 || count > 6 {
            return Err(Unsure);
        }
        for &digit in &b[start..at] {
            micros = micros * 10 + i64::from(digit - b'0');
        }
        micros *= 10i64.pow((6 - count) as u32);
    }
    let offset_s: i64 = match &b[at..] {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (hours, minutes) = (two(b, at + 1)?, two(b, at + 4)?);
            if hours > 23 || minutes > 59 {
                return Err(Unsure);
            }
            let seconds = i64::from(hours * 3600 + minutes * 60);
            if *sign == b'-' { -seconds } else { seconds }
        }
        _ => return Err(Unsure),
    };
    let local = days_from_civil(year, month, day) * 86_400
        + i64::from(hour * 3600 + minute * 60 + second);
    Ok((local - offset_s) * 1_000_000 + micros)
}

/// Builds usage events from JSON Lines rows; see the module's documentation.
#[pyclass(module = "learnright_native")]
pub struct UsageRowReader {
    training: Py<PyType>,
    inference: Py<PyType>,
    attribution: Py<PyType>,
    new: Py<PyAny>,
    datetime: Py<PyType>,
    utc: Py<PyAny>,
    decimal: Py<PyType>,
    max_future_us: i128,
    max_attributions: usize,
    max_line: usize,
    weights: HashMap<String, Py<PyAny>>,
}

/// The kinds of row this path builds (`type` as `producers.files.TYPE_ALIASES` reads it).
enum Kind {
    Training,
    Inference,
}

impl UsageRowReader {
    /// An instance of `class` with `fields` set as a frozen dataclass's `__init__` sets them.
    fn make<'py>(&self, py: Python<'py>, class: &Py<PyType>, fields: &[(&Bound<'py, PyString>, Bound<'py, PyAny>)])
                 -> PyResult<Bound<'py, PyAny>> {
        let made = self.new.bind(py).call1((class.bind(py),))?;
        for (name, value) in fields {
            // object.__setattr__: a frozen dataclass refuses the ordinary one
            let status = unsafe { ffi::PyObject_GenericSetAttr(made.as_ptr(), name.as_ptr(), value.as_ptr()) };
            if status != 0 {
                return Err(PyErr::fetch(py));
            }
        }
        Ok(made)
    }

    fn occurred_at<'py>(&self, py: Python<'py>, value: Option<&Json<'_>>, now_ms: i64) -> Sure<Bound<'py, PyAny>> {
        let Some(Json::Str(shown)) = value else { return Err(Unsure) };
        let micros = instant(shown)?;
        if i128::from(micros) > i128::from(now_ms) * 1000 + self.max_future_us {
            return Err(Unsure); // the reference path names the bound it breaks
        }
        let (days, rest) = (micros.div_euclid(86_400_000_000), micros.rem_euclid(86_400_000_000));
        let (year, month, day) = crate::ingest::civil_from_days(days);
        let seconds = rest / 1_000_000;
        let args = PyTuple::new(py, [
            year.into_pyobject(py)?.into_any(),
            month.into_pyobject(py)?.into_any(),
            day.into_pyobject(py)?.into_any(),
            (seconds / 3600).into_pyobject(py)?.into_any(),
            (seconds / 60 % 60).into_pyobject(py)?.into_any(),
            (seconds % 60).into_pyobject(py)?.into_any(),
            (rest % 1_000_000).into_pyobject(py)?.into_any(),
            self.utc.bind(py).clone(),
        ])?;
        Ok(self.datetime.bind(py).call1(args)?)
    }

    fn attributions<'py>(&mut self, py: Python<'py>, value: Option<&Json<'_>>) -> Sure<Bound<'py, PyAny>> {
        let Some(Json::Array(items)) = value else { return Err(Unsure) };
        if items.is_empty() || items.len() > self.max_attributions {
            return Err(Unsure);
        }
        let mut sources: Vec<&str> = Vec::with_capacity(items.len());
        let mut total = 0u64;
        let mut made = Vec::with_capacity(items.len());
        for item in items {
            let Json::Object(members) = item else { return Err(Unsure) };
            let source = text(get(members, "source_id"))?;
            if sources.contains(&source) {
                return Err(Unsure);
            }
            sources.push(source);
            let (shown, millionths) = weight(get(members, "weight"))?;
            total += millionths;
            let weight = match self.weights.get(shown) {
                Some(made) => made.bind(py).clone(),
                None => {
                    let made = self.decimal.bind(py).call1((PyString::new(py, shown),))?;
                    if self.weights.len() >= CACHED_WEIGHTS {
                        self.weights.clear();
                    }
                    self.weights.insert(shown.to_owned(), made.clone().unbind());
                    made
                }
            };
            made.push(self.make(py, &self.attribution, &[
                (intern!(py, "source_id"), PyString::new(py, source).into_any()),
                (intern!(py, "weight"), weight),
            ])?);
        }
        if total > MAX_WEIGHT {
            return Err(Unsure);
        }
        Ok(PyTuple::new(py, made)?.into_any())
    }

    fn event<'py>(&mut self, py: Python<'py>, line: &[u8], now_ms: i64) -> Sure<Bound<'py, PyAny>> {
        if line.len() > self.max_line {
            return Err(Unsure);
        }
        let members = parse_line(std::str::from_utf8(line).map_err(|_| Unsure)?)?;
        let kind = match get(&members, "type") {
            Some(Json::Str(name)) => match name.as_ref() {
                "training" | "TrainingUsage" => Kind::Training,
                "inference" | "InferenceUsage" => Kind::Inference,
                _ => return Err(Unsure),
            },
            _ => return Err(Unsure),
        };
        let string = |value: &str| PyString::new(py, value).into_any();
        let event_id = string(text(get(&members, "event_id"))?);
        let platform_id = string(text(get(&members, "platform_id"))?);
        let occurred_at = self.occurred_at(py, get(&members, "occurred_at"), now_ms)?;
        let model_id = string(text(get(&members, "model_id"))?);
        let optional = |value: Option<&str>| value.map_or_else(|| py.None().into_bound(py), string);
        match kind {
            Kind::Training => {
                let run_id = string(text(get(&members, "run_id"))?);
                let source_id = string(text(get(&members, "source_id"))?);
                let units = positive_int(get(&members, "units"))?.into_pyobject(py)?.into_any();
                let unit = string(text(get(&members, "unit"))?);
                let base_model_id = optional(optional_text(get(&members, "base_model_id"))?);
                let source_revision = optional(optional_text(get(&members, "source_revision"))?);
                let metadata = PyDict::new(py);
                match get(&members, "metadata") {
                    None | Some(Json::Null) => {}
                    Some(Json::Object(pairs)) => {
                        for (name, value) in pairs {
                            let Json::Str(value) = value else { return Err(Unsure) };
                            metadata.set_item(name.as_ref(), value.as_ref())?;
                        }
                    }
                    Some(_) => return Err(Unsure), // `or {}` of a falsy value, or a bad one: Python decides
                }
                Ok(self.make(py, &self.training, &[
                    (intern!(py, "event_id"), event_id),
                    (intern!(py, "platform_id"), platform_id),
                    (intern!(py, "model_id"), model_id),
                    (intern!(py, "run_id"), run_id),
                    (intern!(py, "source_id"), source_id),
                    (intern!(py, "units"), units),
                    (intern!(py, "unit"), unit),
                    (intern!(py, "occurred_at"), occurred_at),
                    (intern!(py, "base_model_id"), base_model_id),
                    (intern!(py, "metadata"), metadata.into_any()),
                    (intern!(py, "source_revision"), source_revision),
                ])?)
            }
            Kind::Inference => {
                let request_id = string(text(get(&members, "request_id"))?);
                let output_units = match get(&members, "output_units") {
                    None | Some(Json::Null) => py.None().into_bound(py),
                    other => positive_int(other)?.into_pyobject(py)?.into_any(),
                };
                let attributions = self.attributions(py, get(&members, "attributions"))?;
                Ok(self.make(py, &self.inference, &[
                    (intern!(py, "event_id"), event_id),
                    (intern!(py, "platform_id"), platform_id),
                    (intern!(py, "model_id"), model_id),
                    (intern!(py, "request_id"), request_id),
                    (intern!(py, "occurred_at"), occurred_at),
                    (intern!(py, "attributions"), attributions),
                    (intern!(py, "output_units"), output_units),
                ])?)
            }
        }
    }
}

#[pymethods]
impl UsageRowReader {
    /// `training`, `inference`, `attribution`: the event classes; `new`: `object.__new__`;
    /// `utc`: `datetime.timezone.utc`; `max_line`: bytes of the longest line taken here.
    #[new]
    #[pyo3(signature = (*, training, inference, attribution, new, datetime, utc, decimal, max_future_s, max_attributions, max_line))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        training: Py<PyType>,
        inference: Py<PyType>,
        attribution: Py<PyType>,
        new: Py<PyAny>,
        datetime: Py<PyType>,
        utc: Py<PyAny>,
        decimal: Py<PyType>,
        max_future_s: i64,
        max_attributions: usize,
        max_line: usize,
    ) -> Self {
        UsageRowReader {
            training,
            inference,
            attribution,
            new,
            datetime,
            utc,
            decimal,
            max_future_us: i128::from(max_future_s) * 1_000_000,
            max_attributions,
            max_line,
            weights: HashMap::new(),
        }
    }

    /// For each of `lines` (bytes), its event, or None where Python must read the line;
    /// `now_ms` bounds `occurred_at` (the clock when the lines were read).
    ///
    /// Python's cyclic garbage collector is paused for the call (and resumed if it ran):
    /// the objects made here hold no cycles, and no Python code runs meanwhile, while a
    /// block's thousands of events would otherwise set off dozens of collections that
    /// scan everything young, the block's own events among them, again and again.
    fn read<'py>(&mut self, py: Python<'py>, lines: &Bound<'py, PyList>, now_ms: i64) -> PyResult<Bound<'py, PyList>> {
        struct Paused(bool);
        impl Drop for Paused {
            fn drop(&mut self) {
                if self.0 {
                    unsafe { ffi::PyGC_Enable() };
                }
            }
        }
        let _paused = Paused(unsafe { ffi::PyGC_Disable() } == 1);
        let out = PyList::empty(py);
        for line in lines.iter() {
            let event = match line.downcast::<PyBytes>() {
                Ok(bytes) => self.event(py, bytes.as_bytes(), now_ms).ok(),
                Err(_) => None,
            };
            match event {
                Some(event) => out.append(event)?,
                None => out.append(py.None())?,
            }
        }
        Ok(out)
    }
}

/// Registers the reader on the extension module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<UsageRowReader>()?;
    let fields = PyDict::new(m.py());
    for (name, names) in ROW_FIELDS {
        fields.set_item(name, PyTuple::new(m.py(), names)?)?;
    }
    m.add("ROW_FIELDS", fields)?;
    Ok(())
}
