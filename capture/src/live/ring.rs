//! The only module of the crate with `unsafe`: the AF_PACKET socket
//! (socket, setsockopt, bind, poll, getsockopt), interface lookups by name
//! (ioctl on a datagram socket: index, flags, hardware type) and the
//! TPACKET_V3 memory-mapped receive ring (mmap, block ownership, munmap).
//!
//! Invariants this module relies on, each with a unit test below:
//! - **block ownership**: the kernel hands a block to user space by setting
//!   `TP_STATUS_USER` in the block's status word (with a release barrier);
//!   we read the status with an acquire load and only then look at the
//!   block's bytes, and give it back by storing `TP_STATUS_KERNEL` with a
//!   release store after the last read ([`Ring::with_next_block`]). The
//!   kernel does not write a block it has handed over, so the slice we
//!   build over it is not mutated while it lives;
//! - **bounds**: every offset and length read from the ring (first packet,
//!   next packet, MAC offset, snap length, block length, packet count) is
//!   checked against the block before any slice is taken
//!   ([`walk_block`], safe code over a `&[u8]`); a lying header ends the
//!   walk of that block and is counted, never read past;
//! - **blocks in order**: the kernel fills blocks round-robin, so the next
//!   block to read is always `(current + 1) % block_nr`;
//! - **mapping lifetime**: the mapping lives as long as the [`Ring`]; slices
//!   into it never outlive the closure they are lent to.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

// Kernel ABI constants (linux/if_packet.h), not all of which libc exports.
const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
const PACKET_RX_RING: libc::c_int = 5;
const PACKET_STATISTICS: libc::c_int = 6;
const PACKET_VERSION: libc::c_int = 10;
const PACKET_FANOUT: libc::c_int = 18;
const PACKET_MR_PROMISC: libc::c_ushort = 1;
const TPACKET_V3: libc::c_int = 2;
/// Fanout mode: by flow hash (both directions of a flow hash alike).
pub const PACKET_FANOUT_HASH: u32 = 0;
/// Fanout flag: reassemble IP fragments before hashing.
pub const PACKET_FANOUT_FLAG_DEFRAG: u32 = 0x8000;
/// Fanout flag (Linux 4.12+): the kernel picks a group id no other group
/// in the namespace uses (the id passed must be 0).
const PACKET_FANOUT_FLAG_UNIQUEID: u32 = 0x2000;
/// Block / frame status: owned by the kernel.
pub const TP_STATUS_KERNEL: u32 = 0;
/// Block status: handed to user space.
pub const TP_STATUS_USER: u32 = 1;
/// Packet status: `tp_vlan_tci` holds the tag the kernel took off.
pub const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
/// Packet status: `tp_vlan_tpid` is valid.
pub const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;

/// Offsets in `struct tpacket_block_desc` (version, offset_to_priv, then
/// `tpacket_hdr_v1`).
pub const BLK_STATUS: usize = 8;
const BLK_NUM_PKTS: usize = 12;
const BLK_FIRST: usize = 16;
const BLK_LEN: usize = 20;
/// Size of the block descriptor we read (up to `ts_last_pkt`).
pub const BLK_HDR: usize = 48;
/// Size of `struct tpacket3_hdr` fields we read.
pub const PKT_HDR: usize = 40;

/// One BPF instruction (`struct sock_filter`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u16,
    /// Jump offset if true.
    pub jt: u8,
    /// Jump offset if false.
    pub jf: u8,
    /// Constant.
    pub k: u32,
}

/// `struct tpacket_req3`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct TpacketReq3 {
    tp_block_size: u32,
    tp_block_nr: u32,
    tp_frame_size: u32,
    tp_frame_nr: u32,
    tp_retire_blk_tov: u32,
    tp_sizeof_priv: u32,
    tp_feature_req_word: u32,
}

/// `struct tpacket_stats_v3`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct TpacketStatsV3 {
    tp_packets: u32,
    tp_drops: u32,
    tp_freeze_q_cnt: u32,
}

/// `struct packet_mreq`.
#[repr(C)]
struct PacketMreq {
    mr_ifindex: libc::c_int,
    mr_type: libc::c_ushort,
    mr_alen: libc::c_ushort,
    mr_address: [u8; 8],
}

