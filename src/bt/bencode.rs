//! bencode (BEP 3): a bounded, strict decoder that keeps every value's raw bytes, and a
//! canonical encoder. No I/O: bytes in, values out.
//!
//! Why the raw bytes: a torrent's infohash is the SHA-1 of the `info` value *exactly as
//! it appears in the file*. Re-encoding a decoded value would change the hash of any
//! torrent whose writer was not canonical (unsorted keys, for one), so every [`Node`]
//! carries the slice of input it was decoded from.
//!
//! # What is accepted
//! Strict where BEP 3 is strict, and everything refused is an [`ErrorKind`] with the
//! offset of the offending byte:
//! - integers: `i`, optional `-`, decimal digits, `e`; no leading zero (`i03e`), no `-0`,
//!   no empty integer, no `+` or spaces, and the value must fit an `i64`;
//! - strings: a decimal length without leading zeros, `:`, then exactly that many bytes;
//!   the length is checked against the bytes left before anything is allocated;
//! - dictionary keys must be byte strings;
//! - one value and nothing after it ([`decode`]; [`decode_prefix`] allows trailing bytes).
//!
//! Like libtorrent, **unsorted dictionary keys are accepted**: torrents written by old or
//! careless tools exist in the wild, and since the infohash is taken over the raw bytes,
//! order does not change the meaning. Unlike libtorrent (which keeps both and answers
//! lookups with the first), **duplicate keys are refused**: two readers picking different
//! copies of `info` or `length` is how one file can mean two things.
//!
//! # Bounds
//! Nesting depth and the total number of values are limited ([`Limits`]); each value
//! costs at least two input bytes, so memory is bounded by the input size as well.
//! Recursion depth is checked before descending, so a million nested lists is an error,
//! not a stack overflow.

use std::collections::BTreeMap;
use std::fmt;

/// Limits on what one decode may build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of lists and dictionaries. 100 is libtorrent's default
    /// (`bdecode` depth_limit); real torrents nest 4 levels (root, info, files, path).
    pub max_depth: usize,
    /// Most values (integers, strings, lists, dictionaries) in one input. 4,000,000 is
    /// well above a 64 MiB torrent's needs (a files entry is ~6 values) while bounding
    /// the decoded tree to ~250 MB even for pathological inputs of tiny values.
    pub max_items: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 100,
            max_items: 4_000_000,
        }
    }
}

/// Why an input is not valid bencode, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bencode: offset {offset}: {kind}")]
pub struct DecodeError {
    /// Byte offset in the input of the offending byte (or of the end, for truncation).
    pub offset: usize,
    /// What is wrong there.
    pub kind: ErrorKind,
}

/// The kinds of bencode violation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// The input ended inside a value (or was empty).
    #[error("unexpected end of input")]
    UnexpectedEnd,
    /// A byte that cannot start a value here.
    #[error("unexpected byte 0x{0:02x} where a value should start")]
    UnexpectedByte(u8),
    /// `i03e`, or a string length `03:`.
    #[error("integer with a leading zero")]
    LeadingZero,
    /// `i-0e`.
    #[error("negative zero")]
    NegativeZero,
    /// `ie` or `i-e`.
    #[error("integer without digits")]
    EmptyInteger,
    /// A byte other than a digit or the terminator inside an integer or length.
    #[error("unexpected byte 0x{0:02x} in a number")]
    BadDigit(u8),
    /// An integer outside `i64`.
    #[error("integer overflows 64 bits")]
    IntegerOverflow,
    /// A string length larger than the bytes left in the input.
    #[error("string of {claimed} bytes but only {left} bytes left")]
    StringTooLong {
        /// The length the input claims.
        claimed: u64,
        /// The bytes actually left after the `:`.
        left: usize,
    },
    /// A dictionary key that is not a byte string.
    #[error("dictionary key is not a byte string")]
    KeyNotString,
    /// The same key twice in one dictionary.
    #[error("duplicate dictionary key {0:?}")]
    DuplicateKey(String),
    /// Nesting deeper than [`Limits::max_depth`].
    #[error("nesting deeper than {0} levels")]
    TooDeep(usize),
    /// More values than [`Limits::max_items`].
    #[error("more than {0} values")]
    TooManyItems(usize),
    /// Bytes after the one top-level value.
    #[error("{0} bytes of trailing data after the value")]
    TrailingData(usize),
}

