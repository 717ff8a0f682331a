//! Capture filters written the way tcpdump users write them, compiled by
//! our own parser and code generator to classic BPF, attached in the kernel
//! (SO_ATTACH_FILTER) so that packets the filter rejects never reach the
//! ring and cost nothing in user space.
//!
//! Language (a subset of pcap-filter(7), same meaning on Ethernet):
//! - `host ADDR`, `net ADDR/LEN`, `port N` with an optional direction
//!   `src`, `dst`, `src or dst`, `src and dst` (default: either), and an
//!   optional protocol before them: `ip` / `ip6` / `arp` for host and net,
//!   `tcp` / `udp` for port (`tcp dst port 443`, `ip6 net fd00::/8`);
//! - protocols alone: `ip`, `ip6`, `arp`, `tcp`, `udp`, `icmp`, `icmp6`;
//! - `vlan` and `vlan ID`;
//! - `and` / `&&`, `or` / `||`, `not` / `!`, parentheses. As in tcpdump,
//!   `and` and `or` have the same precedence and associate left to right;
//!   `not` binds tightest; a bare value after `and` / `or` reuses the
//!   previous primitive's qualifiers (`host 10.0.0.1 or 10.0.0.2`).
//!
//! On raw-IP links (tun, WireGuard, PPP: no Ethernet header) the same
//! language compiles with the offsets of a packet that starts with its IP
//! header ([`compile_for`]), as libpcap does for DLT_RAW; `arp` matches
//! nothing there.
//!
//! As with tcpdump on a live Linux interface, the kernel takes the
//! outermost VLAN tag off before the filter runs: `vlan` tests read that
//! tag from the packet's metadata and the other tests see the frame
//! without it. Host names are not resolved (write addresses).
//!
//! [`exclude_soc`] builds the clause that keeps the agent's own connection
//! to the SOC out of the capture; [`with_exclusions`] adds it to a user's
//! filter.

pub mod bpf;

use std::net::{IpAddr, SocketAddr};

use bpf::{Insn, op};

use crate::decode::LinkType;

/// Bytes kept of an accepted packet (tcpdump's default snap length).
pub const SNAPLEN: u32 = 262_144;

/// A filter that does not compile: what and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("capture filter `{expr}`: {msg}{}", at.as_ref().map(|a| format!(" (at `{a}`)")).unwrap_or_default())]
pub struct FilterError {
    /// The filter as written.
    pub expr: String,
    /// The token where it went wrong.
    pub at: Option<String>,
    /// What is wrong and how to write it.
    pub msg: String,
}

/// A compiled filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// The expression it was compiled from ("" accepts everything).
    pub expr: String,
    /// Classic BPF instructions.
    pub insns: Vec<Insn>,
}

