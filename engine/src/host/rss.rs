//! A NIC's receive-side scaling, read with the ethtool ioctl: key and
//! indirection table (ETHTOOL_GRSSH), hash function, and the fields hashed
//! for TCP over IPv4 and IPv6 (ETHTOOL_GRXFH); what `crate::rss` needs to
//! tell which queue a flow's segments arrive on.
//!
//! Many interfaces cannot say: veth and tap (a frame's receive queue is the
//! peer's transmit queue), virtio_net without RSS, drivers that hide the
//! key or hash with something other than plain Toeplitz. Then the answer is
//! [`Unpredictable`] with the reason, and the caller hands misrouted frames
//! to their owner instead of placing flows.

use super::iface::{driver, Ethtool};
use crate::rss::{Fields, Rss};
use std::fmt;
use std::io;

const ETHTOOL_GRSSH: u32 = 0x46;
const ETHTOOL_GRXFH: u32 = 0x29;
/// `hfunc` bit of Toeplitz (ETH_RSS_HASH_TOP).
const ETH_RSS_HASH_TOP: u8 = 1;
const TCP_V4_FLOW: u32 = 1;
const TCP_V6_FLOW: u32 = 5;
const RXH_IP_SRC: u64 = 1 << 4;
const RXH_IP_DST: u64 = 1 << 5;
const RXH_L4_B_0_1: u64 = 1 << 6;
const RXH_L4_B_2_3: u64 = 1 << 7;
/// struct ethtool_rxfh before rss_config[]: cmd, rss_context, indir_size,
/// key_size (u32 each), hfunc, input_xfrm, rsvd8[2], rsvd32.
const RXFH_WORDS: usize = 6;
/// Bounds on what a driver may report, so a wild answer cannot allocate
/// without limit (real tables are at most a few thousand entries).
const MAX_INDIR: u32 = 1 << 16;
const MAX_KEY: u32 = 1024;

/// Why a flow's receive queue cannot be predicted on an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unpredictable(pub String);

impl fmt::Display for Unpredictable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `iface`'s RSS as the NIC applies it to TCP, or why it cannot be known.
pub fn read(iface: &str) -> Result<Rss, Unpredictable> {
    let why = |what: String| {
        let drv = driver(iface).map_or_else(String::new, |d| format!(" (driver {d})"));
        Unpredictable(format!(
            "{iface}{drv}: {what}; which queue a flow arrives on cannot be predicted"
        ))
    };
    let eth = Ethtool::open(iface).map_err(|e| why(format!("no ethtool socket ({e})")))?;
    let rxfh = read_rxfh(&eth).map_err(|e| {
        why(format!(
            "the driver does not expose its RSS key and indirection table (ETHTOOL_GRSSH: {e})"
        ))
    })?;
    if rxfh.indir.is_empty() || rxfh.key.is_empty() {
        return Err(why(format!(
            "the driver reports no RSS ({} table entries, {}-byte key)",
            rxfh.indir.len(),
            rxfh.key.len()
        )));
    }
    hash_function(rxfh.hfunc, rxfh.input_xfrm).map_err(why)?;
    let tcp = |flow_type, name| {
        read_rxfh_fields(&eth, flow_type)
            .map_err(|e| {
                format!(
                    "the driver does not say which {name} fields it hashes (ETHTOOL_GRXFH: {e})"
                )
            })
            .and_then(|bits| fields_of(name, bits))
            .map_err(why)
    };
    let (tcp4, tcp6) = (tcp(TCP_V4_FLOW, "tcp4")?, tcp(TCP_V6_FLOW, "tcp6")?);
    Rss::new(&rxfh.key, rxfh.indir, tcp4, tcp6).map_err(|e| why(e.to_string()))
}

/// What ETHTOOL_GRSSH returns for the default RSS context.
struct Rxfh {
    hfunc: u8,
    input_xfrm: u8,
    indir: Vec<u32>,
    key: Vec<u8>,
}

