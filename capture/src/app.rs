//! Light application metadata: DNS names, TLS ClientHello SNI / ALPN, the
//! HTTP request line and Host, Stratum mining method names.
//!
//! Every parser reads a borrowed byte slice, never panics, never allocates,
//! and hands back only *names*: a DNS name, a server name, a protocol id, a
//! method, a host, a path cut at the first `?` and at a configured length.
//! Nothing else of a payload is returned. Malformed input is an [`AppError`].

/// Why an application parser gave up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppError {
    /// The message is longer than the bytes given: more may come (TLS, DNS over TCP).
    Incomplete,
    /// Not this protocol, or a field is impossible.
    Malformed,
}

/// Maximum DNS name length in presentation form (RFC 1035: 255 octets).
pub const MAX_NAME: usize = 255;

/// A DNS name decoded into a fixed buffer (lower-cased; bytes outside
/// printable ASCII become `?`).
#[derive(Clone, Copy)]
pub struct NameBuf {
    buf: [u8; MAX_NAME],
    len: u8,
}

impl Default for NameBuf {
    fn default() -> Self {
        NameBuf {
            buf: [0; MAX_NAME],
            len: 0,
        }
    }
}

impl NameBuf {
    /// The name as text ("." for the root).
    pub fn as_str(&self) -> &str {
        if self.len == 0 {
            return ".";
        }
        // Only printable ASCII is ever written.
        std::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("?")
    }
}

impl std::fmt::Debug for NameBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which part of a DNS message a record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsSection {
    /// Question section.
    Question,
    /// Answer section.
    Answer,
}

/// One DNS question or answer, handed to the visitor of [`parse_dns`].
#[derive(Clone, Copy, Debug)]
pub struct DnsRecord<'a> {
    /// Question or answer.
    pub section: DnsSection,
    /// Owner name.
    pub name: &'a NameBuf,
    /// Record type (1 A, 28 AAAA, 5 CNAME...).
    pub rtype: u16,
    /// For A / AAAA answers: the address, IPv4-mapped for A.
    pub addr: Option<[u8; 16]>,
    /// For CNAME answers: the target name.
    pub target: Option<&'a NameBuf>,
    /// Answers: time to live, seconds (0 for questions).
    pub ttl: u32,
}

/// Header facts of a DNS message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnsHeader {
    /// Transaction id.
    pub id: u16,
    /// QR bit: true for a response.
    pub response: bool,
    /// Response code (0 NOERROR, 3 NXDOMAIN...).
    pub rcode: u8,
    /// Questions in the message.
    pub qdcount: u16,
    /// Answers in the message.
    pub ancount: u16,
}

/// At most this many answers are visited per message.
pub const MAX_DNS_ANSWERS: usize = 16;
/// At most this many compression pointers are followed for one name.
const MAX_POINTERS: usize = 16;

fn read_name(msg: &[u8], mut at: usize, out: &mut NameBuf) -> Result<usize, AppError> {
    out.len = 0;
    let mut end = None; // where parsing continues after the name
    let mut jumps = 0;
    loop {
        let len = *msg.get(at).ok_or(AppError::Incomplete)? as usize;
        match len & 0xC0 {
            0x00 => {
                if len == 0 {
                    return Ok(end.unwrap_or(at + 1));
                }
                let label = msg.get(at + 1..at + 1 + len).ok_or(AppError::Incomplete)?;
                let need = len + usize::from(out.len > 0);
                if out.len as usize + need > MAX_NAME {
                    return Err(AppError::Malformed);
                }
                if out.len > 0 {
                    out.buf[out.len as usize] = b'.';
                    out.len += 1;
                }
                for &c in label {
                    let c = if c.is_ascii_graphic() {
                        c.to_ascii_lowercase()
                    } else {
                        b'?'
                    };
                    out.buf[out.len as usize] = c;
                    out.len += 1;
                }
                at += 1 + len;
            }
            0xC0 => {
                let lo = *msg.get(at + 1).ok_or(AppError::Incomplete)? as usize;
                if end.is_none() {
                    end = Some(at + 2);
                }
                jumps += 1;
                if jumps > MAX_POINTERS {
                    return Err(AppError::Malformed);
                }
                let target = ((len & 0x3F) << 8) | lo;
                if target >= msg.len() {
                    return Err(AppError::Malformed);
                }
                at = target;
            }
            _ => return Err(AppError::Malformed),
        }
    }
}

