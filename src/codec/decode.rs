//! Decoding the formats pymemcache stores natively: UTF-8 text, ASCII
//! decimal integers, raw bytes.

use std::fmt;

use serde::Deserializer;
use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};

use super::{CodecError, FLAG_BYTES, FLAG_INTEGER, FLAG_LONG, FLAG_TEXT};

/// Decodes `data` stored (after inflating) with `format`, one of
/// [`FLAG_BYTES`], [`FLAG_TEXT`], [`FLAG_INTEGER`] and [`FLAG_LONG`].
pub(super) fn native<T: DeserializeOwned>(format: u32, data: &[u8]) -> Result<T, CodecError> {
    let decoded = match format {
        FLAG_TEXT => {
            let text = std::str::from_utf8(data)
                .map_err(|e| CodecError::Decode(format!("text value is not UTF-8: {e}")))?;
            T::deserialize(TextDeserializer(text))
        }
        FLAG_INTEGER | FLAG_LONG => T::deserialize(IntDeserializer::parse(data, "integer value")?),
        _ => {
            debug_assert_eq!(format, FLAG_BYTES);
            T::deserialize(BytesDeserializer(data))
        }
    };
    decoded.map_err(CodecError::from)
}

/// A deserialization failure: serde's message, or one of the codec's own
/// errors carried out unchanged.
#[derive(Debug)]
enum DeError {
    Message(String),
    Codec(CodecError),
}

impl From<DeError> for CodecError {
    fn from(e: DeError) -> CodecError {
        match e {
            DeError::Message(m) => CodecError::Decode(m),
            DeError::Codec(e) => e,
        }
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeError::Message(m) => f.write_str(m),
            DeError::Codec(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> DeError {
        DeError::Message(msg.to_string())
    }
}

/// A [`FLAG_TEXT`] value.
struct TextDeserializer<'de>(&'de str);

impl<'de> Deserializer<'de> for TextDeserializer<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_borrowed_str(self.0)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        // A unit variant named by the text.
        visitor.visit_enum(IntoDeserializer::<DeError>::into_deserializer(self.0))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

/// A parsed [`FLAG_INTEGER`] value.
struct IntDeserializer<'de> {
    digits: &'de str,
    /// `None` past 128 bits (Python's integers have no bound): an error
    /// for a numeric target, while a string target still gets the digits.
    value: Option<Integer>,
}

#[derive(Clone, Copy)]
enum Integer {
    Negative(i128),
    NonNegative(u128),
}

impl<'de> IntDeserializer<'de> {
    /// Parses ASCII decimal as Python's `int()` would for what pymemcache
    /// writes: optional surrounding whitespace, an optional sign, digits.
    /// `what` names the value in the error.
    fn parse(data: &'de [u8], what: &str) -> Result<IntDeserializer<'de>, CodecError> {
        let invalid = || {
            let shown = String::from_utf8_lossy(&data[..data.len().min(40)]).into_owned();
            CodecError::Decode(format!("{what} is not a decimal integer: {shown:?}"))
        };
        let digits = std::str::from_utf8(data)
            .map_err(|_| invalid())?
            .trim_ascii();
        let unsigned = digits.strip_prefix(['-', '+']).unwrap_or(digits);
        if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let value = if digits.starts_with('-') {
            digits.parse().ok().map(Integer::Negative)
        } else {
            unsigned.parse().ok().map(Integer::NonNegative)
        };
        Ok(IntDeserializer { digits, value })
    }
}

impl<'de> Deserializer<'de> for IntDeserializer<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        // serde's integer visitors range-check, so narrower targets work.
        match self.value {
            Some(Integer::NonNegative(v)) => match u64::try_from(v) {
                Ok(v) => visitor.visit_u64(v),
                Err(_) => visitor.visit_u128(v),
            },
            Some(Integer::Negative(v)) => match i64::try_from(v) {
                Ok(v) => visitor.visit_i64(v),
                Err(_) => visitor.visit_i128(v),
            },
            None => {
                let digits = self.digits;
                Err(DeError::Message(if digits.len() > 48 {
                    format!(
                        "integer {}... ({} digits) is out of range",
                        &digits[..40],
                        digits.trim_start_matches(['-', '+']).len()
                    )
                } else {
                    format!("integer {digits} is out of range")
                }))
            }
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_borrowed_str(self.digits)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_borrowed_str(self.digits)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

/// What `visitor` expects, as serde words it (`i64`, `a sequence`,
/// `struct User`).
fn expected<'de, V: Visitor<'de>>(visitor: &V) -> String {
    (visitor as &dyn de::Expected).to_string()
}

/// The error for untyped bytes read as something they cannot be told apart
/// from.
fn untyped(requested: String) -> DeError {
    DeError::Codec(CodecError::UntypedBytes { requested })
}

/// Deserializer methods that refuse, each with [`CodecError::UntypedBytes`]
/// naming what its visitor expects, prefixed by `$what`.
macro_rules! refuse_untyped {
    ($what:literal; $($method:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, DeError> {
                $(let _ = $arg;)*
                Err(untyped(format!(concat!($what, "{}"), expected(&visitor))))
            }
        )*
    };
}

/// Deserializer methods that read the bytes as an ASCII decimal integer.
macro_rules! untyped_integer {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
                IntDeserializer::parse(self.0, "untyped value (flags 0)")
                    .map_err(DeError::Codec)?
                    .$method(visitor)
            }
        )*
    };
}