impl Program {
    /// Does the kernel keep this packet?
    pub fn matches(&self, v: &bpf::View<'_>) -> bool {
        bpf::run(&self.insns, v) != 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    Src,
    Dst,
    Any,
    Both,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Ip,
    Ip6,
    Arp,
    Tcp,
    Udp,
    Icmp,
    Icmp6,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Host,
    Net,
    Port,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Proto(Proto),
    Vlan(Option<u16>),
    Addr {
        proto: Option<Proto>,
        dir: Dir,
        net: IpAddr,
        prefix: u8,
    },
    Port {
        proto: Option<Proto>,
        dir: Dir,
        port: u16,
    },
}

/// Compile a tcpdump-style expression for Ethernet frames. Empty (or
/// blank) accepts everything.
pub fn compile(expr: &str) -> Result<Program, FilterError> {
    compile_for(expr, LinkType::Ethernet)
}

/// Compile a tcpdump-style expression for frames of link type `link`:
/// Ethernet (network header at byte 14, the EtherType at 12), or raw IP
/// (tun, WireGuard, PPP interfaces: the IP header at byte 0, the family
/// from its version nibble, no ARP). Empty (or blank) accepts everything.
pub fn compile_for(expr: &str, link: LinkType) -> Result<Program, FilterError> {
    let raw = match link {
        LinkType::Ethernet => false,
        LinkType::RawIp => true,
        other => {
            return Err(FilterError {
                expr: expr.into(),
                at: None,
                msg: format!("filters are compiled for Ethernet and raw-IP links, not {other:?}"),
            });
        }
    };
    let insns = if expr.trim().is_empty() {
        vec![ret(SNAPLEN)]
    } else {
        let ast = Parser::new(expr)?.parse()?;
        let mut g = Gen {
            raw,
            ..Gen::default()
        };
        let (t, f) = (g.label(), g.label());
        g.expr(&ast, t, f);
        g.place(t);
        g.stmt(ret(SNAPLEN));
        g.place(f);
        g.stmt(ret(0));
        g.resolve().map_err(|msg| FilterError {
            expr: expr.into(),
            at: None,
            msg,
        })?
    };
    Ok(Program {
        expr: expr.to_string(),
        insns,
    })
}

/// The clause that excludes a connection to `soc` (the agent's uplink):
/// `not (host ADDR and port PORT)`.
pub fn exclude_soc(soc: SocketAddr) -> String {
    format!("not (host {} and port {})", soc.ip(), soc.port())
}

/// A user's filter (may be empty) with the SOC connections excluded.
pub fn with_exclusions(user: &str, socs: &[SocketAddr]) -> String {
    let mut parts: Vec<String> = Vec::new();
    if !user.trim().is_empty() {
        parts.push(format!("({})", user.trim()));
    }
    parts.extend(socs.iter().map(|s| exclude_soc(*s)));
    parts.join(" and ")
}

// ---------------------------------------------------------------- parser

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Word(String),
    LParen,
    RParen,
    And,
    Or,
    Not,
}

fn lex(s: &str) -> Result<Vec<Tok>, FilterError> {
    let err = |at: &str, msg: &str| FilterError {
        expr: s.into(),
        at: Some(at.into()),
        msg: msg.into(),
    };
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'(' => {
                out.push(Tok::LParen);
                i += 1
            }
            b')' => {
                out.push(Tok::RParen);
                i += 1
            }
            b'!' => {
                out.push(Tok::Not);
                i += 1
            }
            b'&' if b.get(i + 1) == Some(&b'&') => {
                out.push(Tok::And);
                i += 2
            }
            b'|' if b.get(i + 1) == Some(&b'|') => {
                out.push(Tok::Or);
                i += 2
            }
            c if c.is_ascii_alphanumeric() || b".:/-_".contains(&c) => {
                let st = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b".:/-_".contains(&b[i])) {
                    i += 1;
                }
                let w = &s[st..i];
                out.push(match w {
                    "and" => Tok::And,
                    "or" => Tok::Or,
                    "not" => Tok::Not,
                    _ => Tok::Word(w.to_string()),
                });
            }
            _ => {
                let ch = s[i..].chars().next().unwrap_or('?');
                return Err(err(
                    &ch.to_string(),
                    "unexpected character (use and / or / not, parentheses, addresses and numbers)",
                ));
            }
        }
    }
    Ok(out)
}

#[derive(Clone, Copy, Debug)]
struct Quals {
    proto: Option<Proto>,
    dir: Dir,
    kind: Kind,
}

struct Parser {
    src: String,
    toks: Vec<Tok>,
    pos: usize,
    last: Option<Quals>,
}

fn proto_word(w: &str) -> Option<Proto> {
    Some(match w {
        "ip" => Proto::Ip,
        "ip6" => Proto::Ip6,
        "arp" => Proto::Arp,
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        "icmp" => Proto::Icmp,
        "icmp6" => Proto::Icmp6,
        _ => return None,
    })
}

impl Parser {
    fn new(s: &str) -> Result<Parser, FilterError> {
        Ok(Parser {
            src: s.into(),
            toks: lex(s)?,
            pos: 0,
            last: None,
        })
    }