/// Kernel counters since the last read (PACKET_STATISTICS resets them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Packets that passed the filter (received + dropped).
    pub packets: u32,
    /// Packets dropped because the ring was full.
    pub drops: u32,
    /// Times the ring froze (every block was in user space).
    pub freezes: u32,
}

/// Types the kernel may fill byte by byte (socket option values): plain
/// integers and C structs of them, for which any bytes are a valid value.
trait Plain: Default {}
impl Plain for libc::c_int {}
impl Plain for u32 {}
impl Plain for TpacketStatsV3 {}

/// An AF_PACKET socket.
#[derive(Debug)]
pub struct Socket {
    fd: OwnedFd,
}

/// What [`Socket::poll`] saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// A block may be ready.
    pub readable: bool,
    /// An error is pending ([`Socket::take_error`] reads and clears it).
    pub error: bool,
}

/// An interface as the kernel describes it now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Nic {
    /// Its index (a new one when the interface is deleted and made again).
    pub index: u32,
    /// IFF_UP: administratively up.
    pub up: bool,
    /// IFF_RUNNING: up with a carrier (operationally up).
    pub running: bool,
    /// Hardware type (ARPHRD_*): Ethernet, loopback, none (tun, WireGuard), PPP...
    pub hw_type: u16,
}

/// Interface lookups by name, answered for the network namespace this
/// was opened in (not the one of the thread that asks, nor the one
/// /sys was mounted from).
#[derive(Debug)]
pub struct Control {
    fd: OwnedFd,
}

impl Control {
    /// A datagram socket to ask on (AF_UNIX: needs no capability).
    pub fn open() -> io::Result<Control> {
        Ok(Control {
            fd: socket(libc::AF_UNIX, libc::SOCK_DGRAM)?,
        })
    }

    fn ioctl(&self, name: &str, request: libc::c_ulong) -> io::Result<Option<libc::ifreq>> {
        // A name that cannot be an interface's (too long, a NUL) names none.
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
            return Ok(None);
        }
        // SAFETY: ifreq is plain old data; all-zero is a valid value.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        // SAFETY: `ifr` is a valid, NUL-terminated (zeroed past the name)
        // ifreq the kernel reads and writes in place for these requests.
        let rc = unsafe { libc::ioctl(self.fd.as_raw_fd(), request as _, &mut ifr) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENODEV) {
                return Ok(None);
            }
            return Err(e);
        }
        Ok(Some(ifr))
    }

    /// The interface called `name`; `None` when there is none.
    pub fn lookup(&self, name: &str) -> io::Result<Option<Nic>> {
        let Some(i) = self.ioctl(name, libc::SIOCGIFINDEX)? else {
            return Ok(None);
        };
        let Some(f) = self.ioctl(name, libc::SIOCGIFFLAGS)? else {
            return Ok(None);
        };
        let Some(h) = self.ioctl(name, libc::SIOCGIFHWADDR)? else {
            return Ok(None);
        };
        // SAFETY: each union member read is the one its request filled.
        let (index, flags, hw_type) = unsafe {
            (
                i.ifr_ifru.ifru_ifindex,
                f.ifr_ifru.ifru_flags as u16 as libc::c_int,
                h.ifr_ifru.ifru_hwaddr.sa_family,
            )
        };
        Ok(Some(Nic {
            index: index as u32,
            up: flags & libc::IFF_UP != 0,
            running: flags & libc::IFF_RUNNING != 0,
            hw_type,
        }))
    }
}

