//! Application dispatch: the first client bytes of a flow (TLS ClientHello,
//! HTTP request, Stratum), DNS messages, and the names and pool evidence
//! they give. Payload bytes are looked at to classify; only names are kept.

use super::*;

impl Engine {
    pub(super) fn is_pool_name(&self, name: &str) -> bool {
        is_pool_name(&self.pool_suffixes, name)
    }

    pub(super) fn application(&mut self, i: u32, p: &Packet<'_>, from_a: bool) {
        let (sport, dport) = (p.src_port, p.dst_port);
        let dns_port = |x: u16| x == 53 || x == 5353;
        if p.proto == 17 && (dns_port(sport) || dns_port(dport)) {
            self.dns(i, p, p.payload);
            return;
        }
        if p.proto != 6 {
            return;
        }
        if dns_port(sport) || dns_port(dport) {
            // DNS over TCP: one message with its 2-byte length, within one segment.
            if p.payload.len() > 2 {
                let len = u16::from_be_bytes([p.payload[0], p.payload[1]]) as usize;
                if let Some(msg) = p.payload.get(2..2 + len) {
                    self.dns(i, p, msg);
                }
            }
            return;
        }
        let f = self.table.get_mut(i);
        let from_initiator = u8::from(!from_a) == f.initiator;
        if !from_initiator || f.state & state::APP_DONE != 0 || f.app_tries >= APP_TRIES {
            return;
        }
        f.app_tries += 1;
        self.client_bytes(i, p);
    }

    pub(super) fn client_bytes(&mut self, i: u32, p: &Packet<'_>) {
        let max_buf = self.cfg.tls_reassembly_max;
        let max_path = self.cfg.http_path_max;
        let f = self.table.get_mut(i);
        let reassembling = f.app.as_ref().is_some_and(|m| !m.buf.is_empty());
        let mut sni_found: Option<String> = None;
        let mut host_found: Option<String> = None;
        if reassembling {
            let m = f.app.get_or_insert_default();
            if p.tcp_seq != m.next_seq {
                // Out of order or a retransmission: give up rather than guess.
                m.buf = Vec::new();
                f.state |= state::APP_DONE;
                self.stats.tls_incomplete += 1;
                return;
            }
            let room = max_buf.saturating_sub(m.buf.len());
            let take = p.payload.len().min(room);
            m.buf.extend_from_slice(&p.payload[..take]);
            m.next_seq = m.next_seq.wrapping_add(take as u32);
            let buf = std::mem::take(&mut m.buf);
            match app::parse_client_hello(&buf) {
                Ok(ch) => {
                    set_hello(m, &ch);
                    sni_found = m.tls_sni.clone();
                    f.state |= state::APP_DONE;
                }
                Err(AppError::Incomplete) if buf.len() < max_buf && f.app_tries < APP_TRIES => {
                    m.buf = buf;
                }
                Err(_) => {
                    f.state |= state::APP_DONE;
                    self.stats.tls_incomplete += 1;
                }
            }
        } else if app::looks_like_tls(p.payload) {
            match app::parse_client_hello(p.payload) {
                Ok(ch) => {
                    let m = f.app.get_or_insert_default();
                    set_hello(m, &ch);
                    sni_found = m.tls_sni.clone();
                    f.state |= state::APP_DONE;
                }
                Err(AppError::Incomplete) if p.payload.len() < max_buf => {
                    let m = f.app.get_or_insert_default();
                    m.buf = p.payload.to_vec();
                    m.next_seq = p.tcp_seq.wrapping_add(p.payload.len() as u32);
                }
                Err(_) => {
                    f.state |= state::APP_DONE;
                    self.stats.tls_incomplete += 1;
                }
            }
        } else if let Ok(h) = app::parse_http_request(p.payload, max_path) {
            let m = f.app.get_or_insert_default();
            m.http_method = Some(text(h.method));
            m.http_path = Some(text(h.path));
            m.http_host = h.host.map(text);
            f.state |= state::APP_DONE;
            host_found = m.http_host.as_deref().map(host_name);
        } else if let Some(method) = app::parse_stratum(p.payload) {
            let m = f.app.get_or_insert_default();
            if !m.stratum_methods.contains(&method) {
                m.stratum_methods.push(method);
            }
            let (client, server, port) = self.endpoints(i);
            self.agg.mining_match(MiningMatch {
                client,
                server,
                port,
                via: MiningVia::Stratum,
                what: method.to_string(),
            });
        }
        let named = [
            (sni_found.as_deref().map(host_name), MiningVia::Sni),
            (host_found, MiningVia::HttpHost),
        ];
        for (name, via) in named {
            if let Some(name) = name
                && self.is_pool_name(&name)
            {
                let (client, server, port) = self.endpoints(i);
                self.agg.mining_match(MiningMatch {
                    client,
                    server,
                    port,
                    via,
                    what: name,
                });
            }
        }
    }

