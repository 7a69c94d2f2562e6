//! Byte strings in the JSON of replica messages: as text, readable when they are text.
//!
//! Keys and values are arbitrary bytes, but serde's default turns a `Vec<u8>` into a JSON
//! array of numbers (four bytes on the wire per byte of value) and refuses bytes as map keys.
//! These helpers, used with `#[serde(with = "...")]`, write a byte string as a JSON string in
//! which printable ASCII stands for itself and every other byte, and `%` itself, is `%XX`.
//! So `SET user:1 alice` travels as `"user:1"`, `"alice"`; binary values cost at most three
//! characters a byte; and decoding rejects anything the encoder could not have produced.

use serde::de::Error as _;
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serializer};

/// The text form of `bytes`.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// The bytes of a text form made by [`encode`].
pub fn decode(text: &str) -> Result<Vec<u8>, String> {
    let raw = text.as_bytes();
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'%' {
            let hex = |c: u8| HEX.iter().position(|&h| h == c);
            match (
                raw.get(i + 1).copied().and_then(hex),
                raw.get(i + 2).copied().and_then(hex),
            ) {
                (Some(hi), Some(lo)) => out.push((hi as u8) << 4 | lo as u8),
                _ => return Err(format!("bad escape at byte {i} of a byte string")),
            }
            i += 3;
        } else if (0x20..0x7f).contains(&b) {
            out.push(b);
            i += 1;
        } else {
            return Err(format!("unescaped byte {b:#04x} in a byte string"));
        }
    }
    Ok(out)
}

/// `#[serde(with = "crate::blob")]` on a `Vec<u8>`.
pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&encode(bytes))
}

/// See [`serialize`].
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let text = std::borrow::Cow::<str>::deserialize(d)?;
    decode(&text).map_err(D::Error::custom)
}

/// A byte string as a serde value, for containers of byte strings.
#[derive(Debug)]
struct Text<'a>(&'a [u8]);

impl serde::Serialize for Text<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize(self.0, s)
    }
}

/// An owned byte string read from its text form.
#[derive(Debug)]
struct Owned(Vec<u8>);

impl<'de> Deserialize<'de> for Owned {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Owned, D::Error> {
        deserialize(d).map(Owned)
    }
}

/// `#[serde(with = "crate::blob::vec")]` on a `Vec<Vec<u8>>`.
pub mod vec {
    use super::*;

    pub fn serialize<S: Serializer>(items: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(items.len()))?;
        for item in items {
            seq.serialize_element(&Text(item))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        let items = Vec::<Owned>::deserialize(d)?;
        Ok(items.into_iter().map(|o| o.0).collect())
    }
}

/// `#[serde(with = "crate::blob::pairs")]` on a `Vec<(Vec<u8>, Vec<u8>)>`.
pub mod pairs {
    use super::*;

    type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

    pub fn serialize<S: Serializer>(items: &[(Vec<u8>, Vec<u8>)], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(items.len()))?;
        for (k, v) in items {
            seq.serialize_element(&(Text(k), Text(v)))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Pairs, D::Error> {
        let items = Vec::<(Owned, Owned)>::deserialize(d)?;
        Ok(items.into_iter().map(|(k, v)| (k.0, v.0)).collect())
    }
}

/// `#[serde(with = "crate::blob::option")]` on an `Option<Vec<u8>>`.
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(item: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match item {
            Some(b) => s.serialize_some(&Text(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Ok(Option::<Owned>::deserialize(d)?.map(|o| o.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_stays_text_and_everything_else_is_escaped() {
        assert_eq!(encode(b"user:1 alice"), "user:1 alice");
        assert_eq!(encode(b"50%"), "50%25");
        assert_eq!(encode(&[0, b'\n', 0xff]), "%00%0A%FF");
        assert!(decode("%0").is_err());
        assert!(decode("%zz").is_err());
        assert!(
            decode("\u{e9}").is_err(),
            "only what encode makes is accepted"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_round_trip(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            proptest::prop_assert_eq!(decode(&encode(&bytes)).unwrap(), bytes);
        }
    }
}
