//! The on-disk framing of journal segments and the snapshot, and reading them back.
//!
//! A segment is the 8-byte magic `RCJRNL2\n` followed by frames, one per group commit,
//! each holding a [`RecordGroup`](super::record::RecordGroup): every record that one
//! write and one fsync made durable together. (Segments written before group frames start
//! with `RCJRNL1\n` and hold one record per frame; they are still read.) The snapshot
//! file is `RCSNAP1\n` followed by exactly one frame. A frame is
//!
//! ```text
//! u32 LE payload length | u32 LE CRC-32 of the payload | u32 LE CRC-32 of the 8 bytes before | payload
//! ```
//!
//! The header has its own checksum so a damaged length is never trusted: a frame whose
//! header fails its check is damage, never a torn write (a torn append leaves a true
//! prefix of the frame). Reading classifies how a segment ends:
//! - clean: every byte belongs to a valid frame;
//! - torn: the last frame is incomplete (a short header, or a payload that runs past the
//!   end), or is complete up to the end of the file but fails its payload checksum: what
//!   a crash during the last append leaves;
//! - damaged: anything else (a bad header, a bad payload with more bytes after it, a
//!   payload that does not decode).
//!
//! Why a group is one frame: a crash during a group commit can leave any mix of its
//! bytes on disk (a prefix, blocks of zeros where the file grew before its data was
//! written, later blocks without earlier ones), and none of that group was acknowledged,
//! since acknowledgement waits for the fsync. A later group is written only after this
//! one's fsync. So damage followed by no valid frame ([`valid_frame_from`] finds none) is
//! the unacknowledged tail of a crash, and damage followed by a valid frame is damage to
//! acknowledged records.

use prost::Message;

/// The first bytes of every journal segment written now: one frame per group commit.
pub const SEGMENT_MAGIC: &[u8; 8] = b"RCJRNL2\n";
/// The first bytes of a segment written before group frames: one frame per record.
pub const LEGACY_SEGMENT_MAGIC: &[u8; 8] = b"RCJRNL1\n";
/// The first bytes of the snapshot file.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"RCSNAP1\n";
/// Header bytes before each payload.
pub const HEADER: usize = 12;
/// No record is this large; a header claiming more is damage.
pub const MAX_PAYLOAD: usize = 256 * 1024 * 1024;

/// Appends `payload` as one frame to `out`.
pub fn frame(payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).expect("a record is far below 4 GiB");
    let mut head = [0u8; 8];
    head[..4].copy_from_slice(&len.to_le_bytes());
    head[4..].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(&crc32fast::hash(&head).to_le_bytes());
    out.extend_from_slice(payload);
}