    fn err(&self, msg: impl Into<String>) -> FilterError {
        let at = self.toks.get(self.pos).map(|t| match t {
            Tok::Word(w) => w.clone(),
            Tok::LParen => "(".into(),
            Tok::RParen => ")".into(),
            Tok::And => "and".into(),
            Tok::Or => "or".into(),
            Tok::Not => "not".into(),
        });
        FilterError {
            expr: self.src.clone(),
            at: Some(at.unwrap_or_else(|| "end of filter".into())),
            msg: msg.into(),
        }
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn word(&self) -> Option<&str> {
        match self.peek() {
            Some(Tok::Word(w)) => Some(w),
            _ => None,
        }
    }

    fn parse(mut self) -> Result<Expr, FilterError> {
        let e = self.expr()?;
        if self.pos < self.toks.len() {
            return Err(self.err("expected `and`, `or` or the end of the filter"));
        }
        Ok(e)
    }

    fn expr(&mut self) -> Result<Expr, FilterError> {
        let mut e = self.unary()?;
        loop {
            match self.peek() {
                Some(Tok::And) => {
                    self.pos += 1;
                    let r = self.unary()?;
                    e = Expr::And(Box::new(e), Box::new(r));
                }
                Some(Tok::Or) => {
                    self.pos += 1;
                    let r = self.unary()?;
                    e = Expr::Or(Box::new(e), Box::new(r));
                }
                _ => return Ok(e),
            }
        }
    }

    fn unary(&mut self) -> Result<Expr, FilterError> {
        match self.peek() {
            Some(Tok::Not) => {
                self.pos += 1;
                Ok(Expr::Not(Box::new(self.unary()?)))
            }
            Some(Tok::LParen) => {
                self.pos += 1;
                let e = self.expr()?;
                if self.peek() != Some(&Tok::RParen) {
                    return Err(self.err("missing `)`"));
                }
                self.pos += 1;
                Ok(e)
            }
            Some(Tok::Word(_)) => self.primitive(),
            _ => {
                Err(self
                    .err("expected a primitive (host, net, port, a protocol, vlan), `not` or `(`"))
            }
        }
    }

    fn primitive(&mut self) -> Result<Expr, FilterError> {
        let start = self.pos;
        let mut proto = None;
        let mut dir = None;
        let mut kind = None;
        if let Some(p) = self.word().and_then(proto_word) {
            proto = Some(p);
            self.pos += 1;
        } else if self.word() == Some("vlan") {
            self.pos += 1;
            let id = match self.word().map(|w| w.parse::<u16>()) {
                Some(Ok(n)) if n < 4096 => {
                    self.pos += 1;
                    Some(n)
                }
                Some(Ok(_)) => return Err(self.err("a VLAN id is 0 to 4095")),
                _ => None,
            };
            return Ok(Expr::Vlan(id));
        }
        if matches!(self.word(), Some("src" | "dst")) {
            let first = self.word() == Some("src");
            self.pos += 1;
            dir = Some(if first { Dir::Src } else { Dir::Dst });
            // `src or dst` / `src and dst` as one qualifier.
            if let (Some(op), Some(Tok::Word(w))) = (self.peek(), self.toks.get(self.pos + 1))
                && matches!(op, Tok::And | Tok::Or)
                && (w == "src" || w == "dst")
                && (w == "dst") == first
            {
                dir = Some(if *op == Tok::Or { Dir::Any } else { Dir::Both });
                self.pos += 2;
            }
        }
        match self.word() {
            Some("host") => kind = Some(Kind::Host),
            Some("net") => kind = Some(Kind::Net),
            Some("port") => kind = Some(Kind::Port),
            _ => {}
        }
        if kind.is_some() {
            self.pos += 1;
        }
        let value = self.word().map(str::to_string);
        let qualified = self.pos > start;
        let q = if qualified {
            let Some(_) = value.as_ref().filter(|_| kind.is_some() || dir.is_some()) else {
                // A protocol alone.
                if let (Some(p), None, None) = (proto, dir, kind) {
                    self.last = None;
                    return Ok(Expr::Proto(p));
                }
                return Err(self.err("expected an address, network or port number"));
            };
            Quals {
                proto,
                dir: dir.unwrap_or(Dir::Any),
                kind: kind.unwrap_or(Kind::Host),
            }
        } else {
            // A bare value: the previous primitive's qualifiers.
            match self.last {
                Some(q) => q,
                None => {
                    return Err(self.err(
                        "unknown word: expected host, net, port, src, dst, vlan or a protocol (ip, ip6, arp, tcp, udp, icmp, icmp6)",
                    ));
                }
            }
        };
        let value = value.unwrap_or_default();
        let e = self.value(q, &value)?;
        self.pos += 1;
        self.last = Some(q);
        Ok(e)
    }

    fn value(&self, q: Quals, v: &str) -> Result<Expr, FilterError> {
        match q.kind {
            Kind::Port => {
                if let Some(p) = q.proto.filter(|p| !matches!(p, Proto::Tcp | Proto::Udp)) {
                    return Err(self.err(format!("`port` goes with tcp or udp, not {p:?}")));
                }
                let port = v.parse::<u16>().map_err(|_| {
                    self.err("a port is a number from 0 to 65535 (names are not looked up)")
                })?;
                Ok(Expr::Port {
                    proto: q.proto,
                    dir: q.dir,
                    port,
                })
            }
            Kind::Host | Kind::Net => {
                if let Some(p) = q
                    .proto
                    .filter(|p| !matches!(p, Proto::Ip | Proto::Ip6 | Proto::Arp))
                {
                    return Err(self.err(format!(
                        "`host` / `net` go with ip, ip6 or arp, not {p:?} (write `{} and host ...`)",
                        format!("{p:?}").to_lowercase()
                    )));
                }
                let (a, len) = match v.split_once('/') {
                    Some((a, l)) if q.kind == Kind::Net => (a, Some(l)),
                    Some(_) => {
                        return Err(self.err("a host has no prefix length: write `net ADDR/LEN`"));
                    }
                    None => (v, None),
                };
                let net: IpAddr = a.parse().map_err(|_| {
                    self.err("expected an IPv4 or IPv6 address (host names are not resolved)")
                })?;
                let max = if net.is_ipv4() { 32 } else { 128 };
                let prefix = match len {
                    None => max,
                    Some(l) => l
                        .parse::<u8>()
                        .ok()
                        .filter(|&l| l <= max)
                        .ok_or_else(|| self.err(format!("a prefix length is 0 to {max}")))?,
                };
                match (q.proto, net) {
                    (Some(Proto::Ip6), IpAddr::V4(_))
                    | (Some(Proto::Ip | Proto::Arp), IpAddr::V6(_)) => {
                        return Err(self.err("the address family does not match the protocol"));
                    }
                    _ => {}
                }
                let bits = match net {
                    IpAddr::V4(a) => u32::from(a) as u128,
                    IpAddr::V6(a) => u128::from(a),
                };
                let host_bits = max - prefix;
                if host_bits < 128 && bits & ((1u128 << host_bits) - 1) != 0 && q.kind == Kind::Net
                {
                    return Err(self.err("the network has bits set past its prefix length"));
                }
                Ok(Expr::Addr {
                    proto: q.proto,
                    dir: q.dir,
                    net,
                    prefix,
                })
            }
        }
    }
}

// ------------------------------------------------------- code generation

type Label = usize;

enum Raw {
    Stmt(Insn),
    Jump {
        code: u16,
        k: u32,
        jt: Label,
        jf: Label,
    },
    Goto(Label),
    Place(Label),
}

#[derive(Default)]
struct Gen {
    code: Vec<Raw>,
    labels: usize,
    /// Raw-IP link (tun, WireGuard, PPP): no Ethernet header, the packet
    /// starts with the IP header and its version nibble tells the family.
    raw: bool,
}

fn ret(k: u32) -> Insn {
    Insn {
        code: op::RET | op::K,
        jt: 0,
        jf: 0,
        k,
    }
}

const ETH_IP: u32 = 0x0800;
const ETH_IP6: u32 = 0x86dd;
const ETH_ARP: u32 = 0x0806;
const ETH_RARP: u32 = 0x8035;
/// A family value the raw-IP discriminator (`A & 0xf0`) never takes.
const NEVER: u32 = 0x1_0000;

impl Gen {
    /// Offset of the network header in the frame.
    fn l3(&self) -> u32 {
        if self.raw { 0 } else { 14 }
    }
    /// A = the frame's network family: the EtherType, or on a raw-IP link
    /// the IP version nibble (`0x40`, `0x60`), as libpcap does for DLT_RAW.
    fn ld_family(&mut self) {
        if self.raw {
            self.ld(op::B, op::ABS, 0);
            self.and(0xf0);
        } else {
            self.ld(op::H, op::ABS, 12);
        }
    }
    /// The value [`Gen::ld_family`] leaves for `ethertype` on this link
    /// (ARP never appears on a raw-IP link).
    fn fam(&self, ethertype: u32) -> u32 {
        match (self.raw, ethertype) {
            (false, e) => e,
            (true, ETH_IP) => 0x40,
            (true, ETH_IP6) => 0x60,
            (true, _) => NEVER,
        }
    }
    fn label(&mut self) -> Label {
        self.labels += 1;
        self.labels - 1
    }
    fn place(&mut self, l: Label) {
        self.code.push(Raw::Place(l));
    }
    fn stmt(&mut self, i: Insn) {
        self.code.push(Raw::Stmt(i));
    }
    fn ld(&mut self, size: u16, mode: u16, k: u32) {
        self.stmt(Insn {
            code: op::LD | size | mode,
            jt: 0,
            jf: 0,
            k,
        });
    }
    fn and(&mut self, k: u32) {
        self.stmt(Insn {
            code: op::ALU | op::AND | op::K,
            jt: 0,
            jf: 0,
            k,
        });
    }
    fn jeq(&mut self, k: u32, jt: Label, jf: Label) {
        self.code.push(Raw::Jump {
            code: op::JMP | op::JEQ | op::K,
            k,
            jt,
            jf,
        });
    }
    fn jset(&mut self, k: u32, jt: Label, jf: Label) {
        self.code.push(Raw::Jump {
            code: op::JMP | op::JSET | op::K,
            k,
            jt,
            jf,
        });
    }
    /// `jeq` that falls through to the next instruction when true.
    fn require(&mut self, k: u32, f: Label) {
        let n = self.label();
        self.jeq(k, n, f);
        self.place(n);
    }
    /// A is one of `ks`: to `t`, else `f`.
    fn one_of(&mut self, ks: &[u32], t: Label, f: Label) {
        for (i, &k) in ks.iter().enumerate() {
            if i + 1 == ks.len() {
                self.jeq(k, t, f);
            } else {
                let n = self.label();
                self.jeq(k, t, n);
                self.place(n);
            }
        }
    }

