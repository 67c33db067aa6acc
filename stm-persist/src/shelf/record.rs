//! How an object is stored: `[format: u8][crc32 of the rest: u32 LE][tag length: u16 LE][tag]
//! [postcard body]`. The tag is the value's type name with module paths stripped, so that a
//! type may move between modules but a different type is refused.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::Error;

/// The version of the record format this build writes and reads; a record of another version
/// is refused with [`Error::Format`].
pub const FORMAT: u8 = 1;
const HEADER: usize = 1 + 4 + 2;

/// `type_name::<T>()` without module paths: `alloc::vec::Vec<app::Account>` is `Vec<Account>`.
pub(crate) fn type_tag<T: ?Sized>() -> String {
    let name = std::any::type_name::<T>();
    let mut out = String::with_capacity(name.len());
    let mut segment = 0;
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            out.truncate(segment);
        } else {
            out.push(c);
            if !(c.is_alphanumeric() || c == '_') {
                segment = out.len();
            }
        }
    }
    out
}

/// Serializes `value` as the record of object `pid`.
pub(crate) fn encode<T: Serialize>(pid: &str, value: &T) -> Result<Vec<u8>, Error> {
    let tag = type_tag::<T>();
    let tag_len = u16::try_from(tag.len()).map_err(|_| Error::Encode {
        pid: pid.into(),
        detail: format!("type name `{tag}` is longer than 65535 bytes"),
    })?;
    let mut out = vec![FORMAT, 0, 0, 0, 0];
    out.extend_from_slice(&tag_len.to_le_bytes());
    out.extend_from_slice(tag.as_bytes());
    let out = postcard::to_extend(value, out).map_err(|e| Error::Encode {
        pid: pid.into(),
        detail: e.to_string(),
    })?;
    Ok(seal(out))
}

fn seal(mut out: Vec<u8>) -> Vec<u8> {
    let crc = crc32fast::hash(&out[5..]);
    out[1..5].copy_from_slice(&crc.to_le_bytes());
    out
}

/// The type tag of a stored record, after checking its format and checksum.
pub(crate) fn tag<'a>(pid: &str, bytes: &'a [u8]) -> Result<&'a str, Error> {
    let format = |detail: String| Error::Format {
        pid: pid.into(),
        detail,
    };
    if bytes.len() < HEADER {
        return Err(format(format!(
            "record of {} bytes is too short",
            bytes.len()
        )));
    }
    if bytes[0] != FORMAT {
        return Err(format(format!(
            "record format {} is unknown to this build (it reads format {FORMAT})",
            bytes[0]
        )));
    }
    let crc = u32::from_le_bytes(bytes[1..5].try_into().expect("4 bytes"));
    if crc32fast::hash(&bytes[5..]) != crc {
        return Err(format("checksum mismatch".into()));
    }
    let len = usize::from(u16::from_le_bytes([bytes[5], bytes[6]]));
    let tag = bytes
        .get(HEADER..HEADER + len)
        .ok_or_else(|| format("type name runs past the record".into()))?;
    std::str::from_utf8(tag).map_err(|_| format("type name is not UTF-8".into()))
}

/// Decodes a stored record as a `T`: its tag must be `T`'s.
pub(crate) fn decode<T: DeserializeOwned>(pid: &str, bytes: &[u8]) -> Result<T, Error> {
    let stored = tag(pid, bytes)?;
    check_tag::<T>(pid, stored)?;
    let body = &bytes[HEADER + stored.len()..];
    postcard::from_bytes(body).map_err(|e| Error::Format {
        pid: pid.into(),
        detail: format!("body does not deserialize as `{stored}`: {e}"),
    })
}

/// `Ok` if `stored` is `T`'s tag.
pub(crate) fn check_tag<T: ?Sized>(pid: &str, stored: &str) -> Result<(), Error> {
    let expected = type_tag::<T>();
    if stored == expected {
        Ok(())
    } else {
        Err(Error::TypeMismatch {
            pid: pid.into(),
            stored: stored.into(),
            expected,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Account {
        owner: String,
        balance: i64,
    }

    #[test]
    fn tags_drop_module_paths() {
        assert_eq!(type_tag::<Vec<String>>(), "Vec<String>");
        assert_eq!(
            type_tag::<(i64, Option<Account>)>(),
            "(i64, Option<Account>)"
        );
        assert_eq!(
            type_tag::<std::collections::BTreeMap<u8, String>>(),
            "BTreeMap<u8, String>"
        );
    }

    #[test]
    fn records_round_trip_and_refuse_other_types_and_damage() {
        let a = Account {
            owner: "ann".into(),
            balance: 7,
        };
        let bytes = encode("a", &a).unwrap();
        assert_eq!(tag("a", &bytes).unwrap(), "Account");
        assert_eq!(decode::<Account>("a", &bytes).unwrap(), a);
        assert!(matches!(
            decode::<(String, i64)>("a", &bytes),
            Err(Error::TypeMismatch { .. })
        ));
        let mut bad = bytes.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(matches!(
            decode::<Account>("a", &bad),
            Err(Error::Format { .. })
        ));
        let mut newer = bytes;
        newer[0] = FORMAT + 1;
        let e = decode::<Account>("a", &newer).unwrap_err();
        assert!(e.to_string().contains("format 2 is unknown"), "{e}");
    }
}