    pub(super) fn endpoints(&self, i: u32) -> (IpAddr, IpAddr, u16) {
        let f = self.table.get(i);
        let k = &f.key;
        if f.a_initiated() {
            (addr_ip(&k.a), addr_ip(&k.b), k.b_port)
        } else {
            (addr_ip(&k.b), addr_ip(&k.a), k.a_port)
        }
    }

    pub(super) fn dns(&mut self, i: u32, p: &Packet<'_>, msg: &[u8]) {
        let Engine {
            table,
            agg,
            pool_suffixes,
            pools,
            stats,
            now_ns,
            ..
        } = self;
        let f = table.get_mut(i);
        let is_pool = |name: &str| is_pool_name(pool_suffixes, name);
        let mut pool_question: Option<String> = None;
        // The pool name of the answer: its question, or a name of its CNAME
        // chain; and every address the answer gave, with its TTL.
        let mut pool_answer: Option<String> = None;
        let mut addrs = [([0u8; 16], 0u32); app::MAX_DNS_ANSWERS];
        let mut n_addrs = 0;
        let watching = !pool_suffixes.is_empty();
        let mut meta = f.app.take().unwrap_or_default();
        let res = app::parse_dns(msg, &mut |r| match r.section {
            DnsSection::Question => {
                let name = r.name.as_str();
                if is_pool(name) && pool_question.is_none() {
                    pool_question = Some(name.to_string());
                }
                if meta.dns_query.is_none() {
                    meta.dns_query = Some(name.to_string());
                    meta.dns_qtype = Some(r.rtype);
                }
            }
            DnsSection::Answer => {
                if meta.dns_answers.len() < MAX_FLOW_ANSWERS {
                    let v = match (r.addr, r.target) {
                        (Some(a), _) => format!(
                            "{} {}",
                            owlet_proto::dns_type_name(r.rtype.into()),
                            addr_ip(&a)
                        ),
                        (None, Some(t)) => format!(
                            "{} {}",
                            owlet_proto::dns_type_name(r.rtype.into()),
                            t.as_str()
                        ),
                        _ => format!(
                            "{} {}",
                            owlet_proto::dns_type_name(r.rtype.into()),
                            r.name.as_str()
                        ),
                    };
                    meta.dns_answers.push(v);
                }
                if !watching {
                    return;
                }
                if pool_answer.is_none() {
                    let owner = r.name.as_str();
                    if is_pool(owner) {
                        pool_answer = Some(owner.to_string());
                    } else if let Some(t) = r.target.filter(|t| is_pool(t.as_str())) {
                        pool_answer = Some(t.as_str().to_string());
                    }
                }
                if let Some(a) = r.addr
                    && let Some(slot) = addrs.get_mut(n_addrs)
                {
                    *slot = (a, r.ttl);
                    n_addrs += 1;
                }
            }
        });
        match res {
            Ok(h) => {
                if h.response {
                    meta.dns_rcode.get_or_insert(h.rcode);
                    if let Some(name) = pool_question.or(pool_answer)
                        && h.rcode == 0
                    {
                        // The client is the one the answer goes to.
                        let learned = pools.learn(p.dst, &addrs[..n_addrs], &name, *now_ns);
                        stats.pool_bindings += learned.bound;
                        stats.pool_bindings_evicted += learned.evicted;
                    }
                } else {
                    // Count every query (not only the flow's first) for the summary.
                    let _ = app::parse_dns(msg, &mut |r| {
                        if r.section == DnsSection::Question {
                            agg.dns_names.add(&r.name.as_str().to_string(), 1, 0);
                        }
                    });
                    if let Some(q) = pool_question {
                        agg.mining_match(MiningMatch {
                            client: addr_ip(&p.src),
                            server: addr_ip(&p.dst),
                            port: p.dst_port,
                            via: MiningVia::Dns,
                            what: q,
                        });
                    }
                }
            }
            Err(_) => stats.dns_malformed += 1,
        }
        if *meta != AppMeta::default() {
            f.app = Some(meta);
        }
    }
}

pub(super) fn set_hello(m: &mut AppMeta, ch: &app::ClientHello<'_>) {
    m.tls_sni = ch.sni.map(text);
    m.tls_alpn = ch.alpn.iter().flatten().map(|a| text(a)).collect();
}

/// Printable text of a short protocol field: non-printable bytes become `?`.
pub(super) fn text(b: &[u8]) -> String {
    b.iter()
        .map(|&c| {
            if c.is_ascii_graphic() || c == b' ' {
                c as char
            } else {
                '?'
            }
        })
        .collect()
}
