//! Which keys each table of a file may hold, learnt from the target type
//! itself: the file is deserialized once more through a deserializer that
//! notes, for every table read as a struct, the field names serde's derive
//! passes to `deserialize_struct`. Those lists feed the "did you mean"
//! suggestion for an unknown key, so the suggestions can never drift from
//! the schema (no hand-kept key lists).
//!
//! Only run when a file has unknown keys. The pass reads the same text and
//! produces nothing but the lists: its value and its errors are discarded
//! (an error stops the walk, so tables after a type error get no list; the
//! unknown-key pass stops at the same point, so nothing is lost).

use std::cell::RefCell;
use std::collections::HashMap;

use serde::de::value::StringDeserializer;
use serde::de::{
    DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use serde::forward_to_deserialize_any;
use toml::Spanned;
use toml::de::{DeTable, DeValue, Error, ValueDeserializer};

/// Field names by dotted path (`""` is the root, `probe.check[2]` an entry).
pub(crate) type FieldLists = HashMap<String, &'static [&'static str]>;

/// The field names of every struct-typed table of `text` as `T` reads it.
pub(crate) fn field_lists<T: DeserializeOwned>(text: &str) -> FieldLists {
    let lists = RefCell::new(FieldLists::new());
    if let Ok(root) = DeTable::parse(text) {
        let span = root.span();
        let root = Spanned::new(span, DeValue::Table(root.into_inner()));
        // The value and any error are irrelevant: only the lists are wanted.
        let _ = T::deserialize(Recorder {
            value: root,
            path: String::new(),
            lists: &lists,
        });
    }
    lists.into_inner()
}

struct Recorder<'a, 'de> {
    value: Spanned<DeValue<'de>>,
    path: String,
    lists: &'a RefCell<FieldLists>,
}

impl<'de> serde::Deserializer<'de> for Recorder<'_, 'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let span = self.value.span();
        match self.value.into_inner() {
            DeValue::Table(table) => visitor.visit_map(TableAccess {
                entries: table.into_iter(),
                pending: None,
                path: self.path,
                lists: self.lists,
            }),
            DeValue::Array(array) => visitor.visit_seq(ArrayAccess {
                items: array.into_iter().enumerate(),
                path: self.path,
                lists: self.lists,
            }),
            scalar => ValueDeserializer::from(Spanned::new(span, scalar)).deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        if !matches!(self.value.get_ref(), DeValue::Table(_)) {
            // toml's own handling (datetimes, spanned values, type errors).
            return ValueDeserializer::from(self.value).deserialize_struct(name, fields, visitor);
        }
        self.lists.borrow_mut().insert(self.path.clone(), fields);
        self.deserialize_any(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        // A key present in the file is `Some`; the path does not change.
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        ValueDeserializer::from(self.value).deserialize_enum(name, variants, visitor)
    }

    forward_to_deserialize_any! {
        bool u8 u16 u32 u64 u128 i8 i16 i32 i64 i128 f32 f64 char str string seq
        bytes byte_buf map unit ignored_any unit_struct tuple_struct tuple identifier
    }
}

struct TableAccess<'a, 'de> {
    entries: toml::map::IntoIter<Spanned<toml::de::DeString<'de>>, Spanned<DeValue<'de>>>,
    pending: Option<(String, Spanned<DeValue<'de>>)>,
    path: String,
    lists: &'a RefCell<FieldLists>,
}

impl<'de> MapAccess<'de> for TableAccess<'_, 'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        let key = key.into_inner().into_owned();
        self.pending = Some((key.clone(), value));
        let key: StringDeserializer<Error> = key.into_deserializer();
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Error> {
        let Some((key, value)) = self.pending.take() else {
            return Err(serde::de::Error::custom("value requested before its key"));
        };
        let path = if self.path.is_empty() {
            key
        } else {
            format!("{}.{key}", self.path)
        };
        seed.deserialize(Recorder {
            value,
            path,
            lists: self.lists,
        })
    }
}

struct ArrayAccess<'a, 'de> {
    items: std::iter::Enumerate<std::vec::IntoIter<Spanned<DeValue<'de>>>>,
    path: String,
    lists: &'a RefCell<FieldLists>,
}

impl<'de> SeqAccess<'de> for ArrayAccess<'_, 'de> {
    type Error = Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Error> {
        let Some((index, value)) = self.items.next() else {
            return Ok(None);
        };
        seed.deserialize(Recorder {
            value,
            path: format!("{}[{index}]", self.path),
            lists: self.lists,
        })
        .map(Some)
    }
}
