use stmx::prelude::*;

struct Token;

#[transactional]
struct Holder {
    token: Token,
}

#[transactional]
struct Named {
    #[transactional(plain)]
    id: Token,
    count: u32,
}

fn main() {}
