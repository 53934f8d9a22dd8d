//! Where a key is in the matrix file: [`locate`] finds the line and column of the value at a
//! key path ([`Seg`]s), so plan checks can name the position of what they reject.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// One step of a key path: a mapping key or a list index.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// Renders a key path the way serde_yaml_ng does in its own errors: `axes.nic[0]`.
pub(crate) fn path_text(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) if out.is_empty() => out.push_str(k),
            Seg::Key(k) => {
                out.push('.');
                out.push_str(k)
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Marker message of the deliberate error [`locate`] raises; never shown to users.
const LOCATE_MARK: &str = "nicstorm: locate";

/// Source position (1-based line, column) of the value at `path`, or of the deepest
/// enclosing node that exists when the key is absent (a default was used).
///
/// serde does not expose positions to `Deserialize` impls, but serde_yaml_ng stamps
/// every error with the position of the node being read. So this walks the document
/// again and fails on purpose at the target node, then reads the stamp.
pub(crate) fn locate(text: &str, path: &[Seg]) -> Option<(usize, usize)> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    match (Locate { path }).deserialize(de) {
        Ok(()) => None,
        Err(e) => e.location().map(|l| (l.line(), l.column())),
    }
}

struct Locate<'p, 'a> {
    path: &'p [Seg<'a>],
}

impl<'de> DeserializeSeed<'de> for Locate<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        // Even at the target we must enter the node: serde_yaml_ng only stamps the
        // position when the error leaves one of its deserialize_* calls.
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Locate<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if let Some((Seg::Key(want), rest)) = self.path.split_first() {
            while let Some(key) = map.next_key::<KeyText>()? {
                if key.0 == *want {
                    return map.next_value_seed(Locate { path: rest });
                }
                map.next_value::<IgnoredAny>()?;
            }
        }
        Err(de::Error::custom(LOCATE_MARK))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if let Some((Seg::Index(want), rest)) = self.path.split_first() {
            let mut i = 0;
            while i < *want {
                if seq.next_element::<IgnoredAny>()?.is_none() {
                    return Err(de::Error::custom(LOCATE_MARK));
                }
                i += 1;
            }
            if seq.next_element_seed(Locate { path: rest })?.is_some() {
                return Ok(());
            }
        }
        Err(de::Error::custom(LOCATE_MARK))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(LOCATE_MARK))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(LOCATE_MARK))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(LOCATE_MARK))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(LOCATE_MARK))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(LOCATE_MARK))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(LOCATE_MARK))
    }
}

/// A mapping key read as text whatever its YAML type, for [`locate`].
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(v.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<KeyText, E> {
                Ok(KeyText("null".into()))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_finds_block_and_flow_nodes() {
        let text = "a: 1\nb:\n  c: [x, y]\n  d:\n    - p\n    - q\ne: {f: 2}\n";
        let cases: &[(&[Seg], (usize, usize))] = &[
            (&[Seg::Key("a")], (1, 4)),
            (&[Seg::Key("b"), Seg::Key("c"), Seg::Index(1)], (3, 10)),
            (&[Seg::Key("b"), Seg::Key("d"), Seg::Index(1)], (6, 7)),
            (&[Seg::Key("e"), Seg::Key("f")], (7, 8)),
            // Absent key: the enclosing mapping.
            (&[Seg::Key("b"), Seg::Key("zz")], (3, 3)),
        ];
        for (path, want) in cases {
            assert_eq!(locate(text, path), Some(*want), "{}", path_text(path));
        }
    }
}
