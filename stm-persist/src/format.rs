//! The bytes of log records and snapshots, and the checksummed frames the directory backend
//! stores them in. `docs/persistence.md` describes the same layout in prose.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// The format version written into every record and snapshot.
pub const FORMAT_VERSION: u8 = 1;

/// Bytes before a record's name: version, kind, sequence number, name length.
const RECORD_HEADER: usize = 11;
const SNAPSHOT_MAGIC: &[u8; 8] = b"STMXSNAP";
/// Magic, version (u32), sequence (u64), payload length (u64), checksum (u32).
const SNAPSHOT_HEADER: usize = 8 + 4 + 8 + 8 + 4;

/// How a record was appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// [`Store::execute`](crate::Store::execute): ordered after every record before it.
    Command = 0,
    /// [`Store::record`](crate::Store::record): marked as commuting with every other command;
    /// appended and replayed like the others.
    Recorded = 1,
}

/// A decoded record header; the body is still serialized.
#[derive(Debug)]
pub(crate) struct RecordView<'a> {
    pub(crate) seq: u64,
    pub(crate) name: &'a str,
    pub(crate) body: &'a [u8],
}

/// Encodes a record with sequence number 0; [`set_seq`] fills it in at append time.
pub(crate) fn encode_record<C: Serialize>(kind: Kind, name: &str, cmd: &C) -> Result<Vec<u8>> {
    let name = name.as_bytes();
    let name_len = u8::try_from(name.len()).map_err(|_| Error::Serialize {
        what: format!("command `{}`", String::from_utf8_lossy(name)),
        detail: "its name is longer than 255 bytes".into(),
    })?;
    let mut out = Vec::with_capacity(RECORD_HEADER + name.len() + 16);
    out.push(FORMAT_VERSION);
    out.push(kind as u8);
    out.extend_from_slice(&0_u64.to_le_bytes());
    out.push(name_len);
    out.extend_from_slice(name);
    postcard::to_io(cmd, &mut out).map_err(|e| Error::Serialize {
        what: format!("command `{}`", String::from_utf8_lossy(name)),
        detail: e.to_string(),
    })?;
    Ok(out)
}

/// Writes `seq` into an encoded record.
pub(crate) fn set_seq(record: &mut [u8], seq: u64) {
    record[2..10].copy_from_slice(&seq.to_le_bytes());
}

/// Reads a record's header; `position` is where the log says it is.
pub(crate) fn view_record(bytes: &[u8], position: u64) -> Result<RecordView<'_>> {
    let corrupt = |detail: &str| Error::corrupt(format!("log record {position}"), detail);
    if bytes.len() < RECORD_HEADER {
        return Err(corrupt("shorter than a record header"));
    }
    if bytes[0] != FORMAT_VERSION {
        return Err(Error::UnsupportedFormat {
            what: format!("log record {position}"),
            found: u32::from(bytes[0]),
            supported: u32::from(FORMAT_VERSION),
        });
    }
    // Both kinds replay the same way; the kind tells a reader how the record was appended.
    if bytes[1] > Kind::Recorded as u8 {
        return Err(corrupt(&format!("unknown record kind {}", bytes[1])));
    }
    let seq = u64::from_le_bytes(bytes[2..10].try_into().expect("8 bytes"));
    if seq != position {
        return Err(corrupt(&format!("the record says it is number {seq}")));
    }
    let name_end = RECORD_HEADER + usize::from(bytes[10]);
    let name = bytes
        .get(RECORD_HEADER..name_end)
        .and_then(|n| std::str::from_utf8(n).ok())
        .ok_or_else(|| corrupt("bad command name"))?;
    Ok(RecordView {
        seq,
        name,
        body: &bytes[name_end..],
    })
}

/// Decodes a record's body as a command.
pub(crate) fn decode_body<C: DeserializeOwned>(view: &RecordView<'_>) -> Result<C> {
    postcard::from_bytes(view.body).map_err(|e| {
        Error::corrupt(
            format!("log record {}", view.seq),
            format!("cannot decode command `{}`: {e}", view.name),
        )
    })
}