    fn expr(&mut self, e: &Expr, t: Label, f: Label) {
        match e {
            Expr::And(a, b) => {
                let m = self.label();
                self.expr(a, m, f);
                self.place(m);
                self.expr(b, t, f);
            }
            Expr::Or(a, b) => {
                let m = self.label();
                self.expr(a, t, m);
                self.place(m);
                self.expr(b, t, f);
            }
            Expr::Not(a) => self.expr(a, f, t),
            Expr::Proto(p) => self.proto(*p, t, f),
            Expr::Vlan(id) => {
                self.ld(
                    op::W,
                    op::ABS,
                    op::AD_OFF.wrapping_add(op::AD_VLAN_TAG_PRESENT),
                );
                let n = self.label();
                self.jeq(0, f, n);
                self.place(n);
                match id {
                    None => self.code.push(Raw::Goto(t)),
                    Some(id) => {
                        self.ld(op::W, op::ABS, op::AD_OFF.wrapping_add(op::AD_VLAN_TAG));
                        self.and(0x0fff);
                        self.jeq(*id as u32, t, f);
                    }
                }
            }
            Expr::Addr {
                proto,
                dir,
                net,
                prefix,
            } => self.addr(*proto, *dir, *net, *prefix, t, f),
            Expr::Port { proto, dir, port } => self.port(*proto, *dir, *port, t, f),
        }
    }