/// Parse a DNS message (UDP payload, or a TCP message without its 2-byte
/// length prefix) and visit its questions and answers.
pub fn parse_dns(msg: &[u8], visit: &mut dyn FnMut(DnsRecord<'_>)) -> Result<DnsHeader, AppError> {
    if msg.len() < 12 {
        return Err(AppError::Malformed);
    }
    let hdr = DnsHeader {
        id: u16::from_be_bytes([msg[0], msg[1]]),
        response: msg[2] & 0x80 != 0,
        rcode: msg[3] & 0x0F,
        qdcount: u16::from_be_bytes([msg[4], msg[5]]),
        ancount: u16::from_be_bytes([msg[6], msg[7]]),
    };
    let opcode = (msg[2] >> 3) & 0x0F;
    if opcode > 6 || hdr.qdcount > 8 {
        return Err(AppError::Malformed);
    }
    let mut at = 12;
    let mut name = NameBuf::default();
    let mut target = NameBuf::default();
    for _ in 0..hdr.qdcount {
        at = read_name(msg, at, &mut name).map_err(|_| AppError::Malformed)?;
        let f = msg.get(at..at + 4).ok_or(AppError::Malformed)?;
        let rtype = u16::from_be_bytes([f[0], f[1]]);
        at += 4;
        visit(DnsRecord {
            section: DnsSection::Question,
            name: &name,
            rtype,
            addr: None,
            target: None,
            ttl: 0,
        });
    }
    for _ in 0..(hdr.ancount as usize).min(MAX_DNS_ANSWERS) {
        at = read_name(msg, at, &mut name).map_err(|_| AppError::Malformed)?;
        let f = msg.get(at..at + 10).ok_or(AppError::Malformed)?;
        let rtype = u16::from_be_bytes([f[0], f[1]]);
        let ttl = u32::from_be_bytes([f[4], f[5], f[6], f[7]]);
        let rdlen = u16::from_be_bytes([f[8], f[9]]) as usize;
        at += 10;
        let rdata = msg.get(at..at + rdlen).ok_or(AppError::Malformed)?;
        let mut addr = None;
        let mut tgt = None;
        match (rtype, rdlen) {
            (1, 4) => {
                let mut a = [0u8; 16];
                a[10] = 0xFF;
                a[11] = 0xFF;
                a[12..].copy_from_slice(rdata);
                addr = Some(a);
            }
            (28, 16) => {
                let mut a = [0u8; 16];
                a.copy_from_slice(rdata);
                addr = Some(a);
            }
            (5, _) if read_name(msg, at, &mut target).is_ok() => {
                tgt = Some(&target);
            }
            _ => {}
        }
        at += rdlen;
        visit(DnsRecord {
            section: DnsSection::Answer,
            name: &name,
            rtype,
            addr,
            target: tgt,
            // RFC 2181 §8: a TTL with the top bit set is read as 0.
            ttl: if ttl > i32::MAX as u32 { 0 } else { ttl },
        });
    }
    Ok(hdr)
}

/// Names from a TLS ClientHello.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientHello<'a> {
    /// server_name (host_name type), as sent.
    pub sni: Option<&'a [u8]>,
    /// application_layer_protocol_negotiation list, as sent (up to 4 kept).
    pub alpn: [Option<&'a [u8]>; 4],
}

/// TLS records longer than this are not ClientHellos we follow.
pub const MAX_HELLO: usize = 16 * 1024;

/// True when `b` starts like a TLS handshake record (content type 22, version 3.x).
pub fn looks_like_tls(b: &[u8]) -> bool {
    b.len() >= 3 && b[0] == 22 && b[1] == 3 && b[2] <= 4
}

/// Parse the ClientHello at the start of a client's TCP stream.
///
/// Returns [`AppError::Incomplete`] when the handshake message is longer than
/// `b` (the caller may append the next segment and try again).
pub fn parse_client_hello(b: &[u8]) -> Result<ClientHello<'_>, AppError> {
    if b.len() < 5 {
        return Err(AppError::Incomplete);
    }
    if !looks_like_tls(b) {
        return Err(AppError::Malformed);
    }
    let rec_len = u16::from_be_bytes([b[3], b[4]]) as usize;
    if !(4..=MAX_HELLO).contains(&rec_len) {
        return Err(AppError::Malformed);
    }
    // The handshake message may span several records; we follow it only
    // within the first record plus following bytes of the same type: take
    // the handshake length and require those bytes in the first record(s).
    let hs_type = *b.get(5).ok_or(AppError::Incomplete)?;
    if hs_type != 1 {
        return Err(AppError::Malformed);
    }
    let l = b.get(6..9).ok_or(AppError::Incomplete)?;
    let hs_len = ((l[0] as usize) << 16) | ((l[1] as usize) << 8) | l[2] as usize;
    if hs_len > MAX_HELLO || hs_len + 4 > rec_len {
        // A ClientHello fragmented over several records: not followed.
        return Err(AppError::Malformed);
    }
    let body = b.get(9..9 + hs_len).ok_or(AppError::Incomplete)?;
    hello_body(body).ok_or(AppError::Malformed)
}

