//! Checksummed frames, the unit the directory backend stores one record in, and the one policy
//! that tells a torn tail (a crash in the middle of an append) from damage.
//!
//! Two layouts, chosen by the segment's format version:
//!
//! - **Version 1** (read only): payload length (u32 LE), CRC-32 of the payload (u32 LE),
//!   payload.
//! - **Version 2** (written): payload length (u32 LE), *settled* (u64 LE): a position such
//!   that every record before it was durable when this frame was written (an exclusive log
//!   writes the first position of the append, since it syncs each append before the next; a
//!   shared log, whose participants sync after releasing the lock, writes the durable mark it
//!   read), CRC-32 of the payload (u32 LE), CRC-32 of the 16 header bytes before it (u32 LE),
//!   payload. The header checksum means a damaged length field is seen as damage at once,
//!   never taken for a frame that runs past the end of the file.
//!
//! # The damage policy
//!
//! A frame that is not whole (bad checksum, bad header, or running past the end of the bytes)
//! at position `s` is **damage** ([`Bad::Damaged`]) if a valid frame follows it whose writer
//! knew `s` to be durable (its *settled* is past `s`): data that was durable has changed.
//! Otherwise it is a **torn tail**, the bytes of appends whose sync never completed (a crash
//! may persist their pages in any order), and it is cut. Version 1 frames carry no such
//! position, so any valid frame after a bad one is damage.

/// Bytes of a version 1 frame header.
const V1_HEADER: usize = 8;
/// Bytes of a version 2 frame header.
pub(crate) const V2_HEADER: usize = 20;
/// Frames longer than this are never written; a length above it is damage.
pub(crate) const MAX_PAYLOAD: usize = 1 << 30;

/// The frame layout of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Segment format version 1.
    V1,
    /// Segment format version 2.
    V2,
}

impl Layout {
    /// The layout of a segment format version, if this build reads it.
    pub(crate) fn of_version(version: u32) -> Option<Self> {
        match version {
            1 => Some(Layout::V1),
            2 => Some(Layout::V2),
            _ => None,
        }
    }
}

/// Appends `payload` as one version 2 frame: every record before position `settled` is
/// durable.
pub(crate) fn push_frame(out: &mut Vec<u8>, payload: &[u8], settled: u64) {
    let start = out.len();
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&settled.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    let header_crc = crc32fast::hash(&out[start..start + 16]);
    out.extend_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(payload);
}

/// One parsed frame.
#[derive(Debug, PartialEq, Eq)]
enum Parsed<'a> {
    /// A whole, intact frame: its payload, its settled position (version 2), its length.
    Whole {
        payload: &'a [u8],
        settled: Option<u64>,
        len: usize,
    },
    /// A header that checks out, but the payload runs past the end of the bytes: torn.
    Short,
    /// Anything else: a bad checksum, a bad length, too few bytes for a header.
    Bad,
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes(b[..4].try_into().expect("4 bytes"))
}

fn le_u64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
}

fn parse(buf: &[u8], layout: Layout) -> Parsed<'_> {
    let (header, len, settled, crc) = match layout {
        Layout::V1 => {
            if buf.len() < V1_HEADER {
                return Parsed::Bad;
            }
            (V1_HEADER, le_u32(buf) as usize, None, le_u32(&buf[4..]))
        }
        Layout::V2 => {
            if buf.len() < V2_HEADER || crc32fast::hash(&buf[..16]) != le_u32(&buf[16..]) {
                return Parsed::Bad;
            }
            let first = le_u64(&buf[4..]);
            (
                V2_HEADER,
                le_u32(buf) as usize,
                Some(first),
                le_u32(&buf[12..]),
            )
        }
    };
    // Records are never empty; zeros (a file extended by a crash) must not read as frames.
    if len == 0 || len > MAX_PAYLOAD {
        return Parsed::Bad;
    }
    let Some(payload) = buf.get(header..header + len) else {
        return match layout {
            Layout::V2 => Parsed::Short,
            // A version 1 length is unchecked: running past the end may be damage.
            Layout::V1 => Parsed::Bad,
        };
    };
    if crc32fast::hash(payload) != crc {
        return Parsed::Bad;
    }
    Parsed::Whole {
        payload,
        settled,
        len: header + len,
    }
}

/// Why a walk stopped early.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Bad {
    /// Damage at this byte offset (of the walked bytes), with what is wrong.
    Damaged {
        /// Offset of the bad frame.
        offset: usize,
        /// What is wrong.
        detail: String,
    },
}

/// Where a walk over a segment's frames ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Walked {
    /// The offset just after the last whole frame walked.
    pub(crate) end: usize,
    /// The position the next frame would have.
    pub(crate) next: u64,
    /// Bytes after `end` that form no whole frame: a torn tail to cut (only when the walk
    /// reached the end, not when `visit` stopped it).
    pub(crate) torn: bool,
}