    fn proto(&mut self, p: Proto, t: Label, f: Label) {
        let l3 = self.l3();
        let (ip, ip6) = (self.fam(ETH_IP), self.fam(ETH_IP6));
        self.ld_family();
        match p {
            Proto::Ip => self.jeq(ip, t, f),
            Proto::Ip6 => self.jeq(ip6, t, f),
            Proto::Arp => self.jeq(self.fam(ETH_ARP), t, f),
            Proto::Icmp => {
                self.require(ip, f);
                self.ld(op::B, op::ABS, l3 + 9);
                self.jeq(1, t, f);
            }
            Proto::Tcp | Proto::Udp | Proto::Icmp6 => {
                let n = match p {
                    Proto::Tcp => 6,
                    Proto::Udp => 17,
                    _ => 58,
                };
                let v6 = self.label();
                if p != Proto::Icmp6 {
                    let v4 = self.label();
                    self.jeq(ip, v4, v6);
                    self.place(v4);
                    self.ld(op::B, op::ABS, l3 + 9);
                    self.jeq(n, t, f);
                }
                self.place(v6);
                self.require(ip6, f);
                self.ld(op::B, op::ABS, l3 + 6);
                let frag = self.label();
                self.jeq(n, t, frag);
                self.place(frag);
                self.require(44, f);
                self.ld(op::B, op::ABS, l3 + 40);
                self.jeq(n, t, f);
            }
        }
    }

