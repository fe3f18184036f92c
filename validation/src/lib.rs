//! mithridate validation layer.
