//! TCP's own statistics for a connection (Linux TCP_INFO): retransmits,
//! smoothed RTT, congestion window. None on other systems.

use crate::report::model::TcpStats;
use socket2::Socket;

/// The kernel's TCP_INFO for a socket; None on error.
#[cfg(target_os = "linux")]
fn tcp_info(sock: &Socket) -> Option<nix::libc::tcp_info> {
    use nix::libc;
    use std::os::fd::AsRawFd;
    // SAFETY: tcp_info is plain old data; getsockopt writes at most `len` bytes.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(info)
}

/// Read TCP_INFO; None where unsupported or on error.
#[cfg(target_os = "linux")]
pub fn read(sock: &Socket) -> Option<TcpStats> {
    let info = tcp_info(sock)?;
    Some(TcpStats {
        retransmits: info.tcpi_total_retrans,
        rtt_us: info.tcpi_rtt,
        rttvar_us: info.tcpi_rttvar,
        snd_cwnd: info.tcpi_snd_cwnd,
        mss: info.tcpi_snd_mss,
        pmtu: info.tcpi_pmtu,
    })
}

#[cfg(not(target_os = "linux"))]
pub fn read(_sock: &Socket) -> Option<TcpStats> {
    None
}

/// True once this end has closed its writing and the peer has
/// acknowledged every byte and the FIN (FIN-WAIT-2, TIME-WAIT or CLOSE):
/// the peer's kernel holds all we sent. None where TCP_INFO is unknown.
#[cfg(target_os = "linux")]
pub fn drained(sock: &Socket) -> Option<bool> {
    let info = tcp_info(sock)?;
    // TCP_FIN_WAIT2 = 5, TCP_TIME_WAIT = 6, TCP_CLOSE = 7
    Some(matches!(info.tcpi_state, 5..=7))
}

#[cfg(not(target_os = "linux"))]
pub fn drained(_sock: &Socket) -> Option<bool> {
    None
}