    /// Compare words at `src` / `dst` with `words` under `masks`.
    fn words(
        &mut self,
        (src, dst): (u32, u32),
        words: &[u32],
        masks: &[u32],
        dir: Dir,
        t: Label,
        f: Label,
    ) {
        let side = |g: &mut Gen, base: u32, t: Label, f: Label| {
            let used: Vec<usize> = (0..words.len()).filter(|&i| masks[i] != 0).collect();
            if used.is_empty() {
                g.code.push(Raw::Goto(t));
                return;
            }
            for (n, &i) in used.iter().enumerate() {
                g.ld(op::W, op::ABS, base + 4 * i as u32);
                if masks[i] != u32::MAX {
                    g.and(masks[i]);
                }
                if n + 1 == used.len() {
                    g.jeq(words[i] & masks[i], t, f);
                } else {
                    g.require(words[i] & masks[i], f);
                }
            }
        };
        self.directed(dir, (src, dst), t, f, side);
    }

    /// Test the source side, the destination side, either or both with
    /// `side(gen, which, t, f)`.
    fn directed<W: Copy>(
        &mut self,
        dir: Dir,
        (src, dst): (W, W),
        t: Label,
        f: Label,
        side: impl Fn(&mut Gen, W, Label, Label),
    ) {
        match dir {
            Dir::Src => side(self, src, t, f),
            Dir::Dst => side(self, dst, t, f),
            Dir::Any => {
                let d = self.label();
                side(self, src, t, d);
                self.place(d);
                side(self, dst, t, f);
            }
            Dir::Both => {
                let d = self.label();
                side(self, src, d, f);
                self.place(d);
                side(self, dst, t, f);
            }
        }
    }

