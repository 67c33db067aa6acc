//! Pins the auto traits of the public types.

use stmx::prelude::*;

fn is_send<T: Send>() {}
fn is_sync<T: Sync>() {}

#[test]
fn tvar_is_send_and_sync_when_its_value_is() {
    is_send::<TVar<u64>>();
    is_sync::<TVar<u64>>();
    is_send::<TVar<Vec<String>>>();
    is_sync::<TVar<std::sync::Mutex<u8>>>();
    is_send::<StmError>();
    is_sync::<StmError>();
    is_send::<stmx::Stats>();
}