/// One decoded value and the exact input bytes it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node<'a> {
    /// The value.
    pub value: Value<'a>,
    /// The exact bytes of the value in the input (for dictionaries: from `d` to `e`).
    pub raw: &'a [u8],
    /// Offset of `raw` in the input, for error messages about this value.
    pub offset: usize,
}

/// A decoded value borrowing from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    /// `i...e`
    Int(i64),
    /// `<len>:<bytes>`
    Bytes(&'a [u8]),
    /// `l...e`
    List(Vec<Node<'a>>),
    /// `d...e`, in input order (keys are unique; see the module docs about order).
    Dict(Vec<(&'a [u8], Node<'a>)>),
}

impl<'a> Node<'a> {
    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self.value {
            Value::Int(i) => Some(i),
            _ => None,
        }
    }
    /// The byte string, if this is one.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self.value {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }
    /// The list items, if this is a list.
    pub fn as_list(&self) -> Option<&[Node<'a>]> {
        match &self.value {
            Value::List(l) => Some(l),
            _ => None,
        }
    }
    /// The entries, if this is a dictionary.
    pub fn as_dict(&self) -> Option<&[(&'a [u8], Node<'a>)]> {
        match &self.value {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }
    /// The value under `key`, if this is a dictionary holding it.
    pub fn get(&self, key: &[u8]) -> Option<&Node<'a>> {
        self.as_dict()?
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }
    /// An owned copy of the value (canonical order when encoded again).
    pub fn to_owned_value(&self) -> Bencode {
        match &self.value {
            Value::Int(i) => Bencode::Int(*i),
            Value::Bytes(b) => Bencode::Bytes(b.to_vec()),
            Value::List(l) => Bencode::List(l.iter().map(Node::to_owned_value).collect()),
            Value::Dict(d) => Bencode::Dict(
                d.iter()
                    .map(|(k, v)| (k.to_vec(), v.to_owned_value()))
                    .collect(),
            ),
        }
    }
}

/// Decodes exactly one value filling the whole input, with the default [`Limits`].
pub fn decode(input: &[u8]) -> Result<Node<'_>, DecodeError> {
    decode_with(input, Limits::default())
}

/// Decodes exactly one value filling the whole input.
pub fn decode_with(input: &[u8], limits: Limits) -> Result<Node<'_>, DecodeError> {
    let (node, used) = decode_prefix_with(input, limits)?;
    if used != input.len() {
        return Err(DecodeError {
            offset: used,
            kind: ErrorKind::TrailingData(input.len() - used),
        });
    }
    Ok(node)
}

/// Decodes the value at the start of `input`; returns it and how many bytes it used.
pub fn decode_prefix(input: &[u8]) -> Result<(Node<'_>, usize), DecodeError> {
    decode_prefix_with(input, Limits::default())
}

/// [`decode_prefix`] with explicit limits.
pub fn decode_prefix_with(input: &[u8], limits: Limits) -> Result<(Node<'_>, usize), DecodeError> {
    let mut d = Decoder {
        input,
        pos: 0,
        items: 0,
        limits,
    };
    let node = d.value(0)?;
    Ok((node, d.pos))
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
    items: usize,
    limits: Limits,
}

impl<'a> Decoder<'a> {
    fn err<T>(&self, offset: usize, kind: ErrorKind) -> Result<T, DecodeError> {
        Err(DecodeError { offset, kind })
    }