    fn addr(
        &mut self,
        proto: Option<Proto>,
        dir: Dir,
        net: IpAddr,
        prefix: u8,
        t: Label,
        f: Label,
    ) {
        let l3 = self.l3();
        self.ld_family();
        match net {
            IpAddr::V4(a) => {
                let w = [u32::from(a)];
                let m = [if prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - prefix)
                }];
                let ip = proto.is_none() || proto == Some(Proto::Ip);
                let arp = proto.is_none() || proto == Some(Proto::Arp);
                let (l_ip, l_other) = (self.label(), self.label());
                if ip {
                    self.jeq(self.fam(ETH_IP), l_ip, l_other);
                    self.place(l_ip);
                    self.words((l3 + 12, l3 + 16), &w, &m, dir, t, f);
                }
                self.place(l_other);
                if arp && !self.raw {
                    let (l_arp, l_r) = (self.label(), self.label());
                    self.jeq(ETH_ARP, l_arp, l_r);
                    self.place(l_r);
                    self.jeq(ETH_RARP, l_arp, f);
                    self.place(l_arp);
                    self.words((l3 + 14, l3 + 24), &w, &m, dir, t, f);
                } else {
                    self.code.push(Raw::Goto(f));
                }
            }
            IpAddr::V6(a) => {
                let bits = u128::from(a);
                let mask: u128 = if prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - prefix)
                };
                let w: Vec<u32> = (0..4).map(|i| (bits >> (96 - 32 * i)) as u32).collect();
                let m: Vec<u32> = (0..4).map(|i| (mask >> (96 - 32 * i)) as u32).collect();
                self.require(self.fam(ETH_IP6), f);
                self.words((l3 + 8, l3 + 24), &w, &m, dir, t, f);
            }
        }
    }

    fn port(&mut self, proto: Option<Proto>, dir: Dir, port: u16, t: Label, f: Label) {
        let protos: &[u32] = match proto {
            Some(Proto::Tcp) => &[6],
            Some(Proto::Udp) => &[17],
            _ => &[132, 6, 17],
        };
        let port = port as u32;
        let ports = |g: &mut Gen, src: (u16, u32), dst: (u16, u32), t: Label, f: Label| {
            g.directed(dir, (src, dst), t, f, |g, (mode, k), t, f| {
                g.ld(op::H, mode, k);
                g.jeq(port, t, f);
            });
        };
        let l3 = self.l3();
        let (v6, v4) = (self.label(), self.label());
        self.ld_family();
        self.jeq(self.fam(ETH_IP6), v6, v4);
        self.place(v6);
        self.ld(op::B, op::ABS, l3 + 6);
        let p6 = self.label();
        self.one_of(protos, p6, f);
        self.place(p6);
        ports(self, (op::ABS, l3 + 40), (op::ABS, l3 + 42), t, f);
        self.place(v4);
        self.require(self.fam(ETH_IP), f);
        self.ld(op::B, op::ABS, l3 + 9);
        let p4 = self.label();
        self.one_of(protos, p4, f);
        self.place(p4);
        self.ld(op::H, op::ABS, l3 + 6);
        let unfrag = self.label();
        self.jset(0x1fff, f, unfrag);
        self.place(unfrag);
        self.stmt(Insn {
            code: op::LDX | op::B | op::MSH,
            jt: 0,
            jf: 0,
            k: l3,
        });
        ports(self, (op::IND, l3), (op::IND, l3 + 2), t, f);
    }

    /// Labels to offsets; conditional jumps reach 255 instructions at most.
    fn resolve(self) -> Result<Vec<Insn>, String> {
        let mut at = vec![usize::MAX; self.labels];
        let mut pc = 0;
        for r in &self.code {
            match r {
                Raw::Place(l) => at[*l] = pc,
                _ => pc += 1,
            }
        }
        let mut out = Vec::with_capacity(pc);
        for r in &self.code {
            let here = out.len();
            let rel = |l: Label| -> Result<usize, String> {
                let to = at[l];
                if to == usize::MAX || to <= here {
                    return Err("internal error: a jump goes backwards".into());
                }
                Ok(to - here - 1)
            };
            match r {
                Raw::Place(_) => {}
                Raw::Stmt(i) => out.push(*i),
                Raw::Goto(l) => out.push(Insn {
                    code: op::JMP | op::JA,
                    jt: 0,
                    jf: 0,
                    k: rel(*l)? as u32,
                }),
                Raw::Jump { code, k, jt, jf } => {
                    let (a, b) = (rel(*jt)?, rel(*jf)?);
                    if a > 255 || b > 255 {
                        return Err(
                            "the filter is too long for classic BPF jumps: split it or simplify it"
                                .into(),
                        );
                    }
                    out.push(Insn {
                        code: *code,
                        jt: a as u8,
                        jf: b as u8,
                        k: *k,
                    });
                }
            }
        }
        if out.len() > 4096 {
            return Err("the filter compiles to more than 4096 instructions".into());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_tcpdump;
