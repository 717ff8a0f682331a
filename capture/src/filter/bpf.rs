//! Classic BPF: opcodes, and an interpreter with the kernel's semantics
//! (a load outside the packet rejects it; the outermost VLAN tag is seen
//! through the ancillary loads, not in the bytes), used to test the
//! compiler against decoded packets without a socket.

pub use crate::live::ring::Insn;

/// Instruction classes and modes (linux/filter.h).
pub mod op {
    #![allow(missing_docs)]
    pub const LD: u16 = 0x00;
    pub const LDX: u16 = 0x01;
    pub const ALU: u16 = 0x04;
    pub const JMP: u16 = 0x05;
    pub const RET: u16 = 0x06;
    pub const MISC: u16 = 0x07;
    pub const W: u16 = 0x00;
    pub const H: u16 = 0x08;
    pub const B: u16 = 0x10;
    pub const IMM: u16 = 0x00;
    pub const ABS: u16 = 0x20;
    pub const IND: u16 = 0x40;
    pub const MSH: u16 = 0xa0;
    pub const AND: u16 = 0x50;
    pub const JA: u16 = 0x00;
    pub const JEQ: u16 = 0x10;
    pub const JGT: u16 = 0x20;
    pub const JGE: u16 = 0x30;
    pub const JSET: u16 = 0x40;
    pub const K: u16 = 0x00;
    pub const X: u16 = 0x08;
    pub const A: u16 = 0x10;
    pub const TAX: u16 = 0x00;
    pub const TXA: u16 = 0x80;
    /// Ancillary data offset (SKF_AD_OFF).
    pub const AD_OFF: u32 = (-0x1000i32) as u32;
    /// SKF_AD_VLAN_TAG.
    pub const AD_VLAN_TAG: u32 = 44;
    /// SKF_AD_VLAN_TAG_PRESENT.
    pub const AD_VLAN_TAG_PRESENT: u32 = 48;
}

/// What the kernel shows a filter: the frame without its outermost VLAN
/// tag, and that tag as metadata.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    /// The bytes the filter loads from.
    pub data: &'a [u8],
    /// The tag the kernel took off (TCI).
    pub vlan: Option<u16>,
}

/// The kernel's view of an Ethernet frame as captured in a file (the
/// outermost 802.1Q / 802.1ad tag moved to metadata). Returns the view
/// over `scratch`.
pub fn kernel_view<'a>(frame: &'a [u8], scratch: &'a mut Vec<u8>) -> View<'a> {
    if frame.len() >= 18 {
        let et = u16::from_be_bytes([frame[12], frame[13]]);
        if et == 0x8100 || et == 0x88a8 {
            scratch.clear();
            scratch.extend_from_slice(&frame[..12]);
            scratch.extend_from_slice(&frame[16..]);
            let tci = u16::from_be_bytes([frame[14], frame[15]]);
            return View {
                data: scratch,
                vlan: Some(tci),
            };
        }
    }
    View {
        data: frame,
        vlan: None,
    }
}

fn load(v: &View<'_>, off: u32, size: u16) -> Option<u32> {
    if off >= op::AD_OFF {
        return match off - op::AD_OFF {
            op::AD_VLAN_TAG => Some(v.vlan.unwrap_or(0) as u32),
            op::AD_VLAN_TAG_PRESENT => Some(v.vlan.is_some() as u32),
            _ => None,
        };
    }
    let o = off as usize;
    let d = v.data;
    match size {
        op::W => d
            .get(o..o.checked_add(4)?)
            .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]])),
        op::H => d
            .get(o..o.checked_add(2)?)
            .map(|s| u16::from_be_bytes([s[0], s[1]]) as u32),
        _ => d.get(o).map(|&b| b as u32),
    }
}

/// Run `prog` over a packet; the return value is the number of bytes the
/// kernel would keep (0: dropped). A malformed program (a jump or fall
/// past its end, an unknown opcode) returns 0.
pub fn run(prog: &[Insn], v: &View<'_>) -> u32 {
    let (mut a, mut x) = (0u32, 0u32);
    let mut pc = 0usize;
    while let Some(i) = prog.get(pc) {
        pc += 1;
        let class = i.code & 0x07;
        match class {
            op::LD | op::LDX => {
                let mode = i.code & 0xe0;
                let size = i.code & 0x18;
                let val = match mode {
                    op::IMM => Some(i.k),
                    op::ABS => load(v, i.k, size),
                    op::IND => load(v, x.wrapping_add(i.k), size),
                    op::MSH => load(v, i.k, op::B).map(|b| (b & 0x0f) * 4),
                    _ => return 0,
                };
                let Some(val) = val else { return 0 };
                if class == op::LD {
                    a = val;
                } else {
                    x = val;
                }
            }
            op::ALU => {
                let src = if i.code & op::X != 0 { x } else { i.k };
                a = match i.code & 0xf0 {
                    op::AND => a & src,
                    0x00 => a.wrapping_add(src),
                    0x10 => a.wrapping_sub(src),
                    0x40 => a | src,
                    0x60 => a.wrapping_shl(src),
                    0x70 => a.wrapping_shr(src),
                    _ => return 0,
                };
            }
            op::JMP => {
                let src = if i.code & op::X != 0 { x } else { i.k };
                let jump = match i.code & 0xf0 {
                    op::JA => {
                        pc += i.k as usize;
                        continue;
                    }
                    op::JEQ => a == src,
                    op::JGT => a > src,
                    op::JGE => a >= src,
                    op::JSET => a & src != 0,
                    _ => return 0,
                };
                pc += if jump { i.jt as usize } else { i.jf as usize };
            }
            op::RET => return if i.code & op::A != 0 { a } else { i.k },
            op::MISC => {
                if i.code & op::TXA != 0 {
                    a = x;
                } else {
                    x = a;
                }
            }
            _ => return 0,
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ins(code: u16, jt: u8, jf: u8, k: u32) -> Insn {
        Insn { code, jt, jf, k }
    }

    #[test]
    fn loads_outside_the_packet_reject() {
        let p = [
            ins(op::LD | op::H | op::ABS, 0, 0, 100),
            ins(op::RET | op::K, 0, 0, 1),
        ];
        let v = View {
            data: &[0u8; 20],
            vlan: None,
        };
        assert_eq!(run(&p, &v), 0);
        let v = View {
            data: &[0u8; 200],
            vlan: None,
        };
        assert_eq!(run(&p, &v), 1);
    }

    #[test]
    fn msh_and_indirect_loads() {
        // X = 4 * (byte 0 & 0xf); A = half-word at X + 2.
        let p = [
            ins(op::LDX | op::B | op::MSH, 0, 0, 0),
            ins(op::LD | op::H | op::IND, 0, 0, 2),
            ins(op::RET | op::A, 0, 0, 0),
        ];
        let mut d = [0u8; 32];
        d[0] = 0x45;
        d[22] = 0x12;
        d[23] = 0x34;
        assert_eq!(
            run(
                &p,
                &View {
                    data: &d,
                    vlan: None
                }
            ),
            0x1234
        );
    }

    #[test]
    fn kernel_view_takes_the_outer_tag_off() {
        let mut f = vec![0u8; 30];
        f[12..14].copy_from_slice(&[0x81, 0x00]);
        f[14..16].copy_from_slice(&[0x20, 0x64]);
        f[16..18].copy_from_slice(&[0x08, 0x00]);
        let mut s = Vec::new();
        let v = kernel_view(&f, &mut s);
        assert_eq!(v.vlan, Some(0x2064));
        assert_eq!(&v.data[12..14], &[0x08, 0x00]);
        assert_eq!(v.data.len(), 26);
    }
}
