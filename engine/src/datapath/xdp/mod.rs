//! The kernel-bypass data path: the XDP steering program (`loader`) and
//! what else is attached (`attached`),
//! AF_XDP sockets (`xsk`) and their bind rules (`bind_policy`), raw-frame workers (`raw`, `session`), the next
//! hop's MAC (`neigh`), and what an interface can do (`probe`).

pub mod attached;
pub mod bind_policy;
pub mod loader;
pub mod neigh;
pub mod probe;
pub mod raw;
pub mod session;
pub mod stream;
pub mod xsk;
