//! Segment file format: naming, the segment header, the record framing, and a
//! scanner that classifies every way a segment can end.
//!
//! Layout of one segment file (all integers little-endian):
//!
//! ```text
//! offset 0   b"OWLSPOOL"            8 bytes  magic
//! offset 8   format version u32     4 bytes  (FORMAT_VERSION, currently 1)
//! offset 12  reserved u32 = 0       4 bytes
//! offset 16  record*                 records back to back, no padding
//!
//! record:    payload length u32  |  crc32 (IEEE, crc32fast) of payload u32  |  payload
//!            payload = prost-encoded owlet.v1.Batch, 1..=MAX_PAYLOAD bytes
//! ```
//!
//! Invariants the scanner checks on every record: the CRC, that the payload
//! decodes as a `Batch`, that the batch is non-empty with strictly increasing
//! event `seq`s matching its `first_seq`/`last_seq`, and that it starts after
//! everything before it (and at or after the number in the file name).
//!
//! The scanner never panics and never trusts a length field beyond the bytes
//! it actually has.

use owlet_proto::v1::Batch;
use prost::Message;

/// Magic at the start of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"OWLSPOOL";
/// On-disk format version written by this build (segments and the ack file).
pub const FORMAT_VERSION: u32 = 1;
/// Bytes of the segment header.
pub const SEGMENT_HEADER_LEN: u64 = 16;
/// Bytes of the per-record header (length + CRC).
pub const RECORD_HEADER_LEN: u64 = 8;
/// Largest payload a record may carry. Larger length fields are corruption.
pub const MAX_PAYLOAD: u32 = 64 << 20;

/// File name of the segment whose first record starts at `first_seq`:
/// 20 zero-padded digits (every u64 fits) and `.seg`, so names sort by number.
pub fn file_name(first_seq: u64) -> String {
    format!("{first_seq:020}.seg")
}

/// Inverse of [`file_name`]; `None` for anything that is not a segment name.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The 16 header bytes every segment starts with.
pub fn header() -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h
}

/// What the first bytes of a segment file say.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderCheck {
    Valid,
    /// Fewer than 16 bytes: a segment whose creation was interrupted.
    Short,
    BadMagic,
    /// A version this build does not know (a newer owlet wrote it).
    Version(u32),
}

pub fn check_header(data: &[u8]) -> HeaderCheck {
    if data.len() < SEGMENT_HEADER_LEN as usize {
        return HeaderCheck::Short;
    }
    if data[..8] != SEGMENT_MAGIC {
        return HeaderCheck::BadMagic;
    }
    let version = u32::from_le_bytes([data[8], data[9], data[10], data[11]]);
    if version != FORMAT_VERSION {
        return HeaderCheck::Version(version);
    }
    HeaderCheck::Valid
}