/// Walks the frames of `buf` (which starts at a frame boundary; `first` is the position of its
/// first frame), calling `visit(position, offset after the frame, payload)` for each whole one
/// until it returns `Ok(false)`. Applies the damage policy to the first frame that is not
/// whole.
///
/// # Errors
///
/// `Err(Ok(Bad))` for damage; `Err(Err(e))` for what `visit` returned.
pub(crate) fn walk<E>(
    buf: &[u8],
    layout: Layout,
    first: u64,
    mut visit: impl FnMut(u64, usize, &[u8]) -> Result<bool, E>,
) -> Result<Walked, Result<Bad, E>> {
    let mut at = 0;
    let mut next = first;
    while at < buf.len() {
        match parse(&buf[at..], layout) {
            Parsed::Whole {
                payload,
                settled,
                len,
            } => {
                if settled.is_some_and(|b| b > next) {
                    return Err(Ok(Bad::Damaged {
                        offset: at,
                        detail: format!(
                            "the frame of record {next} says record {} was durable before it",
                            settled.unwrap_or_default()
                        ),
                    }));
                }
                at += len;
                next += 1;
                if !visit(next - 1, at, payload).map_err(Err)? {
                    return Ok(Walked {
                        end: at,
                        next,
                        torn: false,
                    });
                }
            }
            Parsed::Short => break,
            Parsed::Bad => {
                if let Some(later) = later_append_after(buf, at, layout, next) {
                    return Err(Ok(Bad::Damaged {
                        offset: at,
                        detail: format!(
                            "checksum mismatch at record {next}, with a valid record written after \
                             it was durable at offset {later}"
                        ),
                    }));
                }
                break;
            }
        }
    }
    Ok(Walked {
        end: at,
        next,
        torn: at < buf.len(),
    })
}

/// The offset of a valid frame after the bad one at `bad` whose writer knew record `position`
/// to be durable, if there is one.
fn later_append_after(buf: &[u8], bad: usize, layout: Layout, position: u64) -> Option<usize> {
    (bad + 1..buf.len()).find(|&at| match parse(&buf[at..], layout) {
        Parsed::Whole { settled, .. } => settled.is_none_or(|b| b > position),
        Parsed::Short | Parsed::Bad => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(records: &[(&[u8], u64)]) -> Vec<u8> {
        let mut out = Vec::new();
        for &(payload, batch) in records {
            push_frame(&mut out, payload, batch);
        }
        out
    }

    fn collect(buf: &[u8], layout: Layout) -> Result<(Vec<Vec<u8>>, Walked), Bad> {
        let mut seen = Vec::new();
        let walked = walk::<()>(buf, layout, 1, |_, _, p| {
            seen.push(p.to_vec());
            Ok(true)
        })
        .map_err(|e| e.unwrap())?;
        Ok((seen, walked))
    }

    #[test]
    fn a_cut_anywhere_in_the_last_frame_is_torn() {
        let buf = frames(&[(b"one", 1), (b"two", 2)]);
        let one = V2_HEADER + 3;
        for cut in one + 1..buf.len() {
            let (seen, walked) = collect(&buf[..cut], Layout::V2).unwrap();
            assert_eq!(seen, [b"one".to_vec()], "cut at {cut}");
            assert_eq!((walked.end, walked.next, walked.torn), (one, 2, true));
        }
    }

    #[test]
    fn any_flipped_bit_of_an_earlier_append_is_damage() {
        let buf = frames(&[(b"one", 1), (b"two", 2)]);
        for byte in 0..V2_HEADER + 3 {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[byte] ^= 1 << bit;
                let err = collect(&bad, Layout::V2).unwrap_err();
                assert!(
                    matches!(err, Bad::Damaged { offset: 0, .. }),
                    "{byte}/{bit}"
                );
            }
        }
    }

    #[test]
    fn a_bad_frame_followed_only_by_its_own_append_is_torn() {
        // One append of three records; the middle one never reached the disk.
        let mut buf = frames(&[(b"one", 1), (b"two", 1), (b"three", 1)]);
        let second = V2_HEADER + 3;
        buf[second + V2_HEADER] ^= 0xff;
        let (seen, walked) = collect(&buf, Layout::V2).unwrap();
        assert_eq!(seen, [b"one".to_vec()]);
        assert_eq!((walked.end, walked.torn), (second, true));
    }

    #[test]
    fn version_1_frames_are_still_read() {
        let mut buf = Vec::new();
        for payload in [&b"one"[..], b"two"] {
            buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            buf.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
            buf.extend_from_slice(payload);
        }
        let (seen, _) = collect(&buf, Layout::V1).unwrap();
        assert_eq!(seen, [b"one".to_vec(), b"two".to_vec()]);
        // A damaged length that runs past the end is damage when a valid frame follows.
        let mut bad = buf.clone();
        bad[2] ^= 0x04;
        assert!(collect(&bad, Layout::V1).is_err());
        // The same in the last frame is a torn tail.
        let mut last = buf;
        last[11 + 2] ^= 0x04;
        assert_eq!(collect(&last, Layout::V1).unwrap().0.len(), 1);
    }

    #[test]
    fn zeros_are_not_frames() {
        let (seen, walked) = collect(&[0; 64], Layout::V1).unwrap();
        assert!(seen.is_empty() && walked.torn);
        let (seen, walked) = collect(&[0; 64], Layout::V2).unwrap();
        assert!(seen.is_empty() && walked.torn);
    }
}