    fn peek(&self) -> Result<u8, DecodeError> {
        match self.input.get(self.pos) {
            Some(&b) => Ok(b),
            None => self.err(self.pos, ErrorKind::UnexpectedEnd),
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node<'a>, DecodeError> {
        let start = self.pos;
        let first = self.peek()?;
        self.items += 1;
        if self.items > self.limits.max_items {
            return self.err(start, ErrorKind::TooManyItems(self.limits.max_items));
        }
        let value = match first {
            b'i' => {
                self.pos += 1;
                Value::Int(self.integer(b'e')?)
            }
            b'0'..=b'9' => Value::Bytes(self.string()?),
            b'l' | b'd' => {
                if depth >= self.limits.max_depth {
                    return self.err(start, ErrorKind::TooDeep(self.limits.max_depth));
                }
                self.pos += 1;
                if first == b'l' {
                    let mut items = Vec::new();
                    while self.peek()? != b'e' {
                        items.push(self.value(depth + 1)?);
                    }
                    self.pos += 1;
                    Value::List(items)
                } else {
                    Value::Dict(self.dict_entries(depth)?)
                }
            }
            other => return self.err(start, ErrorKind::UnexpectedByte(other)),
        };
        Ok(Node {
            value,
            raw: &self.input[start..self.pos],
            offset: start,
        })
    }

    fn dict_entries(&mut self, depth: usize) -> Result<Vec<(&'a [u8], Node<'a>)>, DecodeError> {
        let mut entries: Vec<(&'a [u8], Node<'a>)> = Vec::new();
        let mut key_offsets = Vec::new();
        let mut sorted = true;
        while self.peek()? != b'e' {
            let key_at = self.pos;
            if !self.peek()?.is_ascii_digit() {
                return self.err(key_at, ErrorKind::KeyNotString);
            }
            self.items += 1;
            if self.items > self.limits.max_items {
                return self.err(key_at, ErrorKind::TooManyItems(self.limits.max_items));
            }
            let key = self.string()?;
            if let Some((last, _)) = entries.last() {
                if key == *last {
                    return self.err(key_at, duplicate(key));
                }
                sorted &= key > *last;
            }
            let value = self.value(depth + 1)?;
            entries.push((key, value));
            key_offsets.push(key_at);
        }
        self.pos += 1;
        if !sorted {
            // Unsorted keys are accepted, but duplicates anywhere are not: sort a copy.
            let mut order: Vec<usize> = (0..entries.len()).collect();
            order.sort_by(|&a, &b| entries[a].0.cmp(entries[b].0).then(a.cmp(&b)));
            for w in order.windows(2) {
                if entries[w[0]].0 == entries[w[1]].0 {
                    return self.err(key_offsets[w[1]], duplicate(entries[w[1]].0));
                }
            }
        }
        Ok(entries)
    }

    /// A string: `<len>:<bytes>`; the length is checked against what is left first.
    fn string(&mut self) -> Result<&'a [u8], DecodeError> {
        let len_at = self.pos;
        // Callers only get here on a digit, so `integer` sees no sign.
        let len = self.integer(b':')?;
        let left = self.input.len() - self.pos;
        let len = len as u64;
        if len > left as u64 {
            return self.err(len_at, ErrorKind::StringTooLong { claimed: len, left });
        }
        let s = &self.input[self.pos..self.pos + len as usize];
        self.pos += len as usize;
        Ok(s)
    }

    /// Digits up to `end` (`e` for integers, `:` for string lengths), strictly.
    fn integer(&mut self, end: u8) -> Result<i64, DecodeError> {
        let start = self.pos;
        let negative = self.input.get(self.pos) == Some(&b'-');
        if negative {
            if end == b':' {
                return self.err(start, ErrorKind::BadDigit(b'-'));
            }
            self.pos += 1;
        }
        let digits_at = self.pos;
        let mut value: i64 = 0;
        loop {
            let b = self.peek()?;
            if b == end {
                break;
            }
            if !b.is_ascii_digit() {
                return self.err(self.pos, ErrorKind::BadDigit(b));
            }
            if self.pos > digits_at && self.input[digits_at] == b'0' {
                return self.err(digits_at, ErrorKind::LeadingZero);
            }
            let d = i64::from(b - b'0');
            // Accumulate negatively so that i64::MIN fits.
            value = value
                .checked_mul(10)
                .and_then(|v| {
                    if negative {
                        v.checked_sub(d)
                    } else {
                        v.checked_add(d)
                    }
                })
                .ok_or(DecodeError {
                    offset: start,
                    kind: ErrorKind::IntegerOverflow,
                })?;
            self.pos += 1;
        }
        if self.pos == digits_at {
            return self.err(self.pos, ErrorKind::EmptyInteger);
        }
        if negative && value == 0 {
            return self.err(start, ErrorKind::NegativeZero);
        }
        self.pos += 1; // the terminator
        Ok(value)
    }
}

fn duplicate(key: &[u8]) -> ErrorKind {
    ErrorKind::DuplicateKey(String::from_utf8_lossy(key).into_owned())
}

/// An owned bencode value, for building documents; [`Bencode::encode`] writes canonical
/// bencode (dictionary keys sorted by their raw bytes, as BEP 3 requires).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Bencode {
    /// An integer.
    Int(i64),
    /// A byte string.
    Bytes(Vec<u8>),
    /// A list.
    List(Vec<Bencode>),
    /// A dictionary; the map keeps keys sorted by bytes.
    Dict(BTreeMap<Vec<u8>, Bencode>),
}

impl Bencode {
    /// A byte string from anything byte-like (`&str`, `&[u8]`, `Vec<u8>`).
    pub fn bytes(b: impl AsRef<[u8]>) -> Self {
        Bencode::Bytes(b.as_ref().to_vec())
    }

