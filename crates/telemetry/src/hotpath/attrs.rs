//! An item's attributes, written on the thread that records them as the OTLP `KeyValue` fields
//! of its message (a span's field 9, a log record's field 6): the encoding thread copies them
//! into the request in one piece, and the item carries some 25 bytes an attribute where it
//! carried a key, a value and a copy of the text.

use std::ops::Range;

use super::layer::Plain;
use super::otlp::{
    FIXED64, LEN, LOG_ATTRIBUTES, Out, SPAN_ATTRIBUTES, VARINT, put_kv, short_kv, tag,
    write_short_kv,
};

/// The tags read back: a `KeyValue`'s key and value, and an `AnyValue`'s scalars.
const KEY: u8 = tag(1, LEN);
const VALUE: u8 = tag(2, LEN);
const STRING: u8 = tag(1, LEN);
const BOOL: u8 = tag(2, VARINT);
const INT: u8 = tag(3, VARINT);
const DOUBLE: u8 = tag(4, FIXED64);

/// Bytes kept in the item itself: the bot's and the API's items (up to 10 attributes, some 250
/// bytes) fit. A larger block moves to the heap: a malloc on the caller's thread and a free on
/// the export thread.
const INLINE: usize = 256;

/// The attributes of one item, as field `FIELD` of its message.
#[derive(Debug)]
pub(crate) struct Attrs<const FIELD: u32> {
    inline: [u8; INLINE],
    /// Bytes used in `inline`, while `spilled` is empty.
    len: usize,
    /// Every byte, once they outgrew `inline`.
    spilled: Vec<u8>,
    count: u32,
    pub(crate) dropped: u32,
}

pub(crate) type SpanAttrs = Attrs<SPAN_ATTRIBUTES>;
pub(crate) type LogAttrs = Attrs<LOG_ATTRIBUTES>;

impl<const FIELD: u32> Default for Attrs<FIELD> {
    fn default() -> Self {
        Self {
            inline: [0; INLINE],
            len: 0,
            spilled: Vec::new(),
            count: 0,
            dropped: 0,
        }
    }
}

impl<const FIELD: u32> Out for Attrs<FIELD> {
    fn put(&mut self, bytes: &[u8]) {
        if self.spilled.is_empty() {
            let end = self.len + bytes.len();
            if let Some(room) = self.inline.get_mut(self.len..end) {
                room.copy_from_slice(bytes);
                self.len = end;
                return;
            }
            self.spill(end);
        }
        self.spilled.extend_from_slice(bytes);
    }

    #[inline]
    fn reserve_for(&mut self, _: usize) {}
}

impl<const FIELD: u32> Attrs<FIELD> {
    #[cold]
    fn spill(&mut self, at_least: usize) {
        self.spilled.reserve(at_least.max(2 * INLINE));
        self.spilled.extend_from_slice(&self.inline[..self.len]);
    }

    /// The `KeyValue` fields, ready for the item's message.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        if self.spilled.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.spilled
        }
    }

    /// Adds `key`; past `max` attributes, counts it dropped.
    // Always inlined: each visitor knows its value's kind, so only that kind's code remains.
    #[inline(always)]
    pub(crate) fn push(&mut self, key: &str, value: Plain<'_>, max: usize) {
        if (self.count as usize) >= max {
            self.dropped += 1;
            return;
        }
        self.count += 1;
        // Nearly every attribute: written in place, in the item.
        if let Some(kv) = short_kv(FIELD, key, value)
            && self.spilled.is_empty()
            && let Some(room) = self.inline.get_mut(self.len..self.len + kv.len)
        {
            write_short_kv(room, kv, FIELD, key, value);
            self.len += kv.len;
        } else {
            self.put_long(key, value);
        }
    }

    #[inline(never)]
    fn put_long(&mut self, key: &str, value: Plain<'_>) {
        put_kv(self, FIELD, key, value);
    }

    /// Sets `key` again where it is, or adds it (`Span::record`: later values replace earlier
    /// ones).
    pub(crate) fn set(&mut self, key: &str, value: Plain<'_>, max: usize) {
        let Some(at) = self.find(key) else {
            return self.push(key, value, max);
        };
        let mut bytes = self.as_bytes().to_vec();
        let mut kv = Vec::new();
        put_kv(&mut kv, FIELD, key, value);
        bytes.splice(at, kv);
        self.len = 0;
        self.spilled.clear();
        self.put(&bytes);
    }

    /// Where the field of `key` is: keys are compared as bytes, values skipped unread (every
    /// `Span::record` asks).
    fn find(&self, key: &str) -> Option<Range<usize>> {
        let bytes = self.as_bytes();
        let mut at = 0;
        loop {
            let (range, k, _) = field_at(bytes, at)?;
            if k == key.as_bytes() {
                return Some(range);
            }
            at = range.end;
        }
    }

    /// The attributes, read back (the console exporter; tests).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, Plain<'_>)> {
        self.entries().map(|e| (e.key, e.value))
    }

    fn entries(&self) -> impl Iterator<Item = Entry<'_>> {
        let bytes = self.as_bytes();
        let mut at = 0;
        std::iter::from_fn(move || {
            let entry = Entry::read(bytes, at)?;
            at = entry.range.end;
            Some(entry)
        })
    }
}

