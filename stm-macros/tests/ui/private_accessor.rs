mod bank {
    use stmx::prelude::*;

    #[transactional]
    pub struct Account {
        pub owner: String,
        balance: i64,
    }
}

fn main() {
    use stmx::prelude::*;
    let a = bank::Account::new("ann".to_string(), 1);
    atomically(|tx| a.owner(tx)); // public field: public accessors
    atomically(|tx| a.balance(tx)); // private field: private accessors
}