    /// An empty dictionary, to fill with [`Bencode::insert`].
    pub fn dict() -> Self {
        Bencode::Dict(BTreeMap::new())
    }

    /// Inserts `key` → `value` if this is a dictionary (a no-op otherwise); chainable.
    pub fn insert(&mut self, key: impl AsRef<[u8]>, value: Bencode) -> &mut Self {
        if let Bencode::Dict(map) = self {
            map.insert(key.as_ref().to_vec(), value);
        }
        self
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Appends the canonical encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Bencode::Int(i) => write_int(out, *i),
            Bencode::Bytes(b) => write_bytes(out, b),
            Bencode::List(l) => {
                out.push(b'l');
                for v in l {
                    v.encode_into(out);
                }
                out.push(b'e');
            }
            Bencode::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    write_bytes(out, k);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }
}

/// Appends a byte string `<len>:<bytes>`: the streaming primitive behind
/// [`Bencode::encode_into`], for hot paths (tracker replies) that write a reply directly
/// instead of building a tree first; the caller writes dictionary keys in sorted order.
pub fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

/// Appends an integer `i<n>e` (see [`write_bytes`]).
pub fn write_int(out: &mut Vec<u8>, n: i64) {
    out.push(b'i');
    out.extend_from_slice(n.to_string().as_bytes());
    out.push(b'e');
}

/// `d14:failure reason<len>:<reason>e`, the reply a tracker gives to a bad request.
pub fn failure(reason: &str) -> Vec<u8> {
    let mut out = b"d".to_vec();
    write_bytes(&mut out, b"failure reason");
    write_bytes(&mut out, reason.as_bytes());
    out.push(b'e');
    out
}

impl From<i64> for Bencode {
    fn from(i: i64) -> Self {
        Bencode::Int(i)
    }
}

impl From<&str> for Bencode {
    fn from(s: &str) -> Self {
        Bencode::bytes(s)
    }
}

impl From<Vec<u8>> for Bencode {
    fn from(b: Vec<u8>) -> Self {
        Bencode::Bytes(b)
    }
}

/// Shows a byte string for humans: UTF-8 as is, anything else lossily.
pub struct Lossy<'a>(pub &'a [u8]);

