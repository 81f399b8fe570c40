//! Results and how they are shown: the serializable model (`model`), the
//! terminal text (`text`), and CSV (`csv`). JSON is `model` through serde.

pub mod csv;
pub mod model;
pub mod text;