/// A new socket (close-on-exec, protocol 0) owned by one OwnedFd.
fn socket(domain: libc::c_int, ty: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers; the result is checked below.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, 0) };
    check(fd)?;
    // SAFETY: `fd` is a fresh, valid descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl Socket {
    /// A raw packet socket with protocol 0: it receives nothing until
    /// [`Socket::bind`] names a protocol, so the ring and the filter can
    /// be set up first (no packet escapes them).
    pub fn open() -> io::Result<Socket> {
        Ok(Socket {
            fd: socket(libc::AF_PACKET, libc::SOCK_RAW)?,
        })
    }

    fn setsockopt<T>(&self, level: libc::c_int, name: libc::c_int, v: &T) -> io::Result<()> {
        // SAFETY: `v` is a valid, initialised `T` for the duration of the
        // call and the length passed is exactly its size; the kernel only
        // reads it.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (v as *const T).cast(),
                std::mem::size_of::<T>() as libc::socklen_t,
            )
        };
        check(rc)
    }

    /// Read socket option `name` at `level` as a `T`.
    fn getsockopt<T: Plain>(&self, level: libc::c_int, name: libc::c_int) -> io::Result<T> {
        let mut v = T::default();
        let mut len = std::mem::size_of::<T>() as libc::socklen_t;
        // SAFETY: `v` is a writable, initialised `T` and `len` its size;
        // the kernel writes at most `len` bytes, and any bytes are a valid
        // `T` (`Plain`).
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (&mut v as *mut T).cast(),
                &mut len,
            )
        };
        check(rc)?;
        Ok(v)
    }

    /// Select TPACKET_V3 (before the ring is set).
    pub fn set_v3(&self) -> io::Result<()> {
        self.setsockopt(libc::SOL_PACKET, PACKET_VERSION, &TPACKET_V3)
    }

    /// Attach a classic BPF program (replaces any previous one).
    pub fn attach_filter(&self, prog: &[Insn]) -> io::Result<()> {
        let mut raw: Vec<libc::sock_filter> = prog
            .iter()
            .map(|i| libc::sock_filter {
                code: i.code,
                jt: i.jt,
                jf: i.jf,
                k: i.k,
            })
            .collect();
        let fprog = libc::sock_fprog {
            len: raw.len() as libc::c_ushort,
            filter: raw.as_mut_ptr(),
        };
        // `raw` outlives the call below; the kernel copies the program.
        let r = self.setsockopt(libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog);
        drop(raw);
        r
    }

    /// Bind to `ifindex` for every protocol: from here on packets flow.
    pub fn bind(&self, ifindex: u32) -> io::Result<()> {
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sa.sll_ifindex = ifindex as i32;
        // SAFETY: `sa` is a valid sockaddr_ll and the length is its size.
        let rc = unsafe {
            libc::bind(
                self.fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        check(rc)
    }

    /// The interface index this socket is bound to; -1 once that
    /// interface was deleted (the kernel unbinds its sockets for good).
    pub fn bound_index(&self) -> io::Result<i32> {
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: `sa` is a writable sockaddr_ll and `len` its size; the
        // kernel writes at most `len` bytes and updates `len`.
        let rc = unsafe {
            libc::getsockname(
                self.fd.as_raw_fd(),
                (&mut sa as *mut libc::sockaddr_ll).cast(),
                &mut len,
            )
        };
        check(rc)?;
        Ok(sa.sll_ifindex)
    }

    /// Join fanout group `id` (flow hash, fragments reassembled for the
    /// hash). A group of that id made by another program with the same
    /// mode is joined silently: use it only for an id read back from
    /// [`Socket::create_fanout`].
    pub fn join_fanout(&self, id: u16) -> io::Result<()> {
        let arg: u32 = id as u32 | ((PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG) << 16);
        self.setsockopt(libc::SOL_PACKET, PACKET_FANOUT, &arg)
    }

    /// Create a new fanout group (same mode as [`Socket::join_fanout`])
    /// whose id the kernel picks among the unused ones, and return that id
    /// for the other sockets to join. Linux 4.12 or later; older kernels
    /// answer EINVAL.
    pub fn create_fanout(&self) -> io::Result<u16> {
        let mode = PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG | PACKET_FANOUT_FLAG_UNIQUEID;
        self.setsockopt(libc::SOL_PACKET, PACKET_FANOUT, &(mode << 16))?;
        self.fanout_id()?
            .ok_or_else(|| io::Error::other("the kernel made a fanout group but names none"))
    }

    /// The fanout group this socket is in, if any.
    pub fn fanout_id(&self) -> io::Result<Option<u16>> {
        let v: u32 = self.getsockopt(libc::SOL_PACKET, PACKET_FANOUT)?;
        // id in the low 16 bits, mode and flags above; 0 when in no group.
        Ok((v != 0).then_some(v as u16))
    }

    /// Promiscuous mode while this socket lives (needs CAP_NET_ADMIN).
    pub fn set_promiscuous(&self, ifindex: u32) -> io::Result<()> {
        let m = PacketMreq {
            mr_ifindex: ifindex as i32,
            mr_type: PACKET_MR_PROMISC,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        self.setsockopt(libc::SOL_PACKET, PACKET_ADD_MEMBERSHIP, &m)
    }

    /// Read and reset the kernel's counters.
    pub fn statistics(&self) -> io::Result<KernelStats> {
        let s: TpacketStatsV3 = self.getsockopt(libc::SOL_PACKET, PACKET_STATISTICS)?;
        Ok(KernelStats {
            packets: s.tp_packets,
            drops: s.tp_drops,
            freezes: s.tp_freeze_q_cnt,
        })
    }

    /// Wait until a block may be ready or an error is pending, at most
    /// `timeout_ms`; says which (a signal is a quiet return).
    pub fn poll(&self, timeout_ms: i32) -> io::Result<Ready> {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, count 1.
        let rc = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(Ready::default());
            }
            return Err(e);
        }
        Ok(Ready {
            readable: p.revents & libc::POLLIN != 0,
            error: p.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0,
        })
    }

    /// Read and clear the socket's pending error (SO_ERROR). The kernel
    /// sets ENETDOWN when the interface goes down or away; until it is
    /// read, every poll returns POLLERR at once.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        let v: libc::c_int = self.getsockopt(libc::SOL_SOCKET, libc::SO_ERROR)?;
        Ok((v != 0).then(|| io::Error::from_raw_os_error(v)))
    }

    /// Set a TPACKET_V3 ring of `block_nr` blocks of `block_size` bytes
    /// (a multiple of the page size) and map it.
    pub fn rx_ring(&self, block_size: u32, block_nr: u32, retire_ms: u32) -> io::Result<Ring> {
        let frame_size = 2048u32;
        let req = TpacketReq3 {
            tp_block_size: block_size,
            tp_block_nr: block_nr,
            tp_frame_size: frame_size,
            tp_frame_nr: (block_size / frame_size) * block_nr,
            tp_retire_blk_tov: retire_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        self.setsockopt(libc::SOL_PACKET, PACKET_RX_RING, &req)?;
        let len = block_size as usize * block_nr as usize;
        // SAFETY: mapping the ring the kernel just allocated for this
        // socket, shared, at a kernel-chosen address; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ring::from_mapping(p.cast(), block_size as usize, block_nr as usize)
    }
}

