//! mithridate provenance layer.