fn hello_body(h: &[u8]) -> Option<ClientHello<'_>> {
    let mut at = 2 + 32; // client_version, random
    let sid = *h.get(at)? as usize;
    at += 1 + sid;
    let cs = u16::from_be_bytes([*h.get(at)?, *h.get(at + 1)?]) as usize;
    at += 2 + cs;
    let cm = *h.get(at)? as usize;
    at += 1 + cm;
    let mut out = ClientHello::default();
    if at == h.len() {
        return Some(out); // no extensions
    }
    let ext_len = u16::from_be_bytes([*h.get(at)?, *h.get(at + 1)?]) as usize;
    at += 2;
    let exts = h.get(at..at + ext_len)?;
    let mut i = 0;
    while i + 4 <= exts.len() {
        let ty = u16::from_be_bytes([exts[i], exts[i + 1]]);
        let len = u16::from_be_bytes([exts[i + 2], exts[i + 3]]) as usize;
        let data = exts.get(i + 4..i + 4 + len)?;
        match ty {
            0 => {
                // server_name_list: u16 len, then (type u8, u16 len, name)
                let mut j = 2;
                while j + 3 <= data.len() {
                    let nt = data[j];
                    let nl = u16::from_be_bytes([data[j + 1], data[j + 2]]) as usize;
                    let name = data.get(j + 3..j + 3 + nl)?;
                    if nt == 0 && out.sni.is_none() {
                        out.sni = Some(name);
                    }
                    j += 3 + nl;
                }
            }
            16 => {
                let mut j = 2;
                let mut k = 0;
                while j < data.len() {
                    let pl = data[j] as usize;
                    let p = data.get(j + 1..j + 1 + pl)?;
                    if k < out.alpn.len() {
                        out.alpn[k] = Some(p);
                        k += 1;
                    }
                    j += 1 + pl;
                }
            }
            _ => {}
        }
        i += 4 + len;
    }
    Some(out)
}

/// The request line and Host of a cleartext HTTP request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpRequest<'a> {
    /// Method (GET, POST...).
    pub method: &'a [u8],
    /// Path up to the first `?` and at most `max_path` bytes.
    pub path: &'a [u8],
    /// Host header value, if present in the bytes given.
    pub host: Option<&'a [u8]>,
}

const METHODS: [&[u8]; 9] = [
    b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE",
];

/// Parse the start of a cleartext HTTP/1.x request. The query string is
/// never returned (it often holds tokens); the path is cut to `max_path`.
pub fn parse_http_request(b: &[u8], max_path: usize) -> Result<HttpRequest<'_>, AppError> {
    let sp = b
        .iter()
        .take(8)
        .position(|&c| c == b' ')
        .ok_or(AppError::Malformed)?;
    let method = &b[..sp];
    if !METHODS.contains(&method) {
        return Err(AppError::Malformed);
    }
    let line_end = b
        .iter()
        .position(|&c| c == b'\n')
        .ok_or(AppError::Incomplete)?;
    let line = &b[..line_end];
    let rest = &line[sp + 1..];
    let sp2 = rest
        .iter()
        .position(|&c| c == b' ')
        .ok_or(AppError::Malformed)?;
    if !rest[sp2 + 1..].starts_with(b"HTTP/") {
        return Err(AppError::Malformed);
    }
    let target = &rest[..sp2];
    let q = target
        .iter()
        .position(|&c| c == b'?')
        .unwrap_or(target.len());
    let path = &target[..q.min(max_path)];
    let mut host = None;
    for hl in b[line_end + 1..].split(|&c| c == b'\n') {
        let hl = hl.strip_suffix(b"\r").unwrap_or(hl);
        if hl.is_empty() {
            break;
        }
        if hl.len() > 5 && hl[..5].eq_ignore_ascii_case(b"host:") {
            host = Some(hl[5..].trim_ascii());
            break;
        }
    }
    Ok(HttpRequest { method, path, host })
}

