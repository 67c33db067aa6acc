use stmx::prelude::*;

#[transactional]
struct Marker;

#[transactional]
struct Empty {}

fn main() {
    let _ = Marker;
    let _ = Empty {};
}
