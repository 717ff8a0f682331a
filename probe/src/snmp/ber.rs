//! The subset of BER (X.690) that SNMP v2c/v3 messages use, encoder and
//! decoder.
//!
//! Written for this crate rather than pulled in: the candidates were
//! `snmp2` (its v3 support needs OpenSSL, which breaks `cargo build` on a
//! fresh machine), `csnmp` (v2c only) and `rasn-snmp` (a whole ASN.1
//! framework for a dozen types, no USM crypto). SNMP uses single-byte tags and
//! definite lengths only, which keeps this short enough to audit and fuzz.
//!
//! Invariants: the decoder works on untrusted bytes. It never panics, never
//! indexes out of bounds, never allocates more than the input size, and
//! bounds nesting (SNMP messages are at most 5 levels deep). Positions it
//! returns are absolute offsets into the buffer it was given, so USM can
//! locate `msgAuthenticationParameters` to verify the HMAC.

use std::fmt;

/// Decode failure: the reply was malformed (classified as PROTOCOL).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed SNMP message: {0}")]
pub struct DecodeError(pub &'static str);

type Result<T> = std::result::Result<T, DecodeError>;

pub const TAG_INTEGER: u8 = 0x02;
pub const TAG_OCTETS: u8 = 0x04;
pub const TAG_NULL: u8 = 0x05;
pub const TAG_OID: u8 = 0x06;
pub const TAG_SEQUENCE: u8 = 0x30;
pub const TAG_IPADDRESS: u8 = 0x40;
pub const TAG_COUNTER32: u8 = 0x41;
pub const TAG_GAUGE32: u8 = 0x42;
pub const TAG_TIMETICKS: u8 = 0x43;
pub const TAG_OPAQUE: u8 = 0x44;
pub const TAG_COUNTER64: u8 = 0x46;
pub const TAG_NO_SUCH_OBJECT: u8 = 0x80;
pub const TAG_NO_SUCH_INSTANCE: u8 = 0x81;
pub const TAG_END_OF_MIB_VIEW: u8 = 0x82;

pub const PDU_GET: u8 = 0xA0;
pub const PDU_GETNEXT: u8 = 0xA1;
pub const PDU_RESPONSE: u8 = 0xA2;
pub const PDU_GETBULK: u8 = 0xA5;
pub const PDU_REPORT: u8 = 0xA8;

/// An object identifier.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Oid(Vec<u32>);

/// Why a text is not an OID in numeric dotted form; each message ends with
/// how to write one.
#[derive(Debug, thiserror::Error)]
pub enum OidError {
    #[error("empty OID; {OID_HINT}")]
    Empty,
    #[error("\"{0}\" is not a numeric OID; {OID_HINT}")]
    NotNumeric(String),
    #[error("\"{0}\" must have 2 to 128 arcs; {OID_HINT}")]
    ArcCount(String),
    #[error("\"{0}\" has an invalid first arc pair; {OID_HINT}")]
    FirstArcs(String),
}

const OID_HINT: &str =
    "write OIDs in numeric dotted form, e.g. \"1.3.6.1.2.1.1.3.0\" (MIB names are not resolved)";

impl Oid {
    /// Parses dotted numeric form (`1.3.6.1.2.1.1.3.0`, leading dot allowed).
    pub fn parse(s: &str) -> std::result::Result<Oid, OidError> {
        let t = s.trim();
        let t = t.strip_prefix('.').unwrap_or(t);
        if t.is_empty() {
            return Err(OidError::Empty);
        }
        let mut arcs = Vec::new();
        for part in t.split('.') {
            match part.parse::<u32>() {
                Ok(v) => arcs.push(v),
                Err(_) => return Err(OidError::NotNumeric(s.to_string())),
            }
        }
        if arcs.len() < 2 || arcs.len() > 128 {
            return Err(OidError::ArcCount(s.to_string()));
        }
        if arcs[0] > 2
            || (arcs[0] < 2 && arcs[1] >= 40)
            || (arcs[0] == 2 && arcs[1] > u32::MAX - 80)
        {
            return Err(OidError::FirstArcs(s.to_string()));
        }
        Ok(Oid(arcs))
    }

    pub fn from_arcs(arcs: &[u32]) -> Oid {
        Oid(arcs.to_vec())
    }

    pub fn arcs(&self) -> &[u32] {
        &self.0
    }

    pub fn starts_with(&self, prefix: &Oid) -> bool {
        self.0.starts_with(&prefix.0)
    }

    /// This OID with one more arc.
    pub fn child(&self, arc: u32) -> Oid {
        let mut v = self.0.clone();
        v.push(arc);
        Oid(v)
    }
}

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Oid({self})")
    }
}

