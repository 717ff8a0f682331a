//! Byte sizes in a configuration file (`"64MiB"`, `"512 KiB"`, or a plain
//! number of bytes), read with a message that shows a right value when the
//! one written is wrong. Shared by every section that has a size (the
//! agent's own and the capability crates'), so one size reads and fails the
//! same way in every section.

use bytesize::ByteSize;

/// `#[serde(deserialize_with = "owlet_tomlconf::byte_size")]`: reads a byte
/// size; a wrong value is answered with an example of a right one.
pub fn byte_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
    use serde::de::{Error, Unexpected, Visitor};

    struct ByteSizeVisitor;

    impl Visitor<'_> for ByteSizeVisitor {
        type Value = ByteSize;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a byte size such as \"64MiB\" or \"512KiB\"")
        }

        fn visit_u64<E: Error>(self, v: u64) -> Result<ByteSize, E> {
            Ok(ByteSize(v))
        }

        fn visit_i64<E: Error>(self, v: i64) -> Result<ByteSize, E> {
            u64::try_from(v)
                .map(ByteSize)
                .map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
        }

        fn visit_str<E: Error>(self, v: &str) -> Result<ByteSize, E> {
            v.parse()
                .map_err(|_| E::invalid_value(Unexpected::Str(v), &self))
        }
    }

    d.deserialize_any(ByteSizeVisitor)
}
