use stmx::prelude::*;

#[transactional]
fn helper() {}

fn main() {
    helper();
}
