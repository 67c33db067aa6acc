//! The `#[transactional]` attribute of [stmx](https://docs.rs/stmx): a struct whose fields are
//! transactional, in the spirit of STMX's `TRANSACTIONAL` classes.
//!
//! Use it through the facade, `stmx::transactional` (also in `stmx::prelude`), or through
//! `stm_core::transactional`; the generated code finds whichever of the two crates the user
//! depends on. See [`macro@transactional`] for what it generates.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![doc(test(attr(deny(warnings))))]

mod ast;
mod attr;
mod expand;

use proc_macro::TokenStream;
use proc_macro_crate::FoundCrate;
use proc_macro2::Span;
use quote::{format_ident, quote};

/// Makes every field of a struct transactional: each becomes a `TVar` of its type, read and
/// written through generated accessors inside transactions.
///
/// # What it generates
///
/// For each field `x: T` (keeping the field's visibility, `pub`, `pub(crate)` or private):
///
/// | method | does |
/// |---|---|
/// | `x(&self, tx) -> StmResult<T>` | reads the field (a clone of its value) |
/// | `set_x(&self, tx, value: T) -> StmResult<()>` | writes the field |
/// | `modify_x(&self, tx, f: impl FnOnce(T) -> T) -> StmResult<()>` | writes `f(old)` |
/// | `replace_x(&self, tx, value: T) -> StmResult<T>` | writes, returns the old value |
/// | `x_tvar(&self) -> &TVar<T>` | the `TVar` itself, for generic code and `retry` |
///
/// Fields of a tuple struct get `get_0`, `set_0`, `modify_0`, `replace_0` and `tvar_0`.
///
/// For the struct `S` (with the struct's visibility):
///
/// - `S::new(..)` takes the fields' plain values in field order.
/// - `SSnapshot` is a plain struct with the same fields and their plain types.
///   - `s.snapshot(tx)` reads every field in a transaction.
///   - `s.snapshot_atomic()` does the same in a transaction of its own.
///   - `S::from(snapshot)` builds a new `S` from a snapshot.
///   - The snapshot derives every trait the struct derives (as `Debug` below), plus whatever
///     `#[transactional(snapshot_derive(PartialEq, ...))]` asks for.
///
/// Attributes and doc comments on the struct and its fields are kept. A derive on the struct
/// applies to the struct of `TVar`s: `Clone` gives a second handle to the same variables, as
/// `TVar::clone` does, and `Debug` prints each field's current value.
///
/// # Field types
///
/// A transactional field's type must be `Clone + Send + Sync + 'static`, like any value in a
/// `TVar`: reads hand out clones, and the value is shared between threads. A field marked
/// `#[transactional(plain)]` stays a plain, immutable value (an id, a name that never
/// changes); it needs only `Clone`, for the snapshot, and gets no accessors: read it as a
/// field. A type that does not qualify is a compile error pointing at that field.
///
/// Generic structs and `where` clauses are supported; the methods exist when every field
/// type qualifies. Lifetime parameters are not: a `TVar` holds `'static` values.
///
/// # Finding the runtime
///
/// The generated code names `stmx` when the crate using the macro depends on it, and
/// `stm-core` otherwise (a renamed dependency is followed). Say where it is with
/// `#[transactional(crate = path)]` when neither is a direct dependency (in a crate that
/// re-exports stmx, say).
///
/// # Errors
///
/// A compile error, pointing at the offending code, for an enum, a union, a struct without
/// fields, a lifetime parameter, a field type that is not `Clone + Send + Sync + 'static`,
/// an accessor whose name would clash with another generated method, and an unknown option.
///
/// # Examples
///
/// ```
/// use stmx::prelude::*;
///
/// #[transactional]
/// #[derive(Debug)]
/// pub struct Account {
///     pub owner: String,
///     balance: i64,
/// }
///
/// let a = Account::new("ann".to_string(), 100); // plain values, in field order
/// atomically(|tx| {
///     let b = a.balance(tx)?; // getter: StmResult<i64>
///     a.set_balance(tx, b - 10)?; // setter
///     a.modify_balance(tx, |b| b + 1)?; // modify
///     Ok(())
/// });
/// let snap: AccountSnapshot = a.snapshot_atomic(); // or a.snapshot(tx)?
/// assert_eq!((snap.owner.as_str(), snap.balance), ("ann", 91));
/// ```
///
/// The struct and the accessors of `balance` expand to this (docs left out; `owner` gets the
/// same accessors; `::stmx` is wherever the runtime was found):
///
/// ```text
/// #[derive(Debug)]
/// pub struct Account {
///     pub owner: ::stmx::TVar<String>,
///     balance: ::stmx::TVar<i64>,
/// }
///
/// #[derive(Debug)]
/// pub struct AccountSnapshot {
///     pub owner: String,
///     balance: i64,
/// }
///
/// impl Account
/// where
///     String: ::stmx::__private::TransactionalField, // Clone + Send + Sync + 'static
///     i64: ::stmx::__private::TransactionalField,
/// {
///     pub fn new(owner: String, balance: i64) -> Self {
///         Self { owner: ::stmx::TVar::new(owner), balance: ::stmx::TVar::new(balance) }
///     }
///
///     fn balance(&self, tx: &mut ::stmx::Transaction) -> ::stmx::StmResult<i64> {
///         self.balance.read(tx)
///     }
///     fn set_balance(&self, tx: &mut ::stmx::Transaction, value: i64) -> ::stmx::StmResult<()> {
///         self.balance.write(tx, value)
///     }
///     fn modify_balance(
///         &self,
///         tx: &mut ::stmx::Transaction,
///         f: impl FnOnce(i64) -> i64,
///     ) -> ::stmx::StmResult<()> {
///         self.balance.modify(tx, f)
///     }
///     fn replace_balance(&self, tx: &mut ::stmx::Transaction, value: i64) -> ::stmx::StmResult<i64> {
///         self.balance.replace(tx, value)
///     }
///     fn balance_tvar(&self) -> &::stmx::TVar<i64> {
///         &self.balance
///     }
///
///     pub fn snapshot(&self, tx: &mut ::stmx::Transaction) -> ::stmx::StmResult<AccountSnapshot> {
///         Ok(AccountSnapshot { owner: self.owner.read(tx)?, balance: self.balance.read(tx)? })
///     }
///     pub fn snapshot_atomic(&self) -> AccountSnapshot {
///         ::stmx::atomically(|tx| self.snapshot(tx))
///     }
/// }
///
/// impl From<AccountSnapshot> for Account { /* Account::new(snapshot's fields) */ }
/// ```
///
/// Waiting on a field with `retry`, a plain field, and a tuple struct:
///
/// ```
/// use std::thread;
/// use stmx::prelude::*;
///
/// #[transactional]
/// struct Job {
///     #[transactional(plain)]
///     id: u32,
///     done: bool,
/// }
///
/// #[transactional]
/// struct Point(i32, i32);
///
/// let job = std::sync::Arc::new(Job::new(7, false));
/// let worker = {
///     let job = job.clone();
///     thread::spawn(move || atomically(|tx| job.set_done(tx, true)))
/// };
/// // Blocks until `done` is set: the read registered the field's TVar for `retry`.
/// atomically(|tx| guard(job.done(tx)?));
/// worker.join().unwrap();
/// assert_eq!(job.id, 7);
///
/// let p = Point::new(1, 2);
/// atomically(|tx| p.modify_0(tx, |x| x + 10));
/// assert_eq!(p.tvar_0().read_atomic(), 11);
/// assert_eq!((p.snapshot_atomic().0, p.snapshot_atomic().1), (11, 2));
/// ```
#[proc_macro_attribute]
pub fn transactional(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = match syn::parse::<syn::Item>(item) {
        Ok(item) => item,
        Err(e) => return e.into_compile_error().into(),
    };
    // A bad option is reported, but the struct is still expanded (with the default options), so
    // that its uses do not fail too.
    let (options, option_error) = match attr::parse_struct_options(args.into()) {
        Ok(options) => (options, None),
        Err(e) => (attr::StructOptions::default(), Some(e.into_compile_error())),
    };
    let input = match ast::Input::from_item(item) {
        Ok(input) => input,
        // The item is emitted unchanged next to the errors, for the same reason.
        Err((e, original)) => {
            let error = e.into_compile_error();
            return quote!(#original #option_error #error).into();
        }
    };
    let krate = match runtime_path(&options) {
        Ok(path) => path,
        Err(e) => return e.into_compile_error().into(),
    };
    let expanded =
        expand::expand(&input, &options, &krate).unwrap_or_else(|e| e.into_compile_error());
    quote!(#expanded #option_error).into()
}

/// The path of the runtime: the `crate = ...` option, else `stmx`, else `stm-core`, as named in
/// the user's `Cargo.toml`.
fn runtime_path(options: &attr::StructOptions) -> syn::Result<syn::Path> {
    if let Some(path) = &options.krate {
        return Ok(path.clone());
    }
    for (package, itself) in [("stmx", "stmx"), ("stm-core", "stm_core")] {
        let name = match proc_macro_crate::crate_name(package) {
            // Both crates declare `extern crate self as <name>;`, so this works inside them.
            Ok(FoundCrate::Itself) => itself.to_string(),
            Ok(FoundCrate::Name(name)) => name,
            Err(_) => continue,
        };
        let ident = format_ident!("{}", name);
        return Ok(syn::parse_quote!(::#ident));
    }
    Err(syn::Error::new(
        Span::call_site(),
        "#[transactional] cannot find its runtime: add `stmx` (or `stm-core`) to this crate's \
         [dependencies], or name it with #[transactional(crate = path::to::stmx)]",
    ))
}
