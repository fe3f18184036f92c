//! mithridate canary layer.
