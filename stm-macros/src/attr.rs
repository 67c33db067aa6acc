//! The arguments of `#[transactional(...)]`, on the struct and on its fields.

use syn::parse::Parser;
use syn::{Attribute, LitStr, Path};

/// Options given on the struct: `#[transactional(crate = path, snapshot_derive(...))]`.
#[derive(Default)]
pub(crate) struct StructOptions {
    /// Where the runtime lives, when the user names it; found from `Cargo.toml` otherwise.
    pub(crate) krate: Option<Path>,
    /// Extra derives for the snapshot struct only.
    pub(crate) snapshot_derive: Vec<Path>,
}

pub(crate) fn parse_struct_options(args: proc_macro2::TokenStream) -> syn::Result<StructOptions> {
    let mut options = StructOptions::default();
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("crate") {
            if options.krate.is_some() {
                return Err(meta.error("`crate` is given twice"));
            }
            let value = meta.value()?;
            options.krate = Some(if value.peek(LitStr) {
                value.parse::<LitStr>()?.parse()?
            } else {
                value.parse()?
            });
            Ok(())
        } else if meta.path.is_ident("snapshot_derive") {
            meta.parse_nested_meta(|inner| {
                options.snapshot_derive.push(inner.path);
                Ok(())
            })
        } else if meta.path.is_ident("plain") {
            Err(meta.error(
                "`plain` belongs on a field: `#[transactional(plain)] id: u64` keeps that field \
                 out of a TVar",
            ))
        } else {
            Err(meta.error(
                "unknown #[transactional] option; expected `crate = path` or \
                 `snapshot_derive(Trait, ...)`",
            ))
        }
    });
    parser.parse2(args)?;
    Ok(options)
}

/// Options given on a field: `#[transactional(plain)]`.
#[derive(Default)]
pub(crate) struct FieldOptions {
    /// The field stays a plain, immutable value instead of a `TVar`.
    pub(crate) plain: bool,
}

/// Takes the `#[transactional(...)]` attributes off a field and reads them.
pub(crate) fn take_field_options(attrs: &mut Vec<Attribute>) -> syn::Result<FieldOptions> {
    let mut options = FieldOptions::default();
    let mut result = Ok(());
    attrs.retain(|attr| {
        if !attr.path().is_ident("transactional") {
            return true;
        }
        let parsed = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("plain") {
                if options.plain {
                    return Err(meta.error("`plain` is given twice"));
                }
                options.plain = true;
                Ok(())
            } else {
                Err(meta.error("unknown field option; the only one is `#[transactional(plain)]`"))
            }
        });
        if let Err(e) = parsed {
            combine(&mut result, e);
        }
        false
    });
    result.map(|()| options)
}

/// Adds `error` to `result`, so that every mistake is reported at once.
pub(crate) fn combine(result: &mut syn::Result<()>, error: syn::Error) {
    match result {
        Ok(()) => *result = Err(error),
        Err(first) => first.combine(error),
    }
}