/// One `KeyValue` field of a block written by [`put_kv`].
struct Entry<'a> {
    range: Range<usize>,
    key: &'a str,
    value: Plain<'a>,
}

impl<'a> Entry<'a> {
    fn read(bytes: &'a [u8], at: usize) -> Option<Self> {
        let (range, key, mut kv) = field_at(bytes, at)?;
        let key = std::str::from_utf8(key).ok()?;
        kv.expect(VALUE)?;
        let mut any = Reader(kv.len_delimited()?);
        let value = match any.byte()? {
            STRING => Plain::Str(std::str::from_utf8(any.len_delimited()?).ok()?),
            BOOL => Plain::Bool(any.varint()? != 0),
            INT => Plain::I64(any.varint()? as i64),
            DOUBLE => Plain::F64(f64::from_le_bytes(any.take(8)?.try_into().ok()?)),
            _ => return None,
        };
        Some(Self { range, key, value })
    }
}

/// The `KeyValue` field at `at` in `bytes`: where it is, its key, and the rest of it (its value).
fn field_at(bytes: &[u8], at: usize) -> Option<(Range<usize>, &[u8], Reader<'_>)> {
    let mut field = Reader(bytes.get(at..)?);
    field.byte()?;
    let mut kv = Reader(field.len_delimited()?);
    let end = bytes.len() - field.0.len();
    kv.expect(KEY)?;
    let key = kv.len_delimited()?;
    Some((at..end, key, kv))
}

