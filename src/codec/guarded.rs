//! bincode decoding behind a guard (`Guarded`), for input that is not trusted.

use std::fmt;

use serde::Deserializer;
use serde::de::{self, DeserializeOwned, DeserializeSeed, Visitor};

use super::CodecError;

/// Deepest nesting a bincode value may have; deeper input is rejected
/// rather than risking the stack on recursive types.
const MAX_DEPTH: usize = 128;

/// Decodes a bincode 2 value (standard configuration) that fills `data`.
pub(super) fn decode_bincode<T: DeserializeOwned>(data: &[u8]) -> Result<T, CodecError> {
    // bincode's slice decoder, behind `Guarded`: see there for why.
    let budget = Budget::for_input(data.len());
    let seed = Guarded {
        inner: std::marker::PhantomData::<T>,
        depth: 0,
        budget: &budget,
    };
    let (value, used) =
        bincode::serde::seed_decode_from_slice(seed, data, bincode::config::standard())
            .map_err(|e| CodecError::Decode(e.to_string()))?;
    if used != data.len() {
        return Err(CodecError::Decode(format!(
            "{} trailing bytes after the bincode value",
            data.len() - used
        )));
    }
    Ok(value)
}

// Guarding bincode.
//
// bincode 2 decodes an owned `String` or byte buffer by allocating the length
// the input claims *before* checking that many bytes follow (only a const
// `with_limit` config would stop it, and our limit is a runtime setting), so
// eight bytes of garbage could request gigabytes. `Guarded` wraps bincode's
// deserializer at every level and turns those requests into their borrowed
// forms, which bincode bounds by the input. It also caps the nesting depth,
// so a recursive type fed crafted input cannot overflow the stack; caps the
// length hints sequences and maps pass on, which bincode takes from the
// input unchecked (a `Deserialize` that preallocates what the hint says, as
// serde's own docs show, would otherwise panic on capacity overflow or abort
// the process on a failed allocation); and bounds the number of elements
// decoded, since zero-sized elements (`()`, unit structs) consume no input:
// nine bytes claiming 2^60 of them would loop for ever.

/// Most elements a length hint passed on may claim (and never more than
/// the input has bytes).
const MAX_SIZE_HINT: usize = 4096;

/// Element visits allowed per input byte, plus [`ELEMENT_FLOOR`]. Each
/// element that is not zero-sized takes at least a byte; nesting through
/// tuples and structs adds a visit per level, so legitimate values stay far
/// below this.
const ELEMENTS_PER_BYTE: usize = 64;

/// Element visits allowed whatever the input's length.
const ELEMENT_FLOOR: usize = 1 << 16;

/// What one decode may still spend, shared by every level of it.
struct Budget {
    /// Sequence elements and map keys left to visit.
    elements: std::cell::Cell<usize>,
    /// The input's length in bytes.
    input_len: usize,
}

impl Budget {
    fn for_input(input_len: usize) -> Self {
        Budget {
            elements: std::cell::Cell::new(
                input_len
                    .saturating_mul(ELEMENTS_PER_BYTE)
                    .saturating_add(ELEMENT_FLOOR),
            ),
            input_len,
        }
    }

    /// Takes one element visit, or fails when none are left.
    fn spend<E: de::Error>(&self) -> Result<(), E> {
        let left = self.elements.get();
        if left == 0 {
            return Err(E::custom(format_args!(
                "more elements than a {}-byte value can hold",
                self.input_len
            )));
        }
        self.elements.set(left - 1);
        Ok(())
    }

    /// A length hint from the input, capped (see [`MAX_SIZE_HINT`]).
    fn cap_hint(&self, hint: Option<usize>) -> Option<usize> {
        hint.map(|h| h.min(self.input_len).min(MAX_SIZE_HINT))
    }
}

/// A bincode deserializer, seed, visitor or access wrapped at `depth`.
struct Guarded<'b, T> {
    inner: T,
    depth: usize,
    budget: &'b Budget,
}

impl<'b, T> Guarded<'b, T> {
    fn wrap<U>(&self, inner: U) -> Guarded<'b, U> {
        Guarded {
            inner,
            depth: self.depth,
            budget: self.budget,
        }
    }

    fn nested<U, E: de::Error>(&self, inner: U) -> Result<Guarded<'b, U>, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format_args!(
                "value nested deeper than {MAX_DEPTH} levels"
            )));
        }
        Ok(Guarded {
            inner,
            depth: self.depth + 1,
            budget: self.budget,
        })
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Guarded<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        let deserializer = self.wrap(deserializer);
        self.inner.deserialize(deserializer)
    }
}

macro_rules! guard_deserialize {
    ($($method:ident $(=> $target:ident)? ($($arg:ident: $ty:ty),*);)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
                let visitor = self.wrap(visitor);
                guard_deserialize!(@call self.inner, $method $(=> $target)?, ($($arg,)* visitor))
            }
        )*
    };
    (@call $inner:expr, $method:ident => $target:ident, ($($args:expr),*)) => {
        $inner.$target($($args),*)
    };
    (@call $inner:expr, $method:ident, ($($args:expr),*)) => {
        $inner.$method($($args),*)
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Guarded<'_, D> {
    type Error = D::Error;

    guard_deserialize! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        // The two redirections this wrapper exists for.
        deserialize_string => deserialize_str();
        deserialize_bytes();
        deserialize_byte_buf => deserialize_bytes();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

macro_rules! guard_visit {
    ($($method:ident($ty:ty);)*) => {
        $(
            fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
                self.inner.$method(v)
            }
        )*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Guarded<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    guard_visit! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_string(String);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        let deserializer = self.nested(deserializer)?;
        self.inner.visit_some(deserializer)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<V::Value, D::Error> {
        let deserializer = self.nested(deserializer)?;
        self.inner.visit_newtype_struct(deserializer)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        let seq = self.nested(seq)?;
        self.inner.visit_seq(seq)
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        let map = self.nested(map)?;
        self.inner.visit_map(map)
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        let data = self.nested(data)?;
        self.inner.visit_enum(data)
    }
}

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for Guarded<'_, A> {
    type Error = A::Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        self.budget.spend()?;
        let seed = self.wrap(seed);
        self.inner.next_element_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.budget.cap_hint(self.inner.size_hint())
    }
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Guarded<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.budget.spend()?;
        let seed = self.wrap(seed);
        self.inner.next_key_seed(seed)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        let seed = self.wrap(seed);
        self.inner.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.budget.cap_hint(self.inner.size_hint())
    }
}

impl<'b, 'de, A: de::EnumAccess<'de>> de::EnumAccess<'de> for Guarded<'b, A> {
    type Error = A::Error;
    type Variant = Guarded<'b, A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Guarded<'b, A::Variant>), A::Error> {
        let (depth, budget) = (self.depth, self.budget);
        let seed = self.wrap(seed);
        let (value, variant) = self.inner.variant_seed(seed)?;
        Ok((
            value,
            Guarded {
                inner: variant,
                depth,
                budget,
            },
        ))
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Guarded<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        let seed = self.wrap(seed);
        self.inner.newtype_variant_seed(seed)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        let visitor = self.wrap(visitor);
        self.inner.tuple_variant(len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let visitor = self.wrap(visitor);
        self.inner.struct_variant(fields, visitor)
    }
}