impl fmt::Display for Lossy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kind(input: &[u8]) -> (usize, ErrorKind) {
        let e = decode(input).unwrap_err();
        (e.offset, e.kind)
    }

    #[test]
    fn failure_reply() {
        assert_eq!(failure("bad port"), b"d14:failure reason8:bad porte");
        assert_eq!(
            decode(&failure("x"))
                .unwrap()
                .get(b"failure reason")
                .unwrap()
                .as_bytes(),
            Some(&b"x"[..])
        );
    }

    #[test]
    fn decodes_values_with_raw_spans() {
        let input = b"d3:agei-12e4:infod1:xli1e2:abee4:name3:bobe";
        let root = decode(input).unwrap();
        assert_eq!(root.raw, &input[..]);
        assert_eq!(root.get(b"age").unwrap().as_int(), Some(-12));
        let info = root.get(b"info").unwrap();
        assert_eq!(info.raw, b"d1:xli1e2:abee");
        assert_eq!(info.offset, 17);
        let x = info.get(b"x").unwrap().as_list().unwrap();
        assert_eq!(x[1].as_bytes(), Some(&b"ab"[..]));
        assert_eq!(root.get(b"name").unwrap().as_bytes(), Some(&b"bob"[..]));
        assert!(root.get(b"nope").is_none());
    }

    #[test]
    fn integer_extremes() {
        assert_eq!(decode(b"i0e").unwrap().as_int(), Some(0));
        assert_eq!(
            decode(b"i9223372036854775807e").unwrap().as_int(),
            Some(i64::MAX)
        );
        assert_eq!(
            decode(b"i-9223372036854775808e").unwrap().as_int(),
            Some(i64::MIN)
        );
        assert_eq!(kind(b"i9223372036854775808e").1, ErrorKind::IntegerOverflow);
        assert_eq!(
            kind(b"i-9223372036854775809e").1,
            ErrorKind::IntegerOverflow
        );
    }

    #[test]
    fn strictness() {
        assert_eq!(kind(b"i03e"), (1, ErrorKind::LeadingZero));
        assert_eq!(kind(b"i-0e"), (1, ErrorKind::NegativeZero));
        assert_eq!(kind(b"i-03e"), (2, ErrorKind::LeadingZero));
        assert_eq!(kind(b"ie"), (1, ErrorKind::EmptyInteger));
        assert_eq!(kind(b"i-e"), (2, ErrorKind::EmptyInteger));
        assert_eq!(kind(b"i+1e"), (1, ErrorKind::BadDigit(b'+')));
        assert_eq!(kind(b"i 1e"), (1, ErrorKind::BadDigit(b' ')));
        assert_eq!(kind(b"03:abc"), (0, ErrorKind::LeadingZero));
        assert_eq!(kind(b"-3:abc"), (0, ErrorKind::UnexpectedByte(b'-')));
        assert_eq!(kind(b"di1ei2ee"), (1, ErrorKind::KeyNotString));
        assert_eq!(
            kind(b"d1:ai1e1:ai2ee"),
            (7, ErrorKind::DuplicateKey("a".into()))
        );
        assert_eq!(
            kind(b"d1:bi1e1:ai2e1:bi3ee"),
            (13, ErrorKind::DuplicateKey("b".into()))
        );
        assert_eq!(kind(b"i1ei2e"), (3, ErrorKind::TrailingData(3)));
        assert_eq!(kind(b""), (0, ErrorKind::UnexpectedEnd));
        assert_eq!(kind(b"l"), (1, ErrorKind::UnexpectedEnd));
        assert_eq!(kind(b"x"), (0, ErrorKind::UnexpectedByte(b'x')));
        // Unsorted keys are accepted and kept in input order.
        let d = decode(b"d1:bi1e1:ai2ee").unwrap();
        assert_eq!(d.as_dict().unwrap()[0].0, b"b");
    }

    #[test]
    fn message_format() {
        let e = decode(b"i03e").unwrap_err();
        assert_eq!(
            e.to_string(),
            "bencode: offset 1: integer with a leading zero"
        );
    }

    #[test]
    fn bounds() {
        let e = decode(b"10000000000:x").unwrap_err();
        assert_eq!(
            e.kind,
            ErrorKind::StringTooLong {
                claimed: 10_000_000_000,
                left: 1
            }
        );
        assert_eq!(
            kind(b"99999999999999999999999:x").1,
            ErrorKind::IntegerOverflow
        );
        let deep = vec![b'l'; 1_000_000];
        assert_eq!(kind(&deep), (100, ErrorKind::TooDeep(100)));
        let mut ok = vec![b'l'; 100];
        ok.extend(vec![b'e'; 100]);
        assert!(decode(&ok).is_ok());
        let limits = Limits {
            max_depth: 100,
            max_items: 3,
        };
        let e = decode_with(b"li1ei2ei3ee", limits).unwrap_err();
        assert_eq!((e.offset, e.kind), (7, ErrorKind::TooManyItems(3)));
    }

    #[test]
    fn prefix_reports_length() {
        let (n, used) = decode_prefix(b"4:spamXYZ").unwrap();
        assert_eq!((n.as_bytes(), used), (Some(&b"spam"[..]), 6));
    }

    #[test]
    fn encoder_sorts_keys() {
        let mut d = Bencode::dict();
        d.insert("zeta", 1.into())
            .insert("alpha", "x".into())
            .insert("mid", Bencode::List(vec![Bencode::Int(-5), "".into()]));
        assert_eq!(d.encode(), b"d5:alpha1:x3:midli-5e0:e4:zetai1ee");
        let unsorted = decode(b"d1:bi1e1:ai2ee").unwrap();
        assert_eq!(unsorted.to_owned_value().encode(), b"d1:ai2e1:bi1ee");
    }

    fn arb_bencode() -> impl Strategy<Value = Bencode> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(Bencode::Int),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(Bencode::Bytes),
        ];
        leaf.prop_recursive(5, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Bencode::List),
                proptest::collection::btree_map(
                    proptest::collection::vec(any::<u8>(), 0..8),
                    inner,
                    0..8
                )
                .prop_map(Bencode::Dict),
            ]
        })
    }

    proptest! {
        #[test]
        fn round_trip(v in arb_bencode()) {
            let bytes = v.encode();
            let node = decode(&bytes).unwrap();
            prop_assert_eq!(node.raw, &bytes[..]);
            prop_assert_eq!(node.to_owned_value(), v);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(node) = decode(&bytes) {
                // What is accepted is canonical up to key order: re-encoding keeps length.
                prop_assert_eq!(node.to_owned_value().encode().len(), bytes.len());
            }
        }
    }
}