/// A [`FLAG_BYTES`] value: bytes with no type recorded.
///
/// They read as what they can only be: bytes (a sequence of `u8`, a
/// `[u8; N]` of their length, a bytes type), a string when they are UTF-8,
/// or an integer when they are ASCII decimal (pymemcache's default
/// `Client` stores every value as `str(value)` with flags 0, and memcached's
/// counters are digits). Anything else would be a guess (`[1, 2]` read as a
/// `Vec<i64>` one number per byte): [`CodecError::UntypedBytes`].
struct BytesDeserializer<'de>(&'de [u8]);

impl<'de> BytesDeserializer<'de> {
    fn visit_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let mut seq = de::value::SeqDeserializer::new(self.0.iter().copied().map(ByteElement));
        let value = visitor.visit_seq(&mut seq)?;
        // Leftover bytes (a `[u8; 2]` from three bytes) are an error.
        seq.end()?;
        Ok(value)
    }

    fn text<V: Visitor<'de>>(&self, visitor: &V) -> Result<&'de str, DeError> {
        std::str::from_utf8(self.0)
            .map_err(|_| de::Error::invalid_value(de::Unexpected::Bytes(self.0), visitor))
    }
}

impl<'de> Deserializer<'de> for BytesDeserializer<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        // A self-describing target is told the truth: bytes.
        visitor.visit_borrowed_bytes(self.0)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_borrowed_bytes(self.0)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_byte_buf(self.0.to_vec())
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.visit_seq(visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.visit_seq(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let text = self.text(&visitor)?;
        visitor.visit_borrowed_str(text)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    untyped_integer! { deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
    deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
    deserialize_u128 }

    refuse_untyped! { "";
        deserialize_bool();
        deserialize_f32();
        deserialize_f64();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
    }
}

/// One byte of a [`FLAG_BYTES`] value read as a sequence: it reads as a
/// `u8` and nothing else, so a `Vec<u8>` or `[u8; N]` gets the bytes and a
/// sequence of anything else is refused rather than filled one number per
/// byte.
struct ByteElement(u8);

impl<'de> IntoDeserializer<'de, DeError> for ByteElement {
    type Deserializer = ByteElement;

    fn into_deserializer(self) -> ByteElement {
        self
    }
}

impl<'de> Deserializer<'de> for ByteElement {
    type Error = DeError;

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_u8(self.0)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        // A newtype around a `u8` reads as that byte.
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    refuse_untyped! { "a sequence of ";
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
    }
}