/// Stratum method names owlet reports (only the name is kept): the
/// Bitcoin-style pair, Monero's `login` (XMRig, xmr-stak) and the
/// Ethereum proxy's `eth_submitLogin`.
pub const STRATUM_METHODS: [&str; 4] = [
    "mining.subscribe",
    "mining.authorize",
    "login",
    "eth_submitLogin",
];

/// Bytes of a flow's first client segment the Stratum check looks at.
const STRATUM_WINDOW: usize = 1024;

/// Find a Stratum login method (see [`STRATUM_METHODS`]) in the first bytes
/// of a cleartext TCP stream (JSON-RPC, one object per line). `login` is a
/// common JSON-RPC word, so it counts only with a `"pass"` key beside it,
/// as every Monero miner sends (`{"method":"login","params":{"login":
/// WALLET,"pass":"x","agent":"XMRig/6.21"}}`). Only the method name is
/// returned; the wallet, password and agent are never looked at further.
pub fn parse_stratum(b: &[u8]) -> Option<&'static str> {
    let b = &b[..b.len().min(STRATUM_WINDOW)];
    if b.first() != Some(&b'{') {
        return None;
    }
    let rest = after_key(b, b"method")?;
    let rest = rest.strip_prefix(b"\"")?;
    let method = STRATUM_METHODS
        .into_iter()
        .find(|m| rest.starts_with(m.as_bytes()) && rest.get(m.len()) == Some(&b'"'))?;
    if method == "login" && after_key(b, b"pass").is_none() {
        return None;
    }
    Some(method)
}