/// A varbind value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Integer(i64),
    OctetString(Vec<u8>),
    Null,
    Oid(Oid),
    IpAddress([u8; 4]),
    Counter32(u32),
    Gauge32(u32),
    TimeTicks(u32),
    Opaque(Vec<u8>),
    Counter64(u64),
    NoSuchObject,
    NoSuchInstance,
    EndOfMibView,
}

impl Value {
    /// SMI type name as used in `SnmpVarBind.value_type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Integer(_) => "Integer",
            Value::OctetString(_) => "OctetString",
            Value::Null => "Null",
            Value::Oid(_) => "ObjectIdentifier",
            Value::IpAddress(_) => "IpAddress",
            Value::Counter32(_) => "Counter32",
            Value::Gauge32(_) => "Gauge32",
            Value::TimeTicks(_) => "TimeTicks",
            Value::Opaque(_) => "Opaque",
            Value::Counter64(_) => "Counter64",
            Value::NoSuchObject => "NoSuchObject",
            Value::NoSuchInstance => "NoSuchInstance",
            Value::EndOfMibView => "EndOfMibView",
        }
    }

    /// Text rendering: decimal numbers, UTF-8 text when printable, else hex
    /// bytes separated by spaces (as net-snmp's `Hex-STRING`).
    pub fn render(&self) -> String {
        match self {
            Value::Integer(v) => v.to_string(),
            Value::OctetString(b) | Value::Opaque(b) => render_octets(b),
            Value::Null => String::new(),
            Value::Oid(o) => o.to_string(),
            Value::IpAddress(a) => format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3]),
            Value::Counter32(v) | Value::Gauge32(v) | Value::TimeTicks(v) => v.to_string(),
            Value::Counter64(v) => v.to_string(),
            Value::NoSuchObject => "noSuchObject".into(),
            Value::NoSuchInstance => "noSuchInstance".into(),
            Value::EndOfMibView => "endOfMibView".into(),
        }
    }

    /// Numeric value, when it has one.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Integer(v) => u64::try_from(*v).ok(),
            Value::Counter32(v) | Value::Gauge32(v) | Value::TimeTicks(v) => Some(u64::from(*v)),
            Value::Counter64(v) => Some(*v),
            _ => None,
        }
    }

    pub fn is_exception(&self) -> bool {
        matches!(
            self,
            Value::NoSuchObject | Value::NoSuchInstance | Value::EndOfMibView
        )
    }
}

fn render_octets(b: &[u8]) -> String {
    if let Ok(s) = std::str::from_utf8(b)
        && s.chars()
            .all(|c| !c.is_control() || c == '\n' || c == '\r' || c == '\t')
    {
        return s.to_string();
    }
    let mut out = String::with_capacity(b.len() * 3);
    for (i, byte) in b.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&format!("{byte:02X}"));
    }
    out
}

/// A PDU. For GETBULK, `error_status` is non-repeaters and `error_index`
/// max-repetitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu {
    pub tag: u8,
    pub request_id: i32,
    pub error_status: i64,
    pub error_index: i64,
    pub varbinds: Vec<(Oid, Value)>,
}

// ------------------------------------------------------------------ encoding

/// Tag and length octets for a TLV whose content is `len` bytes.
pub fn header(tag: u8, len: usize) -> Vec<u8> {
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u64).to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (8 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out
}

pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = header(tag, content.len());
    out.extend_from_slice(content);
    out
}

pub fn int_content(v: i64) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let mut start = 0;
    while start < 7 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    bytes[start..].to_vec()
}

fn uint_content(v: u64) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
    let mut out = Vec::with_capacity(9);
    if bytes[skip] & 0x80 != 0 {
        out.push(0);
    }
    out.extend_from_slice(&bytes[skip..]);
    out
}

pub fn int(v: i64) -> Vec<u8> {
    tlv(TAG_INTEGER, &int_content(v))
}

pub fn octets(b: &[u8]) -> Vec<u8> {
    tlv(TAG_OCTETS, b)
}

fn push_base128(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 10];
    let mut n = 0;
    loop {
        tmp[n] = (v & 0x7f) as u8;
        n += 1;
        v >>= 7;
        if v == 0 {
            break;
        }
    }
    for i in (0..n).rev() {
        out.push(if i > 0 { tmp[i] | 0x80 } else { tmp[i] });
    }
}

