//! An immutable, shared singly linked list: the representation of `TStack`.

use std::sync::Arc;

/// A link to the first node of a list, or `None` for the empty list.
pub(crate) type Link<T> = Option<Arc<Node<T>>>;

/// One immutable node. Nodes are shared between versions of a list: pushing makes a new node
/// pointing at the old head, so a transaction's copy costs one allocation.
pub(crate) struct Node<T> {
    pub(crate) value: T,
    pub(crate) next: Link<T>,
    /// Number of nodes from this one to the end, this one included.
    pub(crate) len: usize,
}

impl<T> Node<T> {
    pub(crate) fn push(value: T, next: Link<T>) -> Arc<Self> {
        let len = next.as_ref().map_or(0, |n| n.len) + 1;
        Arc::new(Self { value, next, len })
    }
}

impl<T> Drop for Node<T> {
    /// Frees the nodes behind this one in a loop: the default, recursive drop of a long list
    /// would overflow the stack.
    fn drop(&mut self) {
        let mut next = self.next.take();
        while let Some(node) = next {
            match Arc::try_unwrap(node) {
                Ok(mut node) => next = node.next.take(),
                Err(_) => break, // still shared: its last owner frees the rest
            }
        }
    }
}

pub(crate) fn len<T>(link: &Link<T>) -> usize {
    link.as_ref().map_or(0, |n| n.len)
}