/// A mapped TPACKET_V3 ring (or, in tests, an anonymous mapping laid out
/// like one).
#[derive(Debug)]
pub struct Ring {
    base: NonNull<u8>,
    block_size: usize,
    block_nr: usize,
    next: usize,
}

// SAFETY: the ring is a plain memory mapping owned by this value; nothing
// ties it to the thread that created it.
unsafe impl Send for Ring {}

impl Ring {
    fn from_mapping(p: *mut u8, block_size: usize, block_nr: usize) -> io::Result<Ring> {
        let base = NonNull::new(p).ok_or_else(|| io::Error::other("mmap returned null"))?;
        if block_size < BLK_HDR || block_nr == 0 || !block_size.is_multiple_of(8) {
            return Err(io::Error::other("ring geometry is invalid"));
        }
        Ok(Ring {
            base,
            block_size,
            block_nr,
            next: 0,
        })
    }

    /// An anonymous mapping laid out like a ring, all blocks owned by the
    /// "kernel" (tests drive the handshake by hand).
    #[cfg(test)]
    fn anonymous(block_size: usize, block_nr: usize) -> Ring {
        // SAFETY: a private anonymous mapping; checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                block_size * block_nr,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        Ring::from_mapping(p.cast(), block_size, block_nr).expect("geometry")
    }

    fn status(&self, block: usize) -> &AtomicU32 {
        debug_assert!(block < self.block_nr);
        // SAFETY: `block < block_nr`, so the status word lies inside the
        // mapping (block_size >= BLK_HDR); it is 4-byte aligned (blocks are
        // page-aligned, BLK_STATUS is 8); the kernel and we only access it
        // atomically, and the reference lives no longer than `self`.
        unsafe {
            AtomicU32::from_ptr(
                self.base
                    .as_ptr()
                    .add(block * self.block_size + BLK_STATUS)
                    .cast(),
            )
        }
    }

    /// Index of the block read next.
    #[cfg(test)]
    fn next_block(&self) -> usize {
        self.next
    }

