use stmx::prelude::*;

#[transactional]
struct Clash {
    snapshot: u32,
    x: u32,
    x_tvar: u32,
}

fn main() {}
