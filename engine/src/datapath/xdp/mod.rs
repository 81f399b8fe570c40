//! The kernel-bypass data path: the XDP steering program (`loader`),
//! AF_XDP sockets (`xsk`), and what an interface can do (`probe`).

pub mod loader;
pub mod probe;
pub mod raw;
pub mod session;
pub mod xsk;
