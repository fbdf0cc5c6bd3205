//! Deserialising sequences with a maximum length.
//!
//! serde's `Vec` grows with every element the input holds, and postcard encodes an empty string in
//! one byte that becomes a 24-byte `String`: a 16 MiB netmap of empty endpoints would take 400 MB
//! before any rule could look at it. Lists that come off the wire therefore go through [`vec`],
//! which refuses the sequence as soon as its declared or actual length passes the limit, and
//! reserves at most [`MAX_PREALLOC_BYTES`] up front whatever length it declares: 100,000 declared
//! netmap members would otherwise reserve 16 MiB before the first one fails to decode.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, Error as _, SeqAccess, Visitor};

/// The most a list reserves up front; beyond it the `Vec` doubles as elements arrive, which costs
/// a long list that is really there a few reallocations.
const MAX_PREALLOC_BYTES: usize = 4096;

/// A `Vec<T>` of at most `MAX` elements; use as
/// `#[serde(deserialize_with = "crate::bounded::vec::<_, _, MAX>")]`.
pub(crate) fn vec<'de, D, T, const MAX: usize>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    d.deserialize_seq(BoundedVec::<T, MAX>(PhantomData))
}

struct BoundedVec<T, const MAX: usize>(PhantomData<T>);

impl<'de, T: Deserialize<'de>, const MAX: usize> Visitor<'de> for BoundedVec<T, MAX> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a list of at most {MAX} elements")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        if let Some(len) = seq.size_hint().filter(|len| *len > MAX) {
            return Err(A::Error::invalid_length(len, &self));
        }
        let room = MAX_PREALLOC_BYTES / size_of::<T>().max(1);
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(room));
        while let Some(element) = seq.next_element()? {
            if out.len() == MAX {
                return Err(A::Error::invalid_length(MAX + 1, &self));
            }
            out.push(element);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Two {
        #[serde(deserialize_with = "super::vec::<_, _, 2>")]
        items: Vec<String>,
    }

    #[test]
    fn accepts_up_to_the_limit_and_refuses_more() {
        let two = Two {
            items: vec!["a".into(), "b".into()],
        };
        let bytes = postcard::to_stdvec(&two).unwrap();
        assert_eq!(postcard::from_bytes::<Two>(&bytes).unwrap(), two);
        let three = postcard::to_stdvec(&vec!["a", "b", "c"]).unwrap();
        let e = postcard::from_bytes::<Two>(&three).unwrap_err();
        assert_eq!(e, postcard::Error::SerdeDeCustom);
        // JSON gives no length up front: the count is checked as elements arrive.
        let e = serde_json::from_str::<Two>(r#"{"items": ["a", "b", "c"]}"#).unwrap_err();
        assert!(
            e.to_string()
                .contains("invalid length 3, expected a list of at most 2 elements"),
            "{e}"
        );
    }
}