pub fn oid(o: &Oid) -> Vec<u8> {
    let a = o.arcs();
    let mut content = Vec::with_capacity(a.len() + 4);
    let first = u64::from(*a.first().unwrap_or(&0)) * 40 + u64::from(*a.get(1).unwrap_or(&0));
    push_base128(&mut content, first);
    for arc in a.iter().skip(2) {
        push_base128(&mut content, u64::from(*arc));
    }
    tlv(TAG_OID, &content)
}

pub fn value(v: &Value) -> Vec<u8> {
    match v {
        Value::Integer(i) => int(*i),
        Value::OctetString(b) => octets(b),
        Value::Null => tlv(TAG_NULL, &[]),
        Value::Oid(o) => oid(o),
        Value::IpAddress(a) => tlv(TAG_IPADDRESS, a),
        Value::Counter32(x) => tlv(TAG_COUNTER32, &uint_content(u64::from(*x))),
        Value::Gauge32(x) => tlv(TAG_GAUGE32, &uint_content(u64::from(*x))),
        Value::TimeTicks(x) => tlv(TAG_TIMETICKS, &uint_content(u64::from(*x))),
        Value::Opaque(b) => tlv(TAG_OPAQUE, b),
        Value::Counter64(x) => tlv(TAG_COUNTER64, &uint_content(*x)),
        Value::NoSuchObject => tlv(TAG_NO_SUCH_OBJECT, &[]),
        Value::NoSuchInstance => tlv(TAG_NO_SUCH_INSTANCE, &[]),
        Value::EndOfMibView => tlv(TAG_END_OF_MIB_VIEW, &[]),
    }
}

pub fn encode_pdu(p: &Pdu) -> Vec<u8> {
    let mut vbl = Vec::new();
    for (o, v) in &p.varbinds {
        let mut vb = oid(o);
        vb.extend(value(v));
        vbl.extend(tlv(TAG_SEQUENCE, &vb));
    }
    let mut content = int(i64::from(p.request_id));
    content.extend(int(p.error_status));
    content.extend(int(p.error_index));
    content.extend(tlv(TAG_SEQUENCE, &vbl));
    tlv(p.tag, &content)
}

/// A complete SNMPv2c message.
pub fn encode_v2c(community: &[u8], p: &Pdu) -> Vec<u8> {
    let mut content = int(1);
    content.extend(octets(community));
    content.extend(encode_pdu(p));
    tlv(TAG_SEQUENCE, &content)
}

// ------------------------------------------------------------------ decoding

/// Reads TLVs from `buf[pos..end]`; offsets are absolute in `buf`.
#[derive(Clone, Copy)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

/// One decoded TLV: tag, content, and the content's absolute offset.
#[derive(Clone, Copy)]
pub struct Tlv<'a> {
    pub tag: u8,
    pub content: &'a [u8],
    pub offset: usize,
    buf: &'a [u8],
}

impl<'a> Tlv<'a> {
    /// A reader over this TLV's content (for constructed types).
    pub fn reader(&self) -> Reader<'a> {
        Reader {
            buf: self.buf,
            pos: self.offset,
            end: self.offset + self.content.len(),
        }
    }
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            end: buf.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.end
    }

    pub fn read(&mut self) -> Result<Tlv<'a>> {
        let data = self
            .buf
            .get(self.pos..self.end)
            .ok_or(DecodeError("truncated"))?;
        let (&tag, rest) = data.split_first().ok_or(DecodeError("truncated tag"))?;
        if tag & 0x1f == 0x1f {
            return Err(DecodeError("multi-byte tag"));
        }
        let (&l0, rest) = rest.split_first().ok_or(DecodeError("truncated length"))?;
        let (len, hdr) = if l0 < 0x80 {
            (usize::from(l0), 2)
        } else {
            let n = usize::from(l0 & 0x7f);
            if n == 0 {
                return Err(DecodeError("indefinite length"));
            }
            if n > 4 {
                return Err(DecodeError("length too large"));
            }
            let lb = rest.get(..n).ok_or(DecodeError("truncated length"))?;
            let len = lb
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, 2 + n)
        };
        let content = data
            .get(hdr..hdr.checked_add(len).ok_or(DecodeError("length overflow"))?)
            .ok_or(DecodeError("content shorter than its length"))?;
        let offset = self.pos + hdr;
        self.pos = offset + len;
        Ok(Tlv {
            tag,
            content,
            offset,
            buf: self.buf,
        })
    }

    pub fn expect(&mut self, tag: u8, what: &'static str) -> Result<Tlv<'a>> {
        let t = self.read()?;
        if t.tag != tag {
            return Err(DecodeError(what));
        }
        Ok(t)
    }

    pub fn integer(&mut self) -> Result<i64> {
        let t = self.expect(TAG_INTEGER, "expected INTEGER")?;
        decode_int(t.content)
    }

    pub fn octets(&mut self) -> Result<&'a [u8]> {
        Ok(self.expect(TAG_OCTETS, "expected OCTET STRING")?.content)
    }
}

