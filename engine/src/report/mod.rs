//! Results and how they are shown: the serializable model (`model`), the
//! terminal text (`text`), and CSV (`csv`). JSON is `model` through serde.
//! `verify` checks `--verify`'s per-flow digests.

pub mod csv;
pub mod diagnosis;
pub mod model;
pub mod plan;
pub mod plot;
pub mod text;
pub mod verify;
