//! One deadline for a whole message. Per-read timeouts alone let a peer
//! that sends one byte every few seconds hold a connection (and an agent's
//! slot) for as long as it likes; this reader shrinks each read's timeout
//! to what is left of the message's time.

use std::io::{self, Read};
use std::time::{Duration, Instant};

/// Sockets whose reads can time out.
pub trait ReadTimeout {
    fn read_timeout_for(&self, d: Option<Duration>) -> io::Result<()>;
}

impl ReadTimeout for std::net::TcpStream {
    fn read_timeout_for(&self, d: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(d)
    }
}

impl ReadTimeout for socket2::Socket {
    fn read_timeout_for(&self, d: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(d)
    }
}

/// Reads from `s` until `until`, then fails with `TimedOut`.
pub struct Deadline<'a, S> {
    s: &'a S,
    until: Instant,
}

impl<'a, S> Deadline<'a, S> {
    pub fn new(s: &'a S, within: Duration) -> Self {
        Deadline {
            s,
            until: Instant::now() + within,
        }
    }
}

impl<'a, S: ReadTimeout> Read for Deadline<'a, S>
where
    &'a S: Read,
{
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the message's time ran out",
            ));
        }
        self.s.read_timeout_for(Some(left))?;
        let mut s = self.s;
        s.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn a_dripping_peer_runs_out_of_time() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let mut c = TcpStream::connect(addr).unwrap();
            for _ in 0..10 {
                if c.write_all(b"x").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(40));
            }
        });
        let (s, _) = l.accept().unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 100];
        let e = Deadline::new(&s, Duration::from_millis(150))
            .read_exact(&mut buf)
            .unwrap_err();
        assert!(
            matches!(
                e.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ),
            "{e}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(400),
            "{:?}",
            started.elapsed()
        );
        drop(s);
        t.join().unwrap();
    }
}