pub fn decode_int(c: &[u8]) -> Result<i64> {
    if c.is_empty() || c.len() > 8 {
        return Err(DecodeError("bad INTEGER length"));
    }
    let mut v: i64 = if c[0] & 0x80 != 0 { -1 } else { 0 };
    for b in c {
        v = (v << 8) | i64::from(*b);
    }
    Ok(v)
}

fn decode_uint(c: &[u8], max_bytes: usize) -> Result<u64> {
    let c = match c.split_first() {
        Some((0, rest)) if !rest.is_empty() => rest,
        Some(_) => c,
        None => return Err(DecodeError("empty unsigned")),
    };
    if c.len() > max_bytes {
        return Err(DecodeError("unsigned value too large"));
    }
    Ok(c.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

fn decode_u32(c: &[u8]) -> Result<u32> {
    u32::try_from(decode_uint(c, 4)?).map_err(|_| DecodeError("32-bit value too large"))
}

pub fn decode_oid(c: &[u8]) -> Result<Oid> {
    if c.is_empty() || c.len() > 1024 {
        return Err(DecodeError("bad OID length"));
    }
    let mut arcs = Vec::with_capacity(c.len() + 1);
    let mut acc: u64 = 0;
    let mut first = true;
    for (i, b) in c.iter().enumerate() {
        acc = (acc << 7) | u64::from(b & 0x7f);
        if acc > u64::from(u32::MAX) + 80 {
            return Err(DecodeError("OID arc too large"));
        }
        if b & 0x80 == 0 {
            if first {
                let (a, b2) = match acc {
                    0..=39 => (0, acc),
                    40..=79 => (1, acc - 40),
                    _ => (2, acc - 80),
                };
                arcs.push(a);
                arcs.push(u32::try_from(b2).map_err(|_| DecodeError("OID arc too large"))?);
                first = false;
            } else {
                arcs.push(u32::try_from(acc).map_err(|_| DecodeError("OID arc too large"))?);
            }
            acc = 0;
        } else if i + 1 == c.len() {
            return Err(DecodeError("truncated OID arc"));
        }
    }
    Ok(Oid(arcs))
}

pub fn decode_value(t: &Tlv<'_>) -> Result<Value> {
    let c = t.content;
    Ok(match t.tag {
        TAG_INTEGER => Value::Integer(decode_int(c)?),
        TAG_OCTETS => Value::OctetString(c.to_vec()),
        TAG_NULL => Value::Null,
        TAG_OID => Value::Oid(decode_oid(c)?),
        TAG_IPADDRESS => Value::IpAddress(
            c.try_into()
                .map_err(|_| DecodeError("IpAddress must be 4 bytes"))?,
        ),
        TAG_COUNTER32 => Value::Counter32(decode_u32(c)?),
        TAG_GAUGE32 => Value::Gauge32(decode_u32(c)?),
        TAG_TIMETICKS => Value::TimeTicks(decode_u32(c)?),
        TAG_OPAQUE => Value::Opaque(c.to_vec()),
        TAG_COUNTER64 => Value::Counter64(decode_uint(c, 8)?),
        TAG_NO_SUCH_OBJECT => Value::NoSuchObject,
        TAG_NO_SUCH_INSTANCE => Value::NoSuchInstance,
        TAG_END_OF_MIB_VIEW => Value::EndOfMibView,
        _ => return Err(DecodeError("unknown value type")),
    })
}

pub fn decode_pdu(t: &Tlv<'_>) -> Result<Pdu> {
    if !(0xA0..=0xA8).contains(&t.tag) {
        return Err(DecodeError("not a PDU"));
    }
    let mut r = t.reader();
    let request_id =
        i32::try_from(r.integer()?).map_err(|_| DecodeError("request-id out of range"))?;
    let error_status = r.integer()?;
    let error_index = r.integer()?;
    let mut vbl = r.expect(TAG_SEQUENCE, "expected varbind list")?.reader();
    let mut varbinds = Vec::new();
    while !vbl.is_empty() {
        let mut vb = vbl.expect(TAG_SEQUENCE, "expected varbind")?.reader();
        let o = decode_oid(vb.expect(TAG_OID, "expected varbind OID")?.content)?;
        let v = decode_value(&vb.read()?)?;
        varbinds.push((o, v));
    }
    Ok(Pdu {
        tag: t.tag,
        request_id,
        error_status,
        error_index,
        varbinds,
    })
}

/// Decodes an SNMPv1/v2c message: (version, community, pdu).
pub fn decode_v2c(buf: &[u8]) -> Result<(i64, Vec<u8>, Pdu)> {
    let mut outer = Reader::new(buf);
    let mut r = outer
        .expect(TAG_SEQUENCE, "expected message SEQUENCE")?
        .reader();
    let version = r.integer()?;
    let community = r.octets()?.to_vec();
    let pdu = decode_pdu(&r.read()?)?;
    Ok((version, community, pdu))
}

/// Reads the message version only (to route v2c vs v3 decoding).
pub fn peek_version(buf: &[u8]) -> Result<i64> {
    let mut outer = Reader::new(buf);
    let mut r = outer
        .expect(TAG_SEQUENCE, "expected message SEQUENCE")?
        .reader();
    r.integer()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn int_roundtrip() {
        for v in [
            0i64,
            1,
            127,
            128,
            255,
            256,
            -1,
            -128,
            -129,
            i64::MAX,
            i64::MIN,
            2_147_483_647,
        ] {
            let e = int(v);
            let mut r = Reader::new(&e);
            assert_eq!(r.integer().unwrap(), v, "{v}");
        }
    }

    #[test]
    fn oid_roundtrip() {
        for s in [
            "1.3.6.1.2.1.1.3.0",
            "1.3.6.1.4.1.2021.11.11.0",
            "2.999.1",
            "0.0",
            "1.3.6.1.2.1.31.1.1.1.6.4294967295",
        ] {
            let o = Oid::parse(s).unwrap();
            let e = oid(&o);
            let mut r = Reader::new(&e);
            let t = r.read().unwrap();
            assert_eq!(decode_oid(t.content).unwrap(), o, "{s}");
        }
        assert!(Oid::parse("1.3.six").is_err());
        assert!(Oid::parse("3.1").is_err());
        assert!(Oid::parse("1").is_err());
    }

    #[test]
    fn pdu_roundtrip() {
        let p = Pdu {
            tag: PDU_RESPONSE,
            request_id: 12345,
            error_status: 0,
            error_index: 0,
            varbinds: vec![
                (
                    Oid::parse("1.3.6.1.2.1.1.3.0").unwrap(),
                    Value::TimeTicks(4_000_000_000),
                ),
                (
                    Oid::parse("1.3.6.1.2.1.1.1.0").unwrap(),
                    Value::OctetString(b"Linux".to_vec()),
                ),
                (
                    Oid::parse("1.3.6.1.2.1.31.1.1.1.6.1").unwrap(),
                    Value::Counter64(u64::MAX),
                ),
                (
                    Oid::parse("1.3.6.1.2.1.1.9.0").unwrap(),
                    Value::NoSuchObject,
                ),
                (
                    Oid::parse("1.3.6.1.2.1.4.20.1.1.127.0.0.1").unwrap(),
                    Value::IpAddress([127, 0, 0, 1]),
                ),
            ],
        };
        let m = encode_v2c(b"public", &p);
        let (v, c, d) = decode_v2c(&m).unwrap();
        assert_eq!((v, c.as_slice()), (1, &b"public"[..]));
        assert_eq!(d, p);
    }

    #[test]
    fn long_lengths() {
        let big = vec![b'a'; 70000];
        let e = octets(&big);
        let mut r = Reader::new(&e);
        assert_eq!(r.octets().unwrap().len(), 70000);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_v2c(&bytes);
            let _ = peek_version(&bytes);
            let _ = crate::snmp::v3::decode_v3(&bytes);
        }

        #[test]
        fn mutated_messages_never_panic(pos in 0usize..200, val in any::<u8>(), cut in 0usize..200) {
            let p = Pdu {
                tag: PDU_RESPONSE, request_id: 7, error_status: 0, error_index: 0,
                varbinds: vec![(Oid::parse("1.3.6.1.2.1.1.5.0").unwrap(), Value::OctetString(b"host".to_vec())),
                               (Oid::parse("1.3.6.1.2.1.1.3.0").unwrap(), Value::TimeTicks(99))],
            };
            let mut m = encode_v2c(b"public", &p);
            if pos < m.len() { m[pos] = val; }
            m.truncate(cut.max(1));
            let _ = decode_v2c(&m);
            let _ = crate::snmp::v3::decode_v3(&m);
        }
    }
}