/// How the bytes of a segment end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Every byte was a valid frame.
    Clean,
    /// The last frame, from `offset`, was torn by a crash.
    Torn {
        /// Where the torn frame starts.
        offset: u64,
        /// What was wrong with it.
        detail: String,
    },
    /// The bytes from `offset` cannot be trusted.
    Damaged {
        /// Where the damage starts.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

/// The offset of the first frame at or after `from` whose header and payload both pass
/// their checksums, if any: scanning byte by byte, since after damage nothing says where
/// the next frame would start.
pub fn valid_frame_from(bytes: &[u8], from: usize) -> Option<u64> {
    (from..bytes.len().saturating_sub(HEADER - 1)).find_map(|at| {
        let len = u32_at(bytes, at) as usize;
        let header_ok = crc32fast::hash(&bytes[at..at + 8]) == u32_at(bytes, at + 8);
        let body = at + HEADER;
        let fits = len <= MAX_PAYLOAD && body + len <= bytes.len();
        (header_ok && fits && crc32fast::hash(&bytes[body..body + len]) == u32_at(bytes, at + 4))
            .then_some(at as u64)
    })
}

/// Reads the frames of `bytes` from `start`, decoding each payload as `M`; returns the
/// messages with their offsets, and how the bytes end.
pub fn read_frames<M: Message + Default>(bytes: &[u8], start: usize) -> (Vec<(u64, M)>, End) {
    let mut out = Vec::new();
    let mut at = start;
    let end = loop {
        let offset = at as u64;
        let left = bytes.len() - at;
        if left == 0 {
            break End::Clean;
        }
        if left < HEADER {
            break End::Torn {
                offset,
                detail: format!("{left} bytes of a {HEADER}-byte header"),
            };
        }
        let len = u32_at(bytes, at) as usize;
        let crc = u32_at(bytes, at + 4);
        if crc32fast::hash(&bytes[at..at + 8]) != u32_at(bytes, at + 8) || len > MAX_PAYLOAD {
            break End::Damaged {
                offset,
                detail: "a record header fails its checksum".into(),
            };
        }
        let body = at + HEADER;
        if body + len > bytes.len() {
            break End::Torn {
                offset,
                detail: format!("{} of {len} payload bytes", bytes.len() - body),
            };
        }
        let payload = &bytes[body..body + len];
        if crc32fast::hash(payload) != crc {
            let detail = "a record fails its checksum".to_string();
            break if body + len == bytes.len() {
                End::Torn { offset, detail }
            } else {
                End::Damaged { offset, detail }
            };
        }
        match M::decode(payload) {
            Ok(m) => out.push((offset, m)),
            Err(e) => {
                break End::Damaged {
                    offset,
                    detail: format!("a record does not decode: {e}"),
                };
            }
        }
        at = body + len;
    };
    (out, end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::record::{Body, Record};

    fn records(n: u64) -> Vec<u8> {
        let mut bytes = SEGMENT_MAGIC.to_vec();
        for seq in 1..=n {
            let r = Record {
                seq,
                revision: seq * 10,
                body: Some(Body::Delete(format!("p{seq}"))),
            };
            frame(&r.encode_to_vec(), &mut bytes);
        }
        bytes
    }

    #[test]
    fn a_valid_frame_is_found_after_damage_and_never_in_zeros_or_a_torn_frame() {
        let whole = records(3);
        let second = records(1).len();
        let third = records(2).len();
        assert_eq!(
            valid_frame_from(&whole, SEGMENT_MAGIC.len()),
            Some(SEGMENT_MAGIC.len() as u64)
        );
        assert_eq!(valid_frame_from(&whole, second + 1), Some(third as u64));
        let mut zeros = records(2);
        zeros.extend_from_slice(&[0u8; 300]);
        assert_eq!(valid_frame_from(&zeros, third), None);
        for cut in third + 1..whole.len() {
            assert_eq!(valid_frame_from(&whole[..cut], third), None, "cut at {cut}");
        }
        let mut flipped = whole.clone();
        flipped[second + 2] ^= 0x10;
        assert_eq!(valid_frame_from(&flipped, second), Some(third as u64));
    }

    #[test]
    fn clean_segments_read_back_every_record() {
        let bytes = records(5);
        let (got, end) = read_frames::<Record>(&bytes, SEGMENT_MAGIC.len());
        assert_eq!(end, End::Clean);
        assert_eq!(
            got.iter().map(|(_, r)| r.seq).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
    }

    #[test]
    fn every_truncation_of_the_last_record_is_torn_and_keeps_the_rest() {
        let whole = records(3);
        let last_start = records(2).len();
        for cut in last_start..whole.len() {
            let (got, end) = read_frames::<Record>(&whole[..cut], SEGMENT_MAGIC.len());
            assert_eq!(got.len(), 2, "cut at {cut}");
            if cut == last_start {
                assert_eq!(end, End::Clean, "cut at {cut}");
            } else {
                assert!(
                    matches!(end, End::Torn { offset, .. } if offset == last_start as u64),
                    "cut at {cut}: {end:?}"
                );
            }
        }
    }

    #[test]
    fn a_flipped_byte_is_never_read_as_a_valid_record() {
        let whole = records(3);
        let last_start = records(2).len();
        for at in SEGMENT_MAGIC.len()..whole.len() {
            let mut bytes = whole.clone();
            bytes[at] ^= 0x40;
            let (got, end) = read_frames::<Record>(&bytes, SEGMENT_MAGIC.len());
            assert_ne!(end, End::Clean, "flip at {at} went unnoticed");
            // Only records before the flipped one are returned, unchanged.
            assert!(got.iter().all(|(_, r)| r.revision == r.seq * 10));
            match end {
                End::Torn { offset, .. } => assert_eq!(offset, last_start as u64, "flip at {at}"),
                End::Damaged { offset, .. } => assert!(offset as usize <= at, "flip at {at}"),
                End::Clean => unreachable!(),
            }
        }
    }
}