    /// If the next block is in user space, lend its bytes to `f`, then
    /// hand it back to the kernel and move on. `None`: still the kernel's.
    pub fn with_next_block<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let st = self.status(self.next);
        if st.load(Ordering::Acquire) & TP_STATUS_USER == 0 {
            return None;
        }
        // SAFETY: the acquire load above saw TP_STATUS_USER: the kernel has
        // finished the block and will not write it until we store
        // TP_STATUS_KERNEL below; the range is inside the mapping. The
        // slice is only lent to `f` and dropped before the release store.
        let block = unsafe {
            std::slice::from_raw_parts(
                self.base.as_ptr().add(self.next * self.block_size),
                self.block_size,
            )
        };
        let r = f(block);
        st.store(TP_STATUS_KERNEL, Ordering::Release);
        self.next = (self.next + 1) % self.block_nr;
        Some(r)
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping this Ring owns; no slice
        // into it outlives `with_next_block`.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.block_size * self.block_nr);
        }
    }
}

/// One packet of a block, as the ring describes it.
#[derive(Debug, PartialEq, Eq)]
pub struct RingPacket<'a> {
    /// Captured bytes (from the MAC header).
    pub data: &'a [u8],
    /// Length on the wire (without a tag the kernel took off).
    pub wire_len: u32,
    /// Kernel timestamp, ns since the epoch.
    pub ts_ns: u64,
    /// The VLAN tag the kernel took off (TCI, TPID).
    pub vlan: Option<(u16, u16)>,
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_ne_bytes([s[0], s[1]]))
}

