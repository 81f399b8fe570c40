//! Results and how they are shown: the serializable model (`model`), the
//! terminal text (`text`), CSV (`csv`) and a plan's one-page HTML report
//! (`html`). JSON is `model` through serde. `verify` checks `--verify`'s
//! per-flow digests.

pub mod csv;
pub mod diagnosis;
pub mod html;
pub mod model;
pub mod plan;
pub mod plot;
pub mod text;
pub mod verify;