/// Frames one payload as a record (header + payload).
pub fn encode_record(payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(payload.len() + RECORD_HEADER_LEN as usize);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Verifies and decodes one record's payload read back from disk.
pub fn decode_payload(payload: &[u8], crc: u32) -> Result<Batch, String> {
    if crc32fast::hash(payload) != crc {
        return Err("checksum mismatch".into());
    }
    Batch::decode(payload).map_err(|e| format!("payload does not decode as a Batch: {e}"))
}

/// Checks the sequence invariants of a stored batch. `min_first_seq` is the
/// lowest first_seq it may have (one past everything before it).
pub fn validate_batch(batch: &Batch, min_first_seq: u64) -> Result<(), String> {
    let (Some(first), Some(last)) = (batch.events.first(), batch.events.last()) else {
        return Err("batch holds no events".into());
    };
    if batch.events.len() > owlet_proto::MAX_BATCH_EVENTS {
        return Err(format!("batch holds {} events", batch.events.len()));
    }
    if first.seq != batch.first_seq || last.seq != batch.last_seq {
        return Err("batch first_seq/last_seq do not match its events".into());
    }
    if batch.events.windows(2).any(|w| w[1].seq <= w[0].seq) {
        return Err("event seqs are not strictly increasing".into());
    }
    if batch.first_seq < min_first_seq {
        return Err(format!(
            "batch starts at seq {} but seq {} or later was expected",
            batch.first_seq, min_first_seq
        ));
    }
    Ok(())
}

/// How a scan of a segment body stopped before the end of the file.
#[derive(Debug, PartialEq, Eq)]
pub enum BadRecord {
    // Shapes an interrupted append can leave behind (the record was the last
    // thing written, so it reaches the end of the file):
    /// Fewer than 8 header bytes left.
    ShortHeader,
    /// The length field points past the end of the file.
    PastEof,
    /// CRC mismatch on a record that ends exactly at the end of the file.
    BadCrcAtEof,
    /// Everything from here to the end is zero bytes (the file was extended
    /// but the data never reached the disk).
    ZeroTail,
    // Shapes an interrupted append cannot explain:
    /// Length field of 0 or above MAX_PAYLOAD, with more non-zero bytes after.
    BadLength(u32),
    /// CRC mismatch with more data after the record.
    BadCrc,
    /// CRC fine but the payload is not a valid batch.
    BadBatch(String),
}

impl BadRecord {
    /// True when an append interrupted by a crash explains this shape.
    pub fn is_torn_write(&self) -> bool {
        matches!(
            self,
            BadRecord::ShortHeader
                | BadRecord::PastEof
                | BadRecord::BadCrcAtEof
                | BadRecord::ZeroTail
        )
    }

    pub fn describe(&self) -> String {
        match self {
            BadRecord::ShortHeader => "truncated record header".into(),
            BadRecord::PastEof => "record length runs past the end of the file".into(),
            BadRecord::BadCrcAtEof => "checksum mismatch on the final record".into(),
            BadRecord::ZeroTail => "zero-filled tail".into(),
            BadRecord::BadLength(n) => format!("impossible record length {n}"),
            BadRecord::BadCrc => "checksum mismatch".into(),
            BadRecord::BadBatch(why) => why.clone(),
        }
    }
}

/// One good record found by [`scan`].
pub struct Scanned {
    pub offset: u64,
    pub payload_len: u32,
    pub batch: Batch,
}

/// Walks the records of a whole segment file held in memory (header already
/// checked). Returns the good records in order, and where and why it stopped
/// if it did not reach the end cleanly.
pub fn scan(data: &[u8], mut min_first_seq: u64) -> (Vec<Scanned>, Option<(u64, BadRecord)>) {
    let mut out = Vec::new();
    let mut pos = SEGMENT_HEADER_LEN as usize;
    let end = data.len();
    while pos < end {
        let offset = pos as u64;
        let rest = &data[pos..];
        if rest.iter().all(|b| *b == 0) {
            return (out, Some((offset, BadRecord::ZeroTail)));
        }
        if rest.len() < RECORD_HEADER_LEN as usize {
            return (out, Some((offset, BadRecord::ShortHeader)));
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len == 0 || len > MAX_PAYLOAD {
            return (out, Some((offset, BadRecord::BadLength(len))));
        }
        let body_end = RECORD_HEADER_LEN as usize + len as usize;
        if body_end > rest.len() {
            return (out, Some((offset, BadRecord::PastEof)));
        }
        let payload = &rest[RECORD_HEADER_LEN as usize..body_end];
        if crc32fast::hash(payload) != crc {
            let bad = if body_end == rest.len() {
                BadRecord::BadCrcAtEof
            } else {
                BadRecord::BadCrc
            };
            return (out, Some((offset, bad)));
        }
        let batch = match Batch::decode(payload) {
            Ok(b) => b,
            Err(e) => {
                return (
                    out,
                    Some((
                        offset,
                        BadRecord::BadBatch(format!("payload does not decode: {e}")),
                    )),
                );
            }
        };
        if let Err(why) = validate_batch(&batch, min_first_seq) {
            return (out, Some((offset, BadRecord::BadBatch(why))));
        }
        min_first_seq = batch.last_seq.saturating_add(1);
        out.push(Scanned {
            offset,
            payload_len: len,
            batch,
        });
        pos += body_end;
    }
    (out, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use owlet_proto::v1::Event;

    fn batch(first: u64, n: u64) -> Batch {
        Batch {
            first_seq: first,
            last_seq: first + n - 1,
            events: (first..first + n)
                .map(|seq| Event {
                    seq,
                    ..Default::default()
                })
                .collect(),
        }
    }

    fn segment(batches: &[Batch]) -> Vec<u8> {
        let mut data = header().to_vec();
        for b in batches {
            data.extend(encode_record(&b.encode_to_vec()));
        }
        data
    }

    #[test]
    fn names_round_trip_and_sort() {
        assert_eq!(file_name(123), "00000000000000000123.seg");
        assert_eq!(parse_file_name(&file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_file_name("123.seg"), None);
        assert_eq!(parse_file_name("0000000000000000012x.seg"), None);
        assert!(file_name(9) < file_name(10));
    }

    #[test]
    fn header_checks() {
        assert_eq!(check_header(&header()), HeaderCheck::Valid);
        assert_eq!(check_header(&header()[..5]), HeaderCheck::Short);
        let mut h = header();
        h[0] = b'X';
        assert_eq!(check_header(&h), HeaderCheck::BadMagic);
        let mut h = header();
        h[8] = 9;
        assert_eq!(check_header(&h), HeaderCheck::Version(9));
    }

    #[test]
    fn scan_classifies_every_ending() {
        let good = segment(&[batch(10, 3), batch(13, 2)]);
        let (recs, stop) = scan(&good, 10);
        assert_eq!(recs.len(), 2);
        assert!(stop.is_none());

        // Every truncation point inside the last record is a torn write.
        let first_end = segment(&[batch(10, 3)]).len();
        for cut in first_end + 1..good.len() {
            let (recs, stop) = scan(&good[..cut], 10);
            assert_eq!(recs.len(), 1, "cut at {cut}");
            let (off, bad) = stop.unwrap();
            assert_eq!(off, first_end as u64);
            assert!(bad.is_torn_write(), "cut at {cut}: {bad:?}");
        }

        // A flipped payload byte in the last record: torn-like; in the first: corrupt.
        let mut last_flip = good.clone();
        *last_flip.last_mut().unwrap() ^= 0xff;
        assert_eq!(scan(&last_flip, 10).1.unwrap().1, BadRecord::BadCrcAtEof);
        let mut first_flip = good.clone();
        first_flip[SEGMENT_HEADER_LEN as usize + 9] ^= 0xff;
        let (recs, stop) = scan(&first_flip, 10);
        assert!(recs.is_empty());
        assert_eq!(stop.unwrap().1, BadRecord::BadCrc);

        // Zero-filled extension after good records is torn; seqs going backwards are not.
        let mut zeros = good.clone();
        zeros.extend([0u8; 100]);
        assert_eq!(scan(&zeros, 10).1.unwrap().1, BadRecord::ZeroTail);
        let backwards = segment(&[batch(10, 3), batch(11, 1)]);
        assert!(matches!(
            scan(&backwards, 10).1.unwrap().1,
            BadRecord::BadBatch(_)
        ));
        assert!(matches!(
            scan(&good, 11).1.unwrap().1,
            BadRecord::BadBatch(_)
        ));

        // Garbage never panics.
        let mut junk = header().to_vec();
        junk.extend((0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
        let _ = scan(&junk, 0);
    }
}
