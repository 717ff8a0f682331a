//! SNMPv3 message framing (RFC 3412) with USM security parameters (RFC 3414).
//!
//! Encoding computes where `msgAuthenticationParameters` sits so the HMAC can
//! be written in place; decoding reports the same range of a received message
//! so its HMAC can be checked with those bytes zeroed.

use std::ops::Range;

use super::ber::{self, DecodeError, Pdu, Reader, TAG_OCTETS, TAG_SEQUENCE};

pub const FLAG_AUTH: u8 = 0x01;
pub const FLAG_PRIV: u8 = 0x02;
pub const FLAG_REPORTABLE: u8 = 0x04;
const USM_MODEL: i64 = 3;
pub const MAX_MSG_SIZE: i64 = 65507;

/// USM security parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsmParams {
    pub engine_id: Vec<u8>,
    pub boots: u32,
    pub time: u32,
    pub user: Vec<u8>,
    pub auth: Vec<u8>,
    pub privacy: Vec<u8>,
}

/// The payload of a v3 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    Plain(ScopedPdu),
    Encrypted(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopedPdu {
    pub context_engine_id: Vec<u8>,
    pub context_name: Vec<u8>,
    pub pdu: Pdu,
}

/// A decoded v3 message.
#[derive(Debug, Clone)]
pub struct Message {
    pub msg_id: i64,
    pub flags: u8,
    pub usm: UsmParams,
    /// Absolute range of the authentication parameters' content.
    pub auth_range: Range<usize>,
    pub data: Data,
}

pub fn encode_scoped(s: &ScopedPdu) -> Vec<u8> {
    let mut c = ber::octets(&s.context_engine_id);
    c.extend(ber::octets(&s.context_name));
    c.extend(ber::encode_pdu(&s.pdu));
    ber::tlv(TAG_SEQUENCE, &c)
}

/// Encodes a message; `usm.auth` is the placeholder (zeros of the MAC length
/// or empty). Returns the bytes and the absolute range of `usm.auth`.
pub fn encode(msg_id: i64, flags: u8, usm: &UsmParams, data: &Data) -> (Vec<u8>, Range<usize>) {
    let version = ber::int(3);
    let mut hd = ber::int(msg_id);
    hd.extend(ber::int(MAX_MSG_SIZE));
    hd.extend(ber::octets(&[flags]));
    hd.extend(ber::int(USM_MODEL));
    let header = ber::tlv(TAG_SEQUENCE, &hd);

    let mut usm_c = ber::octets(&usm.engine_id);
    usm_c.extend(ber::int(i64::from(usm.boots)));
    usm_c.extend(ber::int(i64::from(usm.time)));
    usm_c.extend(ber::octets(&usm.user));
    let auth_hdr = ber::header(TAG_OCTETS, usm.auth.len());
    let mut auth_off = usm_c.len() + auth_hdr.len();
    usm_c.extend(&auth_hdr);
    usm_c.extend(&usm.auth);
    usm_c.extend(ber::octets(&usm.privacy));
    let usm_seq_hdr = ber::header(TAG_SEQUENCE, usm_c.len());
    auth_off += usm_seq_hdr.len();
    let sec_hdr = ber::header(TAG_OCTETS, usm_seq_hdr.len() + usm_c.len());
    auth_off += sec_hdr.len();

    let data_bytes = match data {
        Data::Plain(s) => encode_scoped(s),
        Data::Encrypted(b) => ber::octets(b),
    };
    let body_len = version.len()
        + header.len()
        + sec_hdr.len()
        + usm_seq_hdr.len()
        + usm_c.len()
        + data_bytes.len();
    let outer = ber::header(TAG_SEQUENCE, body_len);
    auth_off += outer.len() + version.len() + header.len();

    let mut out = outer;
    out.extend(version);
    out.extend(header);
    out.extend(sec_hdr);
    out.extend(usm_seq_hdr);
    out.extend(usm_c);
    out.extend(data_bytes);
    (out, auth_off..auth_off + usm.auth.len())
}

fn u32_field(v: i64) -> Result<u32, DecodeError> {
    u32::try_from(v).map_err(|_| DecodeError("USM boots/time out of range"))
}

/// Decodes a v3 message (payload left encrypted when the priv flag is set).
pub fn decode_v3(buf: &[u8]) -> Result<Message, DecodeError> {
    let mut outer = Reader::new(buf);
    let mut r = outer
        .expect(TAG_SEQUENCE, "expected message SEQUENCE")?
        .reader();
    if r.integer()? != 3 {
        return Err(DecodeError("not an SNMPv3 message"));
    }
    let mut hd = r.expect(TAG_SEQUENCE, "expected v3 header")?.reader();
    let msg_id = hd.integer()?;
    let _max = hd.integer()?;
    let flags = *hd.octets()?.first().ok_or(DecodeError("empty msgFlags"))?;
    if hd.integer()? != USM_MODEL {
        return Err(DecodeError("security model is not USM"));
    }
    let sec = r.expect(TAG_OCTETS, "expected security parameters")?;
    let mut sr = sec.reader();
    let mut u = sr.expect(TAG_SEQUENCE, "expected USM parameters")?.reader();
    let engine_id = u.octets()?.to_vec();
    let boots = u32_field(u.integer()?)?;
    let time = u32_field(u.integer()?)?;
    let user = u.octets()?.to_vec();
    let auth_t = u.expect(TAG_OCTETS, "expected auth parameters")?;
    let privacy = u.octets()?.to_vec();
    let data_t = r.read()?;
    let data = match data_t.tag {
        TAG_OCTETS => Data::Encrypted(data_t.content.to_vec()),
        TAG_SEQUENCE => Data::Plain(decode_scoped_tlv(&data_t)?),
        _ => return Err(DecodeError("unexpected msgData")),
    };
    Ok(Message {
        msg_id,
        flags,
        usm: UsmParams {
            engine_id,
            boots,
            time,
            user,
            auth: auth_t.content.to_vec(),
            privacy,
        },
        auth_range: auth_t.offset..auth_t.offset + auth_t.content.len(),
        data,
    })
}

fn decode_scoped_tlv(t: &ber::Tlv<'_>) -> Result<ScopedPdu, DecodeError> {
    let mut r = t.reader();
    let context_engine_id = r.octets()?.to_vec();
    let context_name = r.octets()?.to_vec();
    let pdu = ber::decode_pdu(&r.read()?)?;
    Ok(ScopedPdu {
        context_engine_id,
        context_name,
        pdu,
    })
}

/// Decodes a decrypted scopedPDU (CFB leaves no padding; trailing bytes are
/// ignored as RFC 3826 allows).
pub fn decode_scoped(buf: &[u8]) -> Result<ScopedPdu, DecodeError> {
    let mut r = Reader::new(buf);
    let t = r.expect(
        TAG_SEQUENCE,
        "decrypted data is not a scopedPDU (wrong privacy key?)",
    )?;
    decode_scoped_tlv(&t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snmp::ber::{Oid, PDU_GET, Value};

    #[test]
    fn roundtrip_and_auth_range() {
        let usm = UsmParams {
            engine_id: vec![0x80, 0, 0x1f, 0x88, 1, 2, 3],
            boots: 5,
            time: 123456,
            user: b"owlet".to_vec(),
            auth: vec![0; 24],
            privacy: vec![],
        };
        let data = Data::Plain(ScopedPdu {
            context_engine_id: vec![1, 2],
            context_name: vec![],
            pdu: Pdu {
                tag: PDU_GET,
                request_id: 9,
                error_status: 0,
                error_index: 0,
                varbinds: vec![(Oid::parse("1.3.6.1.2.1.1.3.0").unwrap(), Value::Null)],
            },
        });
        let (mut bytes, range) = encode(42, FLAG_AUTH | FLAG_REPORTABLE, &usm, &data);
        bytes[range.clone()].copy_from_slice(&[0xAB; 24]);
        let m = decode_v3(&bytes).unwrap();
        assert_eq!(m.auth_range, range);
        assert_eq!(m.usm.auth, vec![0xAB; 24]);
        assert_eq!(m.msg_id, 42);
        assert_eq!(m.usm.user, b"owlet");
        assert_eq!(m.data, data);
    }
}
