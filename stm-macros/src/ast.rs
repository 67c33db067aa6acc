//! The struct `#[transactional]` was put on, checked and taken apart.

use quote::format_ident;
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Attribute, Fields, Generics, Ident, Index, Item, Type, Visibility};

use crate::attr::{self, FieldOptions};

/// A struct that `#[transactional]` accepts.
pub(crate) struct Input {
    /// The struct's own attributes (docs, derives, ...), kept as they are.
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) vis: Visibility,
    pub(crate) ident: Ident,
    pub(crate) generics: Generics,
    /// `true` for `struct S(A, B);`, `false` for `struct S { a: A }`.
    pub(crate) tuple: bool,
    pub(crate) fields: Vec<Field>,
}

/// One field and the names of the methods generated for it.
pub(crate) struct Field {
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) vis: Visibility,
    /// `balance` or `0`.
    pub(crate) member: syn::Member,
    pub(crate) ty: Type,
    pub(crate) options: FieldOptions,
    /// The name of the field's value as an argument of `new`.
    pub(crate) arg: Ident,
    /// Accessor names; used only when the field is not plain.
    pub(crate) names: AccessorNames,
}

pub(crate) struct AccessorNames {
    pub(crate) get: Ident,
    pub(crate) set: Ident,
    pub(crate) modify: Ident,
    pub(crate) replace: Ident,
    pub(crate) tvar: Ident,
}

/// Names of the methods generated for the whole struct; a field's accessors may not reuse them.
pub(crate) const STRUCT_METHODS: [&str; 3] = ["new", "snapshot", "snapshot_atomic"];

impl Input {
    /// Checks `item` and takes it apart. On error, also returns the item itself, cleaned of
    /// field attributes, so the caller can emit it unchanged and spare the user follow-on errors
    /// about a missing type.
    pub(crate) fn from_item(item: Item) -> Result<Self, (syn::Error, proc_macro2::TokenStream)> {
        use quote::ToTokens;
        let s = match item {
            Item::Struct(s) => s,
            Item::Enum(e) => {
                let error = syn::Error::new(
                    e.enum_token.span,
                    "#[transactional] supports structs only, not enums: wrap the enum in a \
                     `TVar` instead (`TVar<MyEnum>`), or put it in a field of a #[transactional] \
                     struct",
                );
                return Err((error, e.into_token_stream()));
            }
            Item::Union(u) => {
                let error = syn::Error::new(
                    u.union_token.span,
                    "#[transactional] supports structs only, not unions",
                );
                return Err((error, u.into_token_stream()));
            }
            other => {
                let error =
                    syn::Error::new(other.span(), "#[transactional] goes on a struct definition");
                return Err((error, other.into_token_stream()));
            }
        };
        let mut s = s;
        let mut result = Ok(());

        for lifetime in s.generics.lifetimes() {
            attr::combine(
                &mut result,
                syn::Error::new(
                    lifetime.lifetime.span(),
                    "#[transactional] structs cannot have lifetime parameters: each field lives \
                     in a TVar, which holds only `'static` values",
                ),
            );
        }

        let tuple = matches!(s.fields, Fields::Unnamed(_));
        let mut fields = Vec::new();
        let raw_fields: Vec<&mut syn::Field> = match &mut s.fields {
            Fields::Named(named) => named.named.iter_mut().collect(),
            Fields::Unnamed(unnamed) => unnamed.unnamed.iter_mut().collect(),
            Fields::Unit => Vec::new(),
        };
        if raw_fields.is_empty() {
            attr::combine(
                &mut result,
                syn::Error::new(
                    s.ident.span(),
                    format!(
                        "#[transactional] needs a struct with fields; `{}` has none, so there is \
                         nothing to make transactional",
                        s.ident
                    ),
                ),
            );
        }
        let mut taken = Vec::<String>::new();
        for (index, field) in raw_fields.into_iter().enumerate() {
            let options = match attr::take_field_options(&mut field.attrs) {
                Ok(options) => options,
                Err(e) => {
                    attr::combine(&mut result, e);
                    FieldOptions::default()
                }
            };
            let span = field
                .ident
                .as_ref()
                .map_or_else(|| field.ty.span(), Ident::span);
            let (member, arg, names) = match &field.ident {
                Some(ident) => {
                    let bare = ident.unraw();
                    let names = AccessorNames {
                        get: ident.clone(),
                        set: format_ident!("set_{}", bare, span = span),
                        modify: format_ident!("modify_{}", bare, span = span),
                        replace: format_ident!("replace_{}", bare, span = span),
                        tvar: format_ident!("{}_tvar", bare, span = span),
                    };
                    (syn::Member::Named(ident.clone()), ident.clone(), names)
                }
                None => {
                    let names = AccessorNames {
                        get: format_ident!("get_{}", index, span = span),
                        set: format_ident!("set_{}", index, span = span),
                        modify: format_ident!("modify_{}", index, span = span),
                        replace: format_ident!("replace_{}", index, span = span),
                        tvar: format_ident!("tvar_{}", index, span = span),
                    };
                    let member = syn::Member::Unnamed(Index {
                        index: index as u32,
                        span,
                    });
                    (member, format_ident!("field_{}", index), names)
                }
            };
            if !options.plain {
                let generated = [
                    &names.get,
                    &names.set,
                    &names.modify,
                    &names.replace,
                    &names.tvar,
                ];
                for name in generated {
                    let name = name.unraw().to_string();
                    if STRUCT_METHODS.contains(&name.as_str()) {
                        attr::combine(
                            &mut result,
                            syn::Error::new(
                                span,
                                format!(
                                    "this field's accessor `{name}` would clash with the \
                                     generated method `{name}`; rename the field or mark it \
                                     #[transactional(plain)]"
                                ),
                            ),
                        );
                    } else if taken.contains(&name) {
                        attr::combine(
                            &mut result,
                            syn::Error::new(
                                span,
                                format!(
                                    "this field's accessor `{name}` would clash with the accessor \
                                     of the same name generated for another field; rename one \
                                     of them"
                                ),
                            ),
                        );
                    } else {
                        taken.push(name);
                    }
                }
            }
            fields.push(Field {
                attrs: field.attrs.clone(),
                vis: field.vis.clone(),
                member,
                ty: field.ty.clone(),
                options,
                arg,
                names,
            });
        }

        match result {
            Ok(()) => Ok(Self {
                attrs: s.attrs,
                vis: s.vis,
                ident: s.ident,
                generics: s.generics,
                tuple,
                fields,
            }),
            Err(error) => Err((error, s.into_token_stream())),
        }
    }
}