/// Encodes a snapshot of the state after record `seq`.
pub(crate) fn encode_snapshot<I: Serialize>(seq: u64, image: &I) -> Result<Vec<u8>> {
    let mut out = vec![0; SNAPSHOT_HEADER];
    postcard::to_io(image, &mut out).map_err(|e| Error::Serialize {
        what: "snapshot".into(),
        detail: e.to_string(),
    })?;
    let payload_len = (out.len() - SNAPSHOT_HEADER) as u64;
    let crc = crc32fast::hash(&out[SNAPSHOT_HEADER..]);
    out[..8].copy_from_slice(SNAPSHOT_MAGIC);
    out[8..12].copy_from_slice(&u32::from(FORMAT_VERSION).to_le_bytes());
    out[12..20].copy_from_slice(&seq.to_le_bytes());
    out[20..28].copy_from_slice(&payload_len.to_le_bytes());
    out[28..32].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// The sequence number a snapshot covers, after checking its header and checksum.
pub(crate) fn check_snapshot(bytes: &[u8], source: &str) -> Result<u64> {
    let corrupt = |detail: &str| Error::corrupt(source.to_string(), detail);
    if bytes.len() < SNAPSHOT_HEADER || &bytes[..8] != SNAPSHOT_MAGIC {
        return Err(corrupt("not a stmx snapshot"));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != u32::from(FORMAT_VERSION) {
        return Err(Error::UnsupportedFormat {
            what: format!("snapshot {source}"),
            found: version,
            supported: u32::from(FORMAT_VERSION),
        });
    }
    let seq = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let len = u64::from_le_bytes(bytes[20..28].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(bytes[28..32].try_into().expect("4 bytes"));
    let payload = &bytes[SNAPSHOT_HEADER..];
    if payload.len() as u64 != len || crc32fast::hash(payload) != crc {
        return Err(corrupt("checksum mismatch"));
    }
    Ok(seq)
}

/// Decodes a checked snapshot: its sequence number and image.
pub(crate) fn decode_snapshot<I: DeserializeOwned>(bytes: &[u8], source: &str) -> Result<(u64, I)> {
    let seq = check_snapshot(bytes, source)?;
    let image = postcard::from_bytes(&bytes[SNAPSHOT_HEADER..])
        .map_err(|e| Error::corrupt(source.to_string(), format!("cannot decode the state: {e}")))?;
    Ok((seq, image))
}

/// The name of a command: the enum variant (or struct) name serde sees.
pub(crate) fn command_name<C: Serialize>(cmd: &C) -> Option<&'static str> {
    cmd.serialize(name::NameOf).ok()
}

/// A serde serializer that only captures the name of an enum variant or struct.
mod name {
    use serde::ser::{self, Serialize};
    use std::fmt;

    #[derive(Debug)]
    pub(super) struct NotNamed;

    impl fmt::Display for NotNamed {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("not an enum variant or a struct")
        }
    }

    impl std::error::Error for NotNamed {}

    impl ser::Error for NotNamed {
        fn custom<T: fmt::Display>(_: T) -> Self {
            NotNamed
        }
    }

    pub(super) struct NameOf;

    /// The compound serializer: ignores the fields, ends with the name.
    pub(super) struct Named(&'static str);

    macro_rules! not_named {
        ($($method:ident($($arg:ty),*);)*) => {
            $(fn $method(self, $(_: $arg),*) -> Result<Self::Ok, NotNamed> { Err(NotNamed) })*
        };
    }

    impl ser::Serializer for NameOf {
        type Ok = &'static str;
        type Error = NotNamed;
        type SerializeSeq = ser::Impossible<&'static str, NotNamed>;
        type SerializeTuple = ser::Impossible<&'static str, NotNamed>;
        type SerializeTupleStruct = Named;
        type SerializeTupleVariant = Named;
        type SerializeMap = ser::Impossible<&'static str, NotNamed>;
        type SerializeStruct = Named;
        type SerializeStructVariant = Named;

        not_named! {
            serialize_bool(bool); serialize_i8(i8); serialize_i16(i16); serialize_i32(i32);
            serialize_i64(i64); serialize_u8(u8); serialize_u16(u16); serialize_u32(u32);
            serialize_u64(u64); serialize_f32(f32); serialize_f64(f64); serialize_char(char);
            serialize_str(&str); serialize_bytes(&[u8]); serialize_none(); serialize_unit();
        }

        fn serialize_some<T: ?Sized + Serialize>(self, v: &T) -> Result<Self::Ok, NotNamed> {
            v.serialize(self)
        }
        fn serialize_unit_struct(self, name: &'static str) -> Result<Self::Ok, NotNamed> {
            Ok(name)
        }
        fn serialize_unit_variant(
            self,
            _: &'static str,
            _: u32,
            variant: &'static str,
        ) -> Result<Self::Ok, NotNamed> {
            Ok(variant)
        }
        fn serialize_newtype_struct<T: ?Sized + Serialize>(
            self,
            name: &'static str,
            _: &T,
        ) -> Result<Self::Ok, NotNamed> {
            Ok(name)
        }
        fn serialize_newtype_variant<T: ?Sized + Serialize>(
            self,
            _: &'static str,
            _: u32,
            variant: &'static str,
            _: &T,
        ) -> Result<Self::Ok, NotNamed> {
            Ok(variant)
        }
        fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, NotNamed> {
            Err(NotNamed)
        }
        fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, NotNamed> {
            Err(NotNamed)
        }
        fn serialize_tuple_struct(self, name: &'static str, _: usize) -> Result<Named, NotNamed> {
            Ok(Named(name))
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            variant: &'static str,
            _: usize,
        ) -> Result<Named, NotNamed> {
            Ok(Named(variant))
        }
        fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, NotNamed> {
            Err(NotNamed)
        }
        fn serialize_struct(self, name: &'static str, _: usize) -> Result<Named, NotNamed> {
            Ok(Named(name))
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            variant: &'static str,
            _: usize,
        ) -> Result<Named, NotNamed> {
            Ok(Named(variant))
        }
    }

    /// The four compound serializers of a named value: they ignore the fields and end with
    /// the name.
    macro_rules! ignore_fields {
        ($($trait:ident $(, $key:ty)?;)*) => {$(
            impl ser::$trait for Named {
                type Ok = &'static str;
                type Error = NotNamed;
                fn serialize_field<T: ?Sized + Serialize>(
                    &mut self,
                    $(_: $key,)?
                    _: &T,
                ) -> Result<(), NotNamed> {
                    Ok(())
                }
                fn end(self) -> Result<&'static str, NotNamed> {
                    Ok(self.0)
                }
            }
        )*};
    }

    ignore_fields! {
        SerializeTupleStruct;
        SerializeTupleVariant;
        SerializeStruct, &'static str;
        SerializeStructVariant, &'static str;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    enum Cmd {
        Reset,
        Add(u64),
        Move(u32, u32),
        Rename { to: String },
    }

    #[test]
    fn names_are_the_variants() {
        assert_eq!(command_name(&Cmd::Reset), Some("Reset"));
        assert_eq!(command_name(&Cmd::Add(1)), Some("Add"));
        assert_eq!(command_name(&Cmd::Move(1, 2)), Some("Move"));
        assert_eq!(
            command_name(&Cmd::Rename { to: "x".into() }),
            Some("Rename")
        );
        assert_eq!(command_name(&5_u32), None);
    }

    #[test]
    fn records_round_trip_and_check_their_position() {
        let mut rec = encode_record(Kind::Command, "Add", &Cmd::Add(300)).unwrap();
        set_seq(&mut rec, 42);
        let view = view_record(&rec, 42).unwrap();
        assert_eq!((view.seq, view.name), (42, "Add"));
        assert_eq!(decode_body::<Cmd>(&view).unwrap(), Cmd::Add(300));
        assert!(matches!(view_record(&rec, 41), Err(Error::Corrupt { .. })));
        rec[0] = 9;
        let err = view_record(&rec, 42).unwrap_err();
        assert!(
            matches!(err, Error::UnsupportedFormat { found: 9, .. }),
            "{err}"
        );
    }

    #[test]
    fn snapshots_round_trip_and_reject_damage_and_unknown_versions() {
        let snap = encode_snapshot(7, &vec![1_u32, 2, 3]).unwrap();
        assert_eq!(
            decode_snapshot::<Vec<u32>>(&snap, "s").unwrap(),
            (7, vec![1, 2, 3])
        );
        let mut bad = snap.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(matches!(
            check_snapshot(&bad, "s"),
            Err(Error::Corrupt { .. })
        ));
        let mut newer = snap;
        newer[8] = 2;
        let err = check_snapshot(&newer, "s").unwrap_err();
        assert!(
            matches!(
                err,
                Error::UnsupportedFormat {
                    found: 2,
                    supported: 1,
                    ..
                }
            ),
            "{err}"
        );
    }
}
