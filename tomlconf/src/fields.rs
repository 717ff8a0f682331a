//! A survey of a file against its target type: which keys each table may
//! hold and which keys of the file no table accepts. The file is read into
//! the type once through a deserializer that notes, for every table read as
//! a struct, the field names (aliases included) serde's derive passes to
//! `deserialize_struct`, and hides the keys outside that list from the
//! struct. So:
//! * the suggestions for an unknown key come from the type itself and cannot
//!   drift from the schema (no hand-kept key lists);
//! * an unknown key never stops the survey, not even in a table whose type
//!   says `deny_unknown_fields`: every unknown key is found in one pass.
//!
//! The survey's value and errors are discarded. A type error stops it (serde
//! cannot go on past a value it could not read); the real load stops at the
//! same point, so no unknown key goes unreported that the load would reach.

use std::cell::RefCell;
use std::collections::HashMap;

use serde::de::value::StringDeserializer;
use serde::de::{
    DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use serde::forward_to_deserialize_any;
use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue, Error, ValueDeserializer};

/// What a survey found.
#[derive(Debug, Default)]
pub(crate) struct Survey {
    /// Field names by dotted table path (`""` is the root, `probe.check[2]`
    /// an entry).
    pub lists: HashMap<String, &'static [&'static str]>,
    /// Unknown keys as (dotted table path, key), in file order per table.
    pub unknown: Vec<(String, String)>,
}

/// Surveys the parsed file `root` against `T`. It reads `root` in place
/// (scalars are copied, tables are not): with a check list of thousands of
/// entries a second parse or a copy of the table would double the loader's
/// peak memory.
pub(crate) fn survey<T: DeserializeOwned>(root: &Spanned<DeTable<'_>>) -> Survey {
    let survey = RefCell::new(Survey::default());
    // The value and any error are irrelevant: only the survey is wanted.
    let _ = T::deserialize(Recorder {
        value: Node::Root(root),
        path: String::new(),
        survey: &survey,
    });
    survey.into_inner()
}

/// What a [`Recorder`] reads: the document's root table, or a value in it.
#[derive(Clone, Copy)]
enum Node<'t, 'de> {
    Root(&'t Spanned<DeTable<'de>>),
    Value(&'t Spanned<DeValue<'de>>),
}

impl<'t, 'de> Node<'t, 'de> {
    fn table(self) -> Option<&'t DeTable<'de>> {
        match self {
            Node::Root(root) => Some(root.get_ref()),
            Node::Value(value) => match value.get_ref() {
                DeValue::Table(table) => Some(table),
                _ => None,
            },
        }
    }

    /// An owned copy, for toml's own deserializer (scalars, datetimes,
    /// spanned values, enums and type errors: small values).
    fn owned(self) -> Spanned<DeValue<'de>> {
        match self {
            Node::Root(root) => Spanned::new(root.span(), DeValue::Table(root.get_ref().clone())),
            Node::Value(value) => value.clone(),
        }
    }
}

struct Recorder<'a, 't, 'de> {
    value: Node<'t, 'de>,
    path: String,
    survey: &'a RefCell<Survey>,
}

impl<'de> serde::Deserializer<'de> for Recorder<'_, '_, 'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if let Some(table) = self.value.table() {
            return visitor.visit_map(TableAccess::new(
                table.iter().collect(),
                self.path,
                self.survey,
            ));
        }
        match self.value {
            Node::Value(value) => match value.get_ref() {
                DeValue::Array(array) => visitor.visit_seq(ArrayAccess {
                    items: array.iter().enumerate(),
                    path: self.path,
                    survey: self.survey,
                }),
                _ => ValueDeserializer::from(value.clone()).deserialize_any(visitor),
            },
            Node::Root(_) => ValueDeserializer::from(self.value.owned()).deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let table = match self.value.table() {
            // serde's private marker structs (toml datetimes, spanned
            // values) are not tables of the schema.
            Some(table) if !name.starts_with("$__") => table,
            // toml's own handling (datetimes, spanned values, type errors).
            _ => {
                return ValueDeserializer::from(self.value.owned())
                    .deserialize_struct(name, fields, visitor);
            }
        };
        let (known, unknown): (Vec<_>, Vec<_>) = table
            .iter()
            .partition(|(key, _)| fields.contains(&key.get_ref().as_ref()));
        {
            let mut survey = self.survey.borrow_mut();
            survey.lists.insert(self.path.clone(), fields);
            survey.unknown.extend(
                unknown
                    .into_iter()
                    .map(|(key, _)| (self.path.clone(), key.get_ref().to_string())),
            );
        }
        visitor.visit_map(TableAccess::new(known, self.path, self.survey))
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
        ValueDeserializer::from(self.value.owned()).deserialize_enum(name, variants, visitor)
    }

    forward_to_deserialize_any! {
        bool u8 u16 u32 u64 u128 i8 i16 i32 i64 i128 f32 f64 char str string seq
        bytes byte_buf map unit ignored_any unit_struct tuple_struct tuple identifier
    }
}

struct TableAccess<'a, 't, 'de> {
    entries: std::vec::IntoIter<Entry<'t, 'de>>,
    pending: Option<(String, &'t Spanned<DeValue<'de>>)>,
    path: String,
    survey: &'a RefCell<Survey>,
}

type Entry<'t, 'de> = (&'t Spanned<DeString<'de>>, &'t Spanned<DeValue<'de>>);

impl<'a, 't, 'de> TableAccess<'a, 't, 'de> {
    fn new(entries: Vec<Entry<'t, 'de>>, path: String, survey: &'a RefCell<Survey>) -> Self {
        TableAccess {
            entries: entries.into_iter(),
            pending: None,
            path,
            survey,
        }
    }
}

impl<'de> MapAccess<'de> for TableAccess<'_, '_, 'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        let key = key.get_ref().to_string();
        self.pending = Some((key.clone(), value));
        let key: StringDeserializer<Error> = key.into_deserializer();
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Error> {
        let Some((key, value)) = self.pending.take() else {
            return Err(serde::de::Error::custom("value requested before its key"));
        };
        seed.deserialize(Recorder {
            value: Node::Value(value),
            path: crate::join_key(&self.path, &key),
            survey: self.survey,
        })
    }
}

struct ArrayAccess<'a, 't, 'de> {
    items: std::iter::Enumerate<std::slice::Iter<'t, Spanned<DeValue<'de>>>>,
    path: String,
    survey: &'a RefCell<Survey>,
}

impl<'de> SeqAccess<'de> for ArrayAccess<'_, '_, 'de> {
    type Error = Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Error> {
        let Some((index, value)) = self.items.next() else {
            return Ok(None);
        };
        seed.deserialize(Recorder {
            value: Node::Value(value),
            path: format!("{}[{index}]", self.path),
            survey: self.survey,
        })
        .map(Some)
    }
}