/// ETHTOOL_GRSSH twice: with sizes 0 to learn them, then with the buffer.
fn read_rxfh(eth: &Ethtool) -> io::Result<Rxfh> {
    let mut head = [0u32; RXFH_WORDS];
    head[0] = ETHTOOL_GRSSH;
    // SAFETY: sizes 0: the kernel writes only the header.
    unsafe { eth.call(head.as_mut_ptr().cast()) }?;
    let (indir_size, key_size) = (head[2], head[3]);
    if indir_size > MAX_INDIR || key_size > MAX_KEY {
        return Err(io::Error::other(format!(
            "implausible sizes: {indir_size} table entries, {key_size}-byte key"
        )));
    }
    let (n, k) = (indir_size as usize, key_size as usize);
    let mut buf = vec![0u32; RXFH_WORDS + n + k.div_ceil(4)];
    buf[0] = ETHTOOL_GRSSH;
    buf[2] = indir_size;
    buf[3] = key_size;
    // SAFETY: the buffer holds the header, indir_size u32s and key_size
    // bytes, which is what the kernel writes for these sizes.
    unsafe { eth.call(buf.as_mut_ptr().cast()) }?;
    let [hfunc, input_xfrm, ..] = buf[4].to_ne_bytes();
    let key = buf[RXFH_WORDS + n..]
        .iter()
        .flat_map(|w| w.to_ne_bytes())
        .take(k)
        .collect();
    Ok(Rxfh {
        hfunc,
        input_xfrm,
        indir: buf[RXFH_WORDS..RXFH_WORDS + n].to_vec(),
        key,
    })
}

/// ETHTOOL_GRXFH: the RXH_* bits hashed for `flow_type`.
fn read_rxfh_fields(eth: &Ethtool, flow_type: u32) -> io::Result<u64> {
    // struct ethtool_rxnfc is 192 bytes: cmd, flow_type, u64 data, then a
    // flow spec the kernel leaves alone for this command. 256 is ample.
    let mut buf = [0u32; 64];
    buf[0] = ETHTOOL_GRXFH;
    buf[1] = flow_type;
    // SAFETY: the buffer is larger than struct ethtool_rxnfc.
    unsafe { eth.call(buf.as_mut_ptr().cast()) }?;
    let [a, b] = [buf[2], buf[3]].map(u32::to_ne_bytes);
    Ok(u64::from_ne_bytes([
        a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3],
    ]))
}

/// Only plain Toeplitz over the untransformed fields can be predicted.
fn hash_function(hfunc: u8, input_xfrm: u8) -> Result<(), String> {
    if hfunc != ETH_RSS_HASH_TOP {
        return Err(match hfunc {
            0 => "the driver does not say which hash function it uses".into(),
            h => format!(
                "the NIC hashes with function {h:#x}, not Toeplitz (ethtool -X IF hfunc toeplitz)"
            ),
        });
    }
    if input_xfrm != 0 {
        return Err(format!(
            "the NIC transforms the hash input ({input_xfrm:#x}, e.g. symmetric-xor) (ethtool -X IF xfrm none)"
        ));
    }
    Ok(())
}

/// The RXH_* bits as hashed fields: addresses, or addresses and ports.
fn fields_of(name: &str, bits: u64) -> Result<Fields, String> {
    const ADDRS: u64 = RXH_IP_SRC | RXH_IP_DST;
    const PORTS: u64 = RXH_L4_B_0_1 | RXH_L4_B_2_3;
    match bits {
        ADDRS => Ok(Fields::Addrs),
        b if b == ADDRS | PORTS => Ok(Fields::AddrsPorts),
        0 => Err(format!("the NIC does not hash {name} (ethtool -N IF rx-flow-hash {name} sdfn)")),
        b => Err(format!(
            "the NIC hashes {name} over fields {b:#x}, not addresses and ports (ethtool -N IF rx-flow-hash {name} sdfn)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_toeplitz_is_predictable() {
        assert!(hash_function(ETH_RSS_HASH_TOP, 0).is_ok());
        assert!(hash_function(0, 0).unwrap_err().contains("does not say"));
        assert!(hash_function(2, 0).unwrap_err().contains("not Toeplitz"));
        assert!(hash_function(ETH_RSS_HASH_TOP, 1)
            .unwrap_err()
            .contains("transforms the hash input"));
    }

    #[test]
    fn hashed_fields() {
        assert_eq!(fields_of("tcp4", 0x30), Ok(Fields::Addrs));
        assert_eq!(fields_of("tcp4", 0xf0), Ok(Fields::AddrsPorts));
        assert!(fields_of("tcp6", 0)
            .unwrap_err()
            .contains("does not hash tcp6"));
        // source port only, or the VLAN tag too: not what we compute
        assert!(fields_of("tcp4", 0x70).is_err());
        assert!(fields_of("tcp4", 0xf4).unwrap_err().contains("0xf4"));
    }

    #[test]
    fn a_missing_interface_is_a_reason() {
        let e = read("nosuch0").unwrap_err().0;
        assert!(
            e.starts_with("nosuch0: ") && e.contains("cannot be predicted"),
            "{e}"
        );
        let e = read("a-name-longer-than-15").unwrap_err().0;
        assert!(e.contains("No such device"), "{e}");
    }

    #[test]
    fn loopback_has_no_rss() {
        let e = read("lo").unwrap_err().0;
        assert!(e.starts_with("lo: ") && e.contains("ETHTOOL_GRSSH"), "{e}");
    }
}
