//! Benchmark of the aggregation rules (filled in below).
fn main() {}
