//! mithridate anomaly layer.
