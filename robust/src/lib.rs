//! mithridate robust layer.
