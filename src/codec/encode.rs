//! Encoding: whether a value is one pymemcache stores natively (a string,
//! an integer, bytes), found by serializing it once into its wire form.

use std::fmt;

use serde::Serializer;
use serde::ser::{self, Impossible, Serialize};

use super::{Encoded, FLAG_BYTES, FLAG_INTEGER, FLAG_TEXT};

/// `value` in pymemcache's native form (UTF-8 text, ASCII decimal, raw
/// bytes) with its flags, or `None` when it is none of those.
pub(super) fn plain<T: Serialize + ?Sized>(value: &T) -> Option<Encoded> {
    let (data, flags) = match value.serialize(Probe).ok()? {
        Plain::Text(data) => (data, FLAG_TEXT),
        Plain::Integer(data) => (data, FLAG_INTEGER),
        Plain::Bytes(data) => (data, FLAG_BYTES),
    };
    Some(Encoded { data, flags })
}

/// A value pymemcache stores natively, already in its wire form.
enum Plain {
    Text(Vec<u8>),
    Integer(Vec<u8>),
    Bytes(Vec<u8>),
}

/// "Not a plain value": the probe gives up and the value goes to bincode.
#[derive(Debug)]
struct NotPlain;

impl fmt::Display for NotPlain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a plain string, integer or byte string")
    }
}

impl std::error::Error for NotPlain {}

impl ser::Error for NotPlain {
    fn custom<T: fmt::Display>(_msg: T) -> NotPlain {
        NotPlain
    }
}

/// Serializer methods that reject the value.
macro_rules! reject {
    ($($method:ident $(<$generic:ident>)? ($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        $(
            fn $method $(<$generic: ?Sized + Serialize>)? (self, $($arg: $ty),*) -> Result<$ret, NotPlain> {
                Err(NotPlain)
            }
        )*
    };
}

/// Rejecting methods shared by both probes.
macro_rules! reject_compound {
    () => {
        reject! {
            serialize_bool(_v: bool) -> Self::Ok;
            serialize_f32(_v: f32) -> Self::Ok;
            serialize_f64(_v: f64) -> Self::Ok;
            serialize_none() -> Self::Ok;
            serialize_some<T>(_v: &T) -> Self::Ok;
            serialize_unit() -> Self::Ok;
            serialize_unit_struct(_name: &'static str) -> Self::Ok;
            serialize_unit_variant(_name: &'static str, _index: u32, _variant: &'static str) -> Self::Ok;
            serialize_newtype_variant<T>(_name: &'static str, _index: u32, _variant: &'static str, _v: &T) -> Self::Ok;
            serialize_tuple_struct(_name: &'static str, _len: usize) -> Self::SerializeTupleStruct;
            serialize_tuple_variant(_name: &'static str, _index: u32, _variant: &'static str, _len: usize) -> Self::SerializeTupleVariant;
            serialize_map(_len: Option<usize>) -> Self::SerializeMap;
            serialize_struct(_name: &'static str, _len: usize) -> Self::SerializeStruct;
            serialize_struct_variant(_name: &'static str, _index: u32, _variant: &'static str, _len: usize) -> Self::SerializeStructVariant;
        }
    };
}

/// Serializer that recognises the top-level shapes pymemcache stores natively.
///
/// It copies out the wire bytes on success, so a plain value is serialized
/// once; anything else stops at its first call.
struct Probe;

macro_rules! probe_integer {
    ($($method:ident: $ty:ty),*) => {
        $(
            fn $method(self, v: $ty) -> Result<Plain, NotPlain> {
                Ok(Plain::Integer(v.to_string().into_bytes()))
            }
        )*
    };
}

impl Serializer for Probe {
    type Ok = Plain;
    type Error = NotPlain;
    type SerializeSeq = ByteSeq;
    type SerializeTuple = ByteSeq;
    type SerializeTupleStruct = Impossible<Plain, NotPlain>;
    type SerializeTupleVariant = Impossible<Plain, NotPlain>;
    type SerializeMap = Impossible<Plain, NotPlain>;
    type SerializeStruct = Impossible<Plain, NotPlain>;
    type SerializeStructVariant = Impossible<Plain, NotPlain>;

    probe_integer!(
        serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_i128: i128, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32,
        serialize_u64: u64, serialize_u128: u128
    );

    reject_compound!();

    fn serialize_char(self, v: char) -> Result<Plain, NotPlain> {
        Ok(Plain::Text(v.encode_utf8(&mut [0; 4]).as_bytes().to_vec()))
    }

    fn serialize_str(self, v: &str) -> Result<Plain, NotPlain> {
        Ok(Plain::Text(v.as_bytes().to_vec()))
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<Plain, NotPlain> {
        Ok(Plain::Bytes(v.to_vec()))
    }

    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<Plain, NotPlain> {
        // Transparent, as in every serde format: `struct Name(String)` is text.
        value.serialize(self)
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<ByteSeq, NotPlain> {
        Ok(ByteSeq(Vec::with_capacity(len.unwrap_or(0))))
    }

    fn serialize_tuple(self, len: usize) -> Result<ByteSeq, NotPlain> {
        Ok(ByteSeq(Vec::with_capacity(len)))
    }
}

/// A sequence (or array) collected as bytes while every element is a `u8`.
struct ByteSeq(Vec<u8>);

impl ser::SerializeSeq for ByteSeq {
    type Ok = Plain;
    type Error = NotPlain;

    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), NotPlain> {
        self.0.push(value.serialize(ByteProbe)?);
        Ok(())
    }

    fn end(self) -> Result<Plain, NotPlain> {
        Ok(Plain::Bytes(self.0))
    }
}

impl ser::SerializeTuple for ByteSeq {
    type Ok = Plain;
    type Error = NotPlain;

    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), NotPlain> {
        ser::SerializeSeq::serialize_element(self, value)
    }

    fn end(self) -> Result<Plain, NotPlain> {
        ser::SerializeSeq::end(self)
    }
}

/// Serializer accepting a single `u8` and nothing else.
struct ByteProbe;

impl Serializer for ByteProbe {
    type Ok = u8;
    type Error = NotPlain;
    type SerializeSeq = Impossible<u8, NotPlain>;
    type SerializeTuple = Impossible<u8, NotPlain>;
    type SerializeTupleStruct = Impossible<u8, NotPlain>;
    type SerializeTupleVariant = Impossible<u8, NotPlain>;
    type SerializeMap = Impossible<u8, NotPlain>;
    type SerializeStruct = Impossible<u8, NotPlain>;
    type SerializeStructVariant = Impossible<u8, NotPlain>;

    fn serialize_u8(self, v: u8) -> Result<u8, NotPlain> {
        Ok(v)
    }

    reject_compound!();

    reject! {
        serialize_i8(_v: i8) -> u8;
        serialize_i16(_v: i16) -> u8;
        serialize_i32(_v: i32) -> u8;
        serialize_i64(_v: i64) -> u8;
        serialize_i128(_v: i128) -> u8;
        serialize_u16(_v: u16) -> u8;
        serialize_u32(_v: u32) -> u8;
        serialize_u64(_v: u64) -> u8;
        serialize_u128(_v: u128) -> u8;
        serialize_char(_v: char) -> u8;
        serialize_str(_v: &str) -> u8;
        serialize_bytes(_v: &[u8]) -> u8;
        serialize_newtype_struct<T>(_name: &'static str, _v: &T) -> u8;
        serialize_seq(_len: Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(_len: usize) -> Self::SerializeTuple;
    }
}
