use stmx::prelude::*;

#[transactional]
struct Borrowed<'a> {
    name: &'a str,
}

fn main() {}