/// The bytes after `"key"` and its colon (blanks skipped) in JSON text.
fn after_key<'a>(b: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let mut from = 0;
    while let Some(at) = b[from..]
        .windows(key.len() + 2)
        .position(|w| w[0] == b'"' && &w[1..=key.len()] == key && w[key.len() + 1] == b'"')
    {
        let rest = b[from + at + key.len() + 2..].trim_ascii_start();
        if let Some(value) = rest.strip_prefix(b":") {
            return Some(value.trim_ascii_start());
        }
        from += at + 1;
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut m = vec![];
        m.extend_from_slice(&id.to_be_bytes());
        m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        for l in name.split('.') {
            m.push(l.len() as u8);
            m.extend_from_slice(l.as_bytes());
        }
        m.push(0);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&[0, 1]);
        m
    }

    /// A response to `dns_query` with one A answer via a compression pointer.
    pub(crate) fn dns_answer_a(id: u16, name: &str, addr: [u8; 4]) -> Vec<u8> {
        let mut m = dns_query(id, name, 1);
        m[2] = 0x81;
        m[3] = 0x80;
        m[7] = 1;
        m.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        m.extend_from_slice(&addr);
        m
    }

    pub(crate) fn client_hello(sni: &str, alpn: &[&str], pad: usize) -> Vec<u8> {
        let mut ext = vec![];
        let name = sni.as_bytes();
        ext.extend_from_slice(&[0, 0]);
        ext.extend_from_slice(&((name.len() + 5) as u16).to_be_bytes());
        ext.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
        ext.push(0);
        ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
        ext.extend_from_slice(name);
        let mut list = vec![];
        for a in alpn {
            list.push(a.len() as u8);
            list.extend_from_slice(a.as_bytes());
        }
        ext.extend_from_slice(&[0, 16]);
        ext.extend_from_slice(&((list.len() + 2) as u16).to_be_bytes());
        ext.extend_from_slice(&(list.len() as u16).to_be_bytes());
        ext.extend_from_slice(&list);
        // padding extension (21) to make the hello big like a PQ key share
        ext.extend_from_slice(&[0, 21]);
        ext.extend_from_slice(&(pad as u16).to_be_bytes());
        ext.extend(std::iter::repeat_n(0u8, pad));
        let mut body = vec![3, 3];
        body.extend_from_slice(&[0xAB; 32]);
        body.push(0);
        body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut hs = vec![1];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        let mut rec = vec![22, 3, 1];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn dns_question_and_compressed_answer() {
        let m = dns_answer_a(7, "Pool.Example.org", [192, 0, 2, 9]);
        let mut seen = vec![];
        let h = parse_dns(&m, &mut |r| {
            seen.push((r.section, r.name.as_str().to_string(), r.rtype, r.addr))
        })
        .unwrap();
        assert!(h.response);
        assert_eq!(seen[0].1, "pool.example.org");
        assert_eq!(seen[1].0, DnsSection::Answer);
        assert_eq!(seen[1].1, "pool.example.org");
        assert_eq!(&seen[1].3.unwrap()[12..], &[192, 0, 2, 9]);
    }

    #[test]
    fn dns_pointer_loop_is_malformed() {
        let mut m = dns_query(1, "a", 1);
        m.truncate(12);
        m.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
        assert_eq!(parse_dns(&m, &mut |_| {}), Err(AppError::Malformed));
    }

    #[test]
    fn client_hello_sni_alpn_and_incomplete() {
        let h = client_hello("www.example.com", &["h2", "http/1.1"], 1500);
        let ch = parse_client_hello(&h).unwrap();
        assert_eq!(ch.sni, Some(&b"www.example.com"[..]));
        assert_eq!(ch.alpn[0], Some(&b"h2"[..]));
        assert_eq!(ch.alpn[1], Some(&b"http/1.1"[..]));
        assert_eq!(parse_client_hello(&h[..1000]), Err(AppError::Incomplete));
    }

    #[test]
    fn http_request_line_host_and_truncated_path() {
        let r = b"GET /a/very/long/path?token=secret HTTP/1.1\r\nUser-Agent: x\r\nHOST: example.net\r\n\r\n";
        let h = parse_http_request(r, 7).unwrap();
        assert_eq!(h.method, b"GET");
        assert_eq!(h.path, b"/a/very");
        assert_eq!(h.host, Some(&b"example.net"[..]));
        let h = parse_http_request(r, 100).unwrap();
        assert_eq!(h.path, b"/a/very/long/path");
        assert!(parse_http_request(b"\x16\x03\x01", 10).is_err());
    }

    #[test]
    fn stratum_methods_only() {
        let s = br#"{"id": 1, "method": "mining.subscribe", "params": ["cpuminer/2.5"]}"#;
        assert_eq!(parse_stratum(s), Some("mining.subscribe"));
        let s = br#"{"id":2,"method":"mining.authorize","params":["wallet.worker","x"]}"#;
        assert_eq!(parse_stratum(s), Some("mining.authorize"));
        assert_eq!(parse_stratum(br#"{"method":"mining.subscribed"}"#), None);
        let xmrig = br#"{"id":1,"jsonrpc":"2.0","method":"login","params":{"login":"48edfHu7V9Z84YzzMa6fUueoELZ9ZRXq9VetWzYGzKt52XU5xvqgzYnDK9URnRoJMk1j8nLwEVsaSWJ4fhdUyZijBGUicoD","pass":"x","agent":"XMRig/6.21.0 (Linux x86_64) libuv/1.44.2 gcc/12.2.0","algo":["rx/0"]}}"#;
        assert_eq!(parse_stratum(xmrig), Some("login"));
        // A JSON-RPC "login" without a miner's "pass" is not Stratum.
        assert_eq!(
            parse_stratum(br#"{"jsonrpc":"2.0","method":"login","params":{"user":"bob"}}"#),
            None
        );
        // "pass" only as a value, not a key.
        assert_eq!(
            parse_stratum(br#"{"method":"login","params":["pass"]}"#),
            None
        );
        assert_eq!(
            parse_stratum(br#"{"id":1,"method":"eth_submitLogin","params":["0xabc"]}"#),
            Some("eth_submitLogin")
        );
        assert_eq!(
            parse_stratum(br#"{"jsonrpc":"2.0","method":"eth_call"}"#),
            None
        );
    }
}
