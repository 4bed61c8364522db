//! The sd-worker binary.
fn main() {}