/// Walk the packets of a block. Every offset is checked against the block
/// (and against `blk_len`); returns the packets handed to `f` and whether
/// the block's header lied (the walk stops there).
pub fn walk_block(block: &[u8], mut f: impl FnMut(RingPacket<'_>)) -> (u32, bool) {
    let (Some(num), Some(first), Some(blk_len)) = (
        u32_at(block, BLK_NUM_PKTS),
        u32_at(block, BLK_FIRST),
        u32_at(block, BLK_LEN),
    ) else {
        return (0, true);
    };
    let end = (blk_len as usize).min(block.len());
    if (blk_len as usize) > block.len() {
        return (0, true);
    }
    let mut off = first as usize;
    let mut seen = 0u32;
    while seen < num {
        if off < BLK_HDR || off.checked_add(PKT_HDR).is_none_or(|e| e > end) {
            return (seen, true);
        }
        let h = &block[off..off + PKT_HDR];
        let (Some(next), Some(sec), Some(nsec), Some(snap), Some(len), Some(status), Some(mac)) = (
            u32_at(h, 0),
            u32_at(h, 4),
            u32_at(h, 8),
            u32_at(h, 12),
            u32_at(h, 16),
            u32_at(h, 20),
            u16_at(h, 24),
        ) else {
            return (seen, true);
        };
        let start = off + mac as usize;
        let Some(data) = start
            .checked_add(snap as usize)
            .filter(|&e| e <= end)
            .and_then(|e| block.get(start..e))
        else {
            return (seen, true);
        };
        let vlan = if status & TP_STATUS_VLAN_VALID != 0 {
            let tci = u32_at(h, 32).unwrap_or(0) as u16;
            let tpid = if status & TP_STATUS_VLAN_TPID_VALID != 0 {
                u16_at(h, 36).unwrap_or(0x8100)
            } else {
                0x8100
            };
            Some((tci, tpid))
        } else {
            None
        };
        f(RingPacket {
            data,
            wire_len: len,
            ts_ns: sec as u64 * 1_000_000_000 + nsec as u64,
            vlan,
        });
        seen += 1;
        if seen < num {
            if next == 0 {
                return (seen, true);
            }
            off = match off.checked_add(next as usize) {
                Some(o) => o,
                None => return (seen, true),
            };
        }
    }
    (seen, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lay out a block as the kernel does: header, then packets each with
    /// a 48-byte tpacket3_hdr, MAC at offset 66 (hdr + sockaddr_ll pad).
    fn block(size: usize, pkts: &[&[u8]]) -> Vec<u8> {
        let mut b = vec![0u8; size];
        let put =
            |b: &mut Vec<u8>, off: usize, v: u32| b[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        put(&mut b, BLK_STATUS, TP_STATUS_USER);
        put(&mut b, BLK_NUM_PKTS, pkts.len() as u32);
        put(&mut b, BLK_FIRST, BLK_HDR as u32);
        let mut off = BLK_HDR;
        for (i, p) in pkts.iter().enumerate() {
            let mac = 66usize;
            let total = (mac + p.len()).next_multiple_of(16);
            let next = if i + 1 == pkts.len() { 0 } else { total as u32 };
            put(&mut b, off, next);
            put(&mut b, off + 4, 1_700_000_000 + i as u32);
            put(&mut b, off + 8, 5);
            put(&mut b, off + 12, p.len() as u32);
            put(&mut b, off + 16, p.len() as u32 + 10);
            b[off + 24..off + 26].copy_from_slice(&(mac as u16).to_ne_bytes());
            b[off + mac..off + mac + p.len()].copy_from_slice(p);
            off += total;
        }
        put(&mut b, BLK_LEN, off as u32);
        b
    }

    type Walked = (Vec<(Vec<u8>, u32, u64)>, u32, bool);

    fn collect(b: &[u8]) -> Walked {
        let mut v = Vec::new();
        let (n, bad) = walk_block(b, |p| v.push((p.data.to_vec(), p.wire_len, p.ts_ns)));
        (v, n, bad)
    }

    #[test]
    fn walks_a_well_formed_block() {
        let b = block(4096, &[b"first packet", b"second", &[7u8; 100]]);
        let (v, n, bad) = collect(&b);
        assert!(!bad);
        assert_eq!(n, 3);
        assert_eq!(
            v[0],
            (b"first packet".to_vec(), 22, 1_700_000_000_000_000_005)
        );
        assert_eq!(v[1].0, b"second");
        assert_eq!(v[2].0, vec![7u8; 100]);
    }

    #[test]
    fn first_packet_offset_outside_the_block_is_refused() {
        let mut b = block(4096, &[b"x"]);
        b[BLK_FIRST..BLK_FIRST + 4].copy_from_slice(&5000u32.to_ne_bytes());
        assert_eq!(collect(&b).1..=0, 0..=0);
        assert!(collect(&b).2);
        // Inside the descriptor itself: refused too.
        b[BLK_FIRST..BLK_FIRST + 4].copy_from_slice(&4u32.to_ne_bytes());
        assert!(collect(&b).2);
    }

    #[test]
    fn snap_length_past_the_block_is_refused() {
        let mut b = block(4096, &[b"abc", b"def"]);
        let off = BLK_HDR;
        b[off + 12..off + 16].copy_from_slice(&u32::MAX.to_ne_bytes());
        let (v, n, bad) = collect(&b);
        assert!(bad);
        assert_eq!(n, 0);
        assert!(v.is_empty());
    }

    #[test]
    fn mac_offset_past_the_block_is_refused() {
        let mut b = block(4096, &[b"abc"]);
        b[BLK_HDR + 24..BLK_HDR + 26].copy_from_slice(&u16::MAX.to_ne_bytes());
        assert_eq!(collect(&b).1, 0);
        assert!(collect(&b).2);
    }

    #[test]
    fn next_offset_and_packet_count_that_lie_stop_the_walk() {
        // Count says 5, the chain has 2 (next = 0 on the second).
        let mut b = block(4096, &[b"one", b"two"]);
        b[BLK_NUM_PKTS..BLK_NUM_PKTS + 4].copy_from_slice(&5u32.to_ne_bytes());
        let (v, n, bad) = collect(&b);
        assert_eq!((v.len(), n, bad), (2, 2, true));
        // A next offset past the block.
        let mut b = block(4096, &[b"one", b"two"]);
        b[BLK_HDR..BLK_HDR + 4].copy_from_slice(&4000u32.to_ne_bytes());
        let (v, _, bad) = collect(&b);
        assert_eq!((v.len(), bad), (1, true));
    }

    #[test]
    fn block_length_larger_than_the_block_is_refused() {
        let mut b = block(4096, &[b"one"]);
        b[BLK_LEN..BLK_LEN + 4].copy_from_slice(&8192u32.to_ne_bytes());
        assert_eq!(collect(&b), (vec![], 0, true));
        // A packet that ends past blk_len (but inside the block) too.
        let mut b = block(4096, &[b"one"]);
        b[BLK_LEN..BLK_LEN + 4].copy_from_slice(&(BLK_HDR as u32 + 50).to_ne_bytes());
        assert!(collect(&b).2);
    }

    #[test]
    fn vlan_tag_taken_off_by_the_kernel_is_reported() {
        let mut b = block(4096, &[b"abc"]);
        let st = TP_STATUS_VLAN_VALID | TP_STATUS_VLAN_TPID_VALID;
        b[BLK_HDR + 20..BLK_HDR + 24].copy_from_slice(&st.to_ne_bytes());
        b[BLK_HDR + 32..BLK_HDR + 36].copy_from_slice(&100u32.to_ne_bytes());
        b[BLK_HDR + 36..BLK_HDR + 38].copy_from_slice(&0x88a8u16.to_ne_bytes());
        let mut got = None;
        walk_block(&b, |p| got = p.vlan);
        assert_eq!(got, Some((100, 0x88a8)));
    }

    #[test]
    fn block_ownership_handshake() {
        let mut r = Ring::anonymous(4096, 3);
        // Every block is the kernel's: nothing to read, the cursor stays.
        assert!(r.with_next_block(|_| ()).is_none());
        assert_eq!(r.next_block(), 0);
        // The "kernel" hands block 0 over.
        r.status(0).store(TP_STATUS_USER, Ordering::Release);
        assert_eq!(r.with_next_block(|b| b.len()), Some(4096));
        // It went back to the kernel and the cursor moved to block 1.
        assert_eq!(r.status(0).load(Ordering::Acquire), TP_STATUS_KERNEL);
        assert_eq!(r.next_block(), 1);
        // Block 2 ready but block 1 not: blocks are read in order only.
        r.status(2).store(TP_STATUS_USER, Ordering::Release);
        assert!(r.with_next_block(|_| ()).is_none());
        r.status(1).store(TP_STATUS_USER, Ordering::Release);
        assert!(r.with_next_block(|_| ()).is_some());
        assert!(r.with_next_block(|_| ()).is_some());
        // Wrapped around to block 0.
        assert_eq!(r.next_block(), 0);
        assert!(r.with_next_block(|_| ()).is_none());
    }

    #[test]
    fn lent_block_is_the_ring_memory_at_the_cursor() {
        let mut r = Ring::anonymous(4096, 2);
        r.status(0).store(TP_STATUS_USER, Ordering::Release);
        r.status(1).store(TP_STATUS_USER, Ordering::Release);
        let a = r.with_next_block(|b| b.as_ptr() as usize).unwrap();
        let b = r.with_next_block(|b| b.as_ptr() as usize).unwrap();
        assert_eq!(b - a, 4096);
    }

    #[test]
    fn interface_lookups_name_index_flags_and_hardware_type() {
        let c = Control::open().unwrap();
        let lo = c.lookup("lo").unwrap().expect("lo exists");
        assert!(lo.index > 0 && lo.up && lo.running, "{lo:?}");
        assert_eq!(lo.hw_type, libc::ARPHRD_LOOPBACK);
        assert_eq!(c.lookup("owlet-none0").unwrap(), None);
        assert_eq!(c.lookup("").unwrap(), None);
        assert_eq!(c.lookup("0123456789abcdefg").unwrap(), None);
    }

    #[test]
    fn a_new_socket_has_no_error_no_group_and_no_interface() {
        let s = Socket::open().unwrap();
        assert!(s.take_error().unwrap().is_none());
        assert_eq!(s.fanout_id().unwrap(), None);
        assert_eq!(s.bound_index().unwrap(), 0);
    }

    #[test]
    fn a_unique_fanout_group_is_made_and_joined_by_its_id() {
        let lo = Control::open().unwrap().lookup("lo").unwrap().unwrap();
        let bound = || {
            let s = Socket::open().unwrap();
            s.bind(lo.index).unwrap();
            assert_eq!(s.bound_index().unwrap(), lo.index as i32);
            s
        };
        let (a, b, c) = (bound(), bound(), bound());
        let id = a.create_fanout().unwrap();
        b.join_fanout(id).unwrap();
        assert_eq!(a.fanout_id().unwrap(), Some(id));
        assert_eq!(b.fanout_id().unwrap(), Some(id));
        // Another new group never gets an id in use.
        assert_ne!(c.create_fanout().unwrap(), id);
    }

    #[test]
    fn ring_geometry_is_checked() {
        let mut x = 0u8;
        assert!(Ring::from_mapping(&mut x, 16, 1).is_err());
        assert!(Ring::from_mapping(std::ptr::null_mut(), 4096, 1).is_err());
    }
}
