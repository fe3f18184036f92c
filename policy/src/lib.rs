//! mithridate policy layer.