/// Reads protobuf from the front of a slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn byte(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn expect(&mut self, tag: u8) -> Option<()> {
        (self.byte()? == tag).then_some(())
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }

    fn len_delimited(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        self.take(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
    use prost::Message as _;

    /// Every field of `attrs`, decoded with the generated messages.
    fn decoded<const F: u32>(attrs: &Attrs<F>) -> Vec<KeyValue> {
        let mut bytes = attrs.as_bytes();
        let mut out = Vec::new();
        while !bytes.is_empty() {
            assert_eq!(u32::from(bytes[0]), F << 3 | 2, "the field's tag");
            let kv = KeyValue::decode_length_delimited(&bytes[1..]).expect("a KeyValue");
            let len = kv.encoded_len();
            let prefix = prost::length_delimiter_len(len);
            bytes = &bytes[1 + prefix + len..];
            out.push(kv);
        }
        out
    }

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue { value: Some(value) }),
            ..KeyValue::default()
        }
    }

    #[test]
    fn attributes_are_the_fields_the_generated_messages_read() {
        let long = "x".repeat(300);
        let mut attrs = SpanAttrs::default();
        attrs.push("sku", Plain::Str("SKU-1"), 10);
        attrs.push("quantity", Plain::I64(-3), 10);
        attrs.push("ratio", Plain::F64(0.5), 10);
        attrs.push("replayed", Plain::Bool(false), 10);
        attrs.push("error.message", Plain::Str(&long), 10);
        attrs.push("empty", Plain::Str(""), 10);
        let expected = [
            kv("sku", Value::StringValue("SKU-1".into())),
            kv("quantity", Value::IntValue(-3)),
            kv("ratio", Value::DoubleValue(0.5)),
            kv("replayed", Value::BoolValue(false)),
            kv("error.message", Value::StringValue(long.clone())),
            kv("empty", Value::StringValue(String::new())),
        ];
        assert_eq!(decoded(&attrs), expected);
        let read: Vec<_> = attrs.iter().collect();
        assert_eq!(
            read,
            [
                ("sku", Plain::Str("SKU-1")),
                ("quantity", Plain::I64(-3)),
                ("ratio", Plain::F64(0.5)),
                ("replayed", Plain::Bool(false)),
                ("error.message", Plain::Str(&long)),
                ("empty", Plain::Str("")),
            ]
        );
        let mut logs = LogAttrs::default();
        logs.push("sku", Plain::Str("SKU-1"), usize::MAX);
        assert_eq!(decoded(&logs), expected[..1]);
    }

    #[test]
    fn short_attributes_are_written_as_the_general_encoder_writes_them() {
        let text = "t".repeat(100);
        let lengths: Vec<String> = (1..=40)
            .map(|n| "abcdefghij".repeat(4)[..n].to_owned())
            .collect();
        let values = [
            Plain::Str(""),
            Plain::Str("SKU-1"),
            Plain::Str(&text),
            Plain::Bool(true),
            Plain::F64(-2.5),
        ]
        .into_iter()
        .chain(
            [0, 1, 127, 128, 300, -1, i64::MIN, i64::MAX]
                .into_iter()
                .map(Plain::I64),
        )
        .chain(lengths.iter().map(|s| Plain::Str(s)));
        let keys = ["key"]
            .into_iter()
            .chain(lengths.iter().map(String::as_str));
        for (key, value) in keys.cycle().zip(values) {
            let mut general = Vec::new();
            put_kv(&mut general, SPAN_ATTRIBUTES, key, value);
            let kv = short_kv(SPAN_ATTRIBUTES, key, value).expect("a short attribute");
            let mut short = vec![0; kv.len];
            write_short_kv(&mut short, kv, SPAN_ATTRIBUTES, key, value);
            assert_eq!(short, general, "{key} = {value:?}");
            let mut attrs = SpanAttrs::default();
            attrs.push(key, value, 1);
            assert_eq!(attrs.iter().collect::<Vec<_>>(), [(key, value)]);
        }
        assert!(short_kv(SPAN_ATTRIBUTES, "key", Plain::Str(&"x".repeat(130))).is_none());
    }

    #[test]
    fn past_the_limit_attributes_are_counted_dropped() {
        let mut attrs = SpanAttrs::default();
        for n in 0..5 {
            attrs.push("n", Plain::I64(n), 3);
        }
        assert_eq!((attrs.iter().count(), attrs.dropped), (3, 2));
    }

    #[test]
    fn a_key_set_again_keeps_its_place_with_the_new_value() {
        let mut attrs = SpanAttrs::default();
        attrs.push("a", Plain::I64(1), 10);
        attrs.push("status", Plain::Str("pending"), 10);
        attrs.push("b", Plain::Bool(true), 10);
        attrs.set("status", Plain::I64(200), 10);
        attrs.set("c", Plain::Str("new"), 10);
        let read: Vec<_> = attrs.iter().collect();
        assert_eq!(
            read,
            [
                ("a", Plain::I64(1)),
                ("status", Plain::I64(200)),
                ("b", Plain::Bool(true)),
                ("c", Plain::Str("new")),
            ]
        );
    }

    #[test]
    fn a_block_past_the_inline_room_moves_whole_to_the_heap() {
        let mut attrs = LogAttrs::default();
        let values: Vec<String> = (0..20).map(|n| format!("value number {n:02}")).collect();
        for (n, value) in values.iter().enumerate() {
            attrs.push(&format!("key{n:02}"), Plain::Str(value), usize::MAX);
        }
        assert!(attrs.as_bytes().len() > INLINE);
        let read: Vec<_> = attrs.iter().map(|(_, v)| v).collect();
        let expected: Vec<_> = values.iter().map(|v| Plain::Str(v)).collect();
        assert_eq!(read, expected);
        assert_eq!(decoded(&attrs).len(), 20);
    }
}
