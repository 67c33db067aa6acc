//! `TMap`: a transactional sorted map, a left-leaning red-black tree of `TVar` nodes (STMX's
//! `TMAP`).

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use stm_core::{StmResult, TVar, Transaction};

use crate::counter::StripedCounter;

/// A transactional sorted map. STMX's `TMAP`.
///
/// A left-leaning red-black tree (Sedgewick's 2-3 variant) whose every node is a `TVar`, so the
/// depth stays below `2 log2(n + 1)` and an operation reads O(log n) nodes. Transactions that
/// touch different parts of the tree conflict only where their paths meet and where
/// rebalancing rewrites nodes; the length is a striped counter, as in
/// [`THashMap`](crate::THashMap).
///
/// Lookups clone the value out; keys and values are cloned when a node is rewritten, so wrap
/// large ones in `Arc`. Cloning the map gives a second handle to the same map.
///
/// # Examples
///
/// ```
/// use stm_collections::TMap;
/// use stm_core::atomically;
///
/// let scores = TMap::new();
/// atomically(|tx| {
///     scores.insert(tx, 30, "carol")?;
///     scores.insert(tx, 10, "ann")?;
///     scores.insert(tx, 20, "bob")?;
///     Ok(())
/// });
/// assert_eq!(atomically(|tx| scores.first(tx)), Some((10, "ann")));
/// assert_eq!(atomically(|tx| scores.range(tx, 15..)), vec![(20, "bob"), (30, "carol")]);
/// ```
pub struct TMap<K, V> {
    inner: Arc<Inner<K, V>>,
}

struct Inner<K, V> {
    root: TVar<Link<K, V>>,
    len: StripedCounter,
}

type Handle<K, V> = TVar<Node<K, V>>;
type Link<K, V> = Option<Handle<K, V>>;

#[derive(Clone)]
struct Node<K, V> {
    key: K,
    value: V,
    left: Link<K, V>,
    right: Link<K, V>,
    /// The colour of the link from the parent: red links bind 3-nodes. Left-leaning: only a
    /// left link is ever red, and never two red links in a row.
    red: bool,
}

impl<K, V> Clone for TMap<K, V> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, V> fmt::Debug for TMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TMap").finish_non_exhaustive()
    }
}

#[derive(Clone, Copy)]
enum Side {
    Left,
    Right,
}

impl Side {
    fn other(self) -> Self {
        match self {
            Side::Left => Side::Right,
            Side::Right => Side::Left,
        }
    }
}

impl<K, V> Node<K, V> {
    fn child(&self, side: Side) -> &Link<K, V> {
        match side {
            Side::Left => &self.left,
            Side::Right => &self.right,
        }
    }

    fn child_mut(&mut self, side: Side) -> &mut Link<K, V> {
        match side {
            Side::Left => &mut self.left,
            Side::Right => &mut self.right,
        }
    }
}

/// The tree algorithms (Sedgewick's left-leaning red-black tree), on node handles. Each reads
/// the nodes it needs and writes only the nodes whose fields change.
struct Tree<K, V>(PhantomData<(K, V)>);

impl<K, V> Tree<K, V>
where
    K: Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn same(a: &Link<K, V>, b: &Link<K, V>) -> bool {
        match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => TVar::ref_eq(a, b),
            _ => false,
        }
    }

    fn is_red(tx: &mut Transaction, link: &Link<K, V>) -> StmResult<bool> {
        match link {
            None => Ok(false),
            Some(h) => h.read_with(tx, |n| n.red),
        }
    }

    fn child(tx: &mut Transaction, h: &Handle<K, V>, side: Side) -> StmResult<Link<K, V>> {
        h.read_with(tx, |n| n.child(side).clone())
    }

    /// Whether the left child of `link`'s node is red (false for an empty link).
    fn left_child_is_red(tx: &mut Transaction, link: &Link<K, V>) -> StmResult<bool> {
        match link {
            None => Ok(false),
            Some(h) => {
                let left = Self::child(tx, h, Side::Left)?;
                Self::is_red(tx, &left)
            }
        }
    }

    /// Whether `h`'s left child and that child's left child are both red.
    fn left_left_is_red(tx: &mut Transaction, h: &Handle<K, V>) -> StmResult<bool> {
        let left = Self::child(tx, h, Side::Left)?;
        Ok(Self::is_red(tx, &left)? && Self::left_child_is_red(tx, &left)?)
    }

    fn set_red(tx: &mut Transaction, h: &Handle<K, V>, red: bool) -> StmResult<()> {
        if h.read_with(tx, |n| n.red)? != red {
            h.modify(tx, |mut n| {
                n.red = red;
                n
            })?;
        }
        Ok(())
    }

    fn set_child(
        tx: &mut Transaction,
        h: &Handle<K, V>,
        side: Side,
        link: Link<K, V>,
    ) -> StmResult<()> {
        if !h.read_with(tx, |n| Self::same(n.child(side), &link))? {
            h.modify(tx, |mut n| {
                *n.child_mut(side) = link;
                n
            })?;
        }
        Ok(())
    }

    /// Rotates the child on side `up` into `h`'s place, returning it: a left rotation takes
    /// `up = Right`, a right rotation `up = Left`.
    fn rotate(tx: &mut Transaction, h: Handle<K, V>, up: Side) -> StmResult<Handle<K, V>> {
        let mut hn = h.read(tx)?;
        let x = hn
            .child_mut(up)
            .take()
            .expect("a rotation moves up an existing child");
        let mut xn = x.read(tx)?;
        *hn.child_mut(up) = xn.child_mut(up.other()).take();
        xn.red = hn.red;
        hn.red = true;
        h.write(tx, hn)?;
        *xn.child_mut(up.other()) = Some(h);
        x.write(tx, xn)?;
        Ok(x)
    }

    /// Flips the colours of a node and its children.
    fn flip_colors(tx: &mut Transaction, h: &Handle<K, V>) -> StmResult<()> {
        let mut n = h.read(tx)?;
        n.red = !n.red;
        let children = [n.left.clone(), n.right.clone()];
        h.write(tx, n)?;
        for child in children.into_iter().flatten() {
            child.modify(tx, |mut c| {
                c.red = !c.red;
                c
            })?;
        }
        Ok(())
    }

    /// Restores the left-leaning invariants at `h` on the way up.
    fn balance(tx: &mut Transaction, mut h: Handle<K, V>) -> StmResult<Handle<K, V>> {
        let (left, right) = h.read_with(tx, |n| (n.left.clone(), n.right.clone()))?;
        if Self::is_red(tx, &right)? && !Self::is_red(tx, &left)? {
            h = Self::rotate(tx, h, Side::Right)?;
        }
        if Self::left_left_is_red(tx, &h)? {
            h = Self::rotate(tx, h, Side::Left)?;
        }
        let (left, right) = h.read_with(tx, |n| (n.left.clone(), n.right.clone()))?;
        if Self::is_red(tx, &left)? && Self::is_red(tx, &right)? {
            Self::flip_colors(tx, &h)?;
        }
        Ok(h)
    }

    fn insert(
        tx: &mut Transaction,
        link: Link<K, V>,
        key: K,
        value: V,
    ) -> StmResult<(Handle<K, V>, Option<V>)>
    where
        K: Ord,
    {
        let Some(h) = link else {
            let node = Node {
                key,
                value,
                left: None,
                right: None,
                red: true,
            };
            return Ok((TVar::new(node), None));
        };
        let side = match h.read_with(tx, |n| key.cmp(&n.key))? {
            Ordering::Less => Side::Left,
            Ordering::Greater => Side::Right,
            Ordering::Equal => {
                // The shape does not change: replace the value and stop rebalancing here.
                let mut n = h.read(tx)?;
                let old = std::mem::replace(&mut n.value, value);
                h.write(tx, n)?;
                return Ok((h, Some(old)));
            }
        };
        let below = Self::child(tx, &h, side)?;
        let (child, old) = Self::insert(tx, below, key, value)?;
        Self::set_child(tx, &h, side, Some(child))?;
        if old.is_some() {
            // Only a value changed below: the tree is as balanced as before.
            return Ok((h, old));
        }
        Ok((Self::balance(tx, h)?, None))
    }

    fn move_red_left(tx: &mut Transaction, mut h: Handle<K, V>) -> StmResult<Handle<K, V>> {
        Self::flip_colors(tx, &h)?;
        let right = Self::child(tx, &h, Side::Right)?;
        if Self::left_child_is_red(tx, &right)? {
            let right = right.expect("checked above");
            let rotated = Self::rotate(tx, right, Side::Left)?;
            Self::set_child(tx, &h, Side::Right, Some(rotated))?;
            h = Self::rotate(tx, h, Side::Right)?;
            Self::flip_colors(tx, &h)?;
        }
        Ok(h)
    }

    fn move_red_right(tx: &mut Transaction, mut h: Handle<K, V>) -> StmResult<Handle<K, V>> {
        Self::flip_colors(tx, &h)?;
        if Self::left_left_is_red(tx, &h)? {
            h = Self::rotate(tx, h, Side::Left)?;
            Self::flip_colors(tx, &h)?;
        }
        Ok(h)
    }

    /// Removes the smallest node under `h`; returns the new subtree and the removed entry.
    #[allow(
        clippy::type_complexity,
        reason = "a private helper's (subtree, entry) pair"
    )]
    fn delete_min(tx: &mut Transaction, mut h: Handle<K, V>) -> StmResult<(Link<K, V>, (K, V))> {
        let left = Self::child(tx, &h, Side::Left)?;
        if left.is_none() {
            let n = h.read(tx)?;
            return Ok((n.right, (n.key, n.value)));
        }
        if !Self::is_red(tx, &left)? && !Self::left_child_is_red(tx, &left)? {
            h = Self::move_red_left(tx, h)?;
        }
        let left = Self::child(tx, &h, Side::Left)?.expect("a left child survives move_red_left");
        let (child, entry) = Self::delete_min(tx, left)?;
        Self::set_child(tx, &h, Side::Left, child)?;
        Ok((Some(Self::balance(tx, h)?), entry))
    }

    /// Removes `key`, which is in the subtree under `h`; returns the new subtree and the
    /// removed value.
    fn delete<Q>(tx: &mut Transaction, mut h: Handle<K, V>, key: &Q) -> StmResult<(Link<K, V>, V)>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let removed;
        if h.read_with(tx, |n| key < n.key.borrow())? {
            let left = Self::child(tx, &h, Side::Left)?;
            if !Self::is_red(tx, &left)? && !Self::left_child_is_red(tx, &left)? {
                h = Self::move_red_left(tx, h)?;
            }
            let left = Self::child(tx, &h, Side::Left)?.expect("the key is in the left subtree");
            let (child, value) = Self::delete(tx, left, key)?;
            Self::set_child(tx, &h, Side::Left, child)?;
            removed = value;
        } else {
            let left = Self::child(tx, &h, Side::Left)?;
            if Self::is_red(tx, &left)? {
                h = Self::rotate(tx, h, Side::Left)?;
            }
            let (equal, right) = h.read_with(tx, |n| (key == n.key.borrow(), n.right.clone()))?;
            if equal && right.is_none() {
                return Ok((None, h.read(tx)?.value));
            }
            if !Self::is_red(tx, &right)? && !Self::left_child_is_red(tx, &right)? {
                h = Self::move_red_right(tx, h)?;
            }
            let (equal, right) = h.read_with(tx, |n| (key == n.key.borrow(), n.right.clone()))?;
            let right = right.expect("the key is here or in the right subtree");
            if equal {
                // Replace this node's entry with its successor's, and remove the successor.
                let (child, (k, v)) = Self::delete_min(tx, right)?;
                let mut n = h.read(tx)?;
                n.key = k;
                removed = std::mem::replace(&mut n.value, v);
                n.right = child;
                h.write(tx, n)?;
            } else {
                let (child, value) = Self::delete(tx, right, key)?;
                Self::set_child(tx, &h, Side::Right, child)?;
                removed = value;
            }
        }
        Ok((Some(Self::balance(tx, h)?), removed))
    }
}

impl<K, V> Default for TMap<K, V>
where
    K: Ord + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> TMap<K, V>
where
    K: Ord + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Creates an empty map.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TMap; use stm_core::atomically;
    /// assert!(atomically(|tx| TMap::<u8, u8>::new().is_empty(tx)));
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                root: TVar::new(None),
                len: StripedCounter::new(),
            }),
        }
    }

    /// Creates an empty map; the same as [`new`](Self::new), since a tree has nothing to
    /// allocate ahead. It exists so that code can switch between [`THashMap`](crate::THashMap)
    /// and `TMap`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TMap; use stm_core::atomically;
    /// let map = TMap::<u32, u32>::with_capacity(100);
    /// assert!(atomically(|tx| map.is_empty(tx)));
    /// ```
    #[must_use]
    pub fn with_capacity(capacity: usize) -> Self {
        let _ = capacity;
        Self::new()
    }

    /// A clone of the value for `key`, or `None`.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TMap; use stm_core::atomically;
    /// let map = TMap::new();
    /// atomically(|tx| map.insert(tx, "k".to_string(), 1));
    /// assert_eq!(atomically(|tx| map.get(tx, "k")), Some(1));
    /// ```
    pub fn get<Q>(&self, tx: &mut Transaction, key: &Q) -> StmResult<Option<V>>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.get_with(tx, key, V::clone)
    }

    /// What `f` makes of the value for `key`, without cloning it; `None` if there is none.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TMap; use stm_core::atomically;
    /// let map = TMap::new();
    /// atomically(|tx| map.insert(tx, 1, String::from("one")));
    /// assert_eq!(atomically(|tx| map.get_with(tx, &1, String::len)), Some(3));
    /// ```
    pub fn get_with<Q, R>(
        &self,
        tx: &mut Transaction,
        key: &Q,
        f: impl FnOnce(&V) -> R,
    ) -> StmResult<Option<R>>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.find(tx, key, |n| f(&n.value))
    }

    /// Searches for `key`; on a hit, returns what `hit` makes of its node.
    fn find<Q, R>(
        &self,
        tx: &mut Transaction,
        key: &Q,
        hit: impl FnOnce(&Node<K, V>) -> R,
    ) -> StmResult<Option<R>>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        // Down the tree through borrowed links: no handle is cloned on the way.
        self.inner.root.read_through(tx, |mut link, reader| {
            while let Some(handle) = link {
                let node = reader.read_ref(handle)?;
                link = match key.cmp(node.key.borrow()) {
                    Ordering::Less => &node.left,
                    Ordering::Greater => &node.right,
                    Ordering::Equal => return Ok(Some(hit(node))),
                };
            }
            Ok(None)
        })
    }

    /// Whether the map has an entry for `key`.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TMap; use stm_core::atomically;
    /// let map = TMap::new();
    /// atomically(|tx| map.insert(tx, 1, ()));
    /// assert!(atomically(|tx| map.contains_key(tx, &1)));
    /// ```
    pub fn contains_key<Q>(&self, tx: &mut Transaction, key: &Q) -> StmResult<bool>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        Ok(self.find(tx, key, |_| ())?.is_some())
    }

    /// Sets the value for `key`, returning the value it replaces, if any.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TMap; use stm_core::atomically;
    /// let map = TMap::new();
    /// assert_eq!(atomically(|tx| map.insert(tx, 1, "a")), None);
    /// assert_eq!(atomically(|tx| map.insert(tx, 1, "b")), Some("a"));
    /// ```
    pub fn insert(&self, tx: &mut Transaction, key: K, value: V) -> StmResult<Option<V>> {
        let root = self.inner.root.read(tx)?;
        let (new_root, old) = Tree::<K, V>::insert(tx, root.clone(), key, value)?;
        Tree::<K, V>::set_red(tx, &new_root, false)?;
        let new_root = Some(new_root);
        if !Tree::<K, V>::same(&root, &new_root) {
            self.inner.root.write(tx, new_root)?;
        }
        if old.is_none() {
            self.inner.len.add(tx, 1)?;
        }
        Ok(old)
    }

    /// Removes the entry for `key`, returning its value, if any.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TMap; use stm_core::atomically;
    /// let map = TMap::new();
    /// atomically(|tx| map.insert(tx, 1, "a"));
    /// assert_eq!(atomically(|tx| map.remove(tx, &1)), Some("a"));
    /// assert_eq!(atomically(|tx| map.remove(tx, &1)), None);
    /// ```
    pub fn remove<Q>(&self, tx: &mut Transaction, key: &Q) -> StmResult<Option<V>>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        // The delete assumes the key is present.
        if !self.contains_key(tx, key)? {
            return Ok(None);
        }
        self.remove_present(tx, key).map(Some)
    }

    /// Removes `key`, which the transaction has seen in the map.
    fn remove_present<Q>(&self, tx: &mut Transaction, key: &Q) -> StmResult<V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let old_root = self.inner.root.read(tx)?;
        let root = old_root.clone().expect("a map with a key has a root");
        let (left, right) = root.read_with(tx, |n| (n.left.clone(), n.right.clone()))?;
        if !Tree::<K, V>::is_red(tx, &left)? && !Tree::<K, V>::is_red(tx, &right)? {
            Tree::<K, V>::set_red(tx, &root, true)?;
        }
        let (new_root, removed) = Tree::<K, V>::delete(tx, root, key)?;
        if let Some(r) = &new_root {
            Tree::<K, V>::set_red(tx, r, false)?;
        }
        if !Tree::<K, V>::same(&old_root, &new_root) {
            self.inner.root.write(tx, new_root)?;
        }
        self.inner.len.add(tx, -1)?;
        Ok(removed)
    }

    /// Updates the entry for `key`: `f` gets the current value (`None` if absent) and returns
    /// the new one (`None` removes the entry). Returns the value `f` was given.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TMap; use stm_core::atomically;
    /// let map = TMap::new();
    /// atomically(|tx| map.update(tx, 'a', |n| Some(n.unwrap_or(0) + 1)));
    /// atomically(|tx| map.update(tx, 'a', |n| Some(n.unwrap_or(0) + 1)));
    /// assert_eq!(atomically(|tx| map.get(tx, &'a')), Some(2));
    /// ```
    pub fn update(
        &self,
        tx: &mut Transaction,
        key: K,
        f: impl FnOnce(Option<V>) -> Option<V>,
    ) -> StmResult<Option<V>> {
        let old = self.get(tx, &key)?;
        match f(old.clone()) {
            Some(new) => {
                self.insert(tx, key, new)?;
            }
            None if old.is_some() => {
                self.remove_present(tx, &key)?;
            }
            None => {}
        }
        Ok(old)
    }

    /// The number of entries; reads every stripe of the count, so it conflicts with concurrent
    /// inserts and removes.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TMap; use stm_core::atomically;
    /// let map = TMap::new();
    /// atomically(|tx| { map.insert(tx, 1, 1)?; map.insert(tx, 2, 2) });
    /// assert_eq!(atomically(|tx| map.len(tx)), 2);
    /// ```
    pub fn len(&self, tx: &mut Transaction) -> StmResult<usize> {
        self.inner.len.sum(tx)
    }

    /// Whether the map is empty. Reads only the root.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TMap; use stm_core::atomically;
    /// assert!(atomically(|tx| TMap::<u8, u8>::new().is_empty(tx)));
    /// ```
    pub fn is_empty(&self, tx: &mut Transaction) -> StmResult<bool> {
        self.inner.root.read_with(tx, Option::is_none)
    }

    /// Removes every entry.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TMap; use stm_core::atomically;
    /// let map = TMap::new();
    /// atomically(|tx| { map.insert(tx, 1, 1)?; map.clear(tx) });
    /// assert!(atomically(|tx| map.is_empty(tx)));
    /// ```
    pub fn clear(&self, tx: &mut Transaction) -> StmResult<()> {
        if !self.is_empty(tx)? {
            self.inner.root.write(tx, None)?;
        }
        self.inner.len.reset(tx)
    }

    /// The entry with the smallest (`rightmost == false`) or largest key.
    fn edge(&self, tx: &mut Transaction, rightmost: bool) -> StmResult<Option<(K, V)>> {
        let Some(mut h) = self.inner.root.read(tx)? else {
            return Ok(None);
        };
        loop {
            let next = h.read_with(tx, |n| {
                if rightmost {
                    n.right.clone()
                } else {
                    n.left.clone()
                }
            })?;
            match next {
                Some(child) => h = child,
                None => return h.read_with(tx, |n| Some((n.key.clone(), n.value.clone()))),
            }
        }
    }

    /// The entry with the smallest key, or `None` if the map is empty.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TMap; use stm_core::atomically;
    /// let map = TMap::new();
    /// atomically(|tx| { map.insert(tx, 2, 'b')?; map.insert(tx, 1, 'a') });
    /// assert_eq!(atomically(|tx| map.first(tx)), Some((1, 'a')));
    /// ```
    pub fn first(&self, tx: &mut Transaction) -> StmResult<Option<(K, V)>> {
        self.edge(tx, false)
    }

    /// The entry with the largest key, or `None` if the map is empty.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TMap; use stm_core::atomically;
    /// let map = TMap::new();
    /// atomically(|tx| { map.insert(tx, 2, 'b')?; map.insert(tx, 1, 'a') });
    /// assert_eq!(atomically(|tx| map.last(tx)), Some((2, 'b')));
    /// ```
    pub fn last(&self, tx: &mut Transaction) -> StmResult<Option<(K, V)>> {
        self.edge(tx, true)
    }

    /// Removes and returns the entry with the smallest key; `None` if the map is empty (it
    /// does not wait: combine with [`retry`](stm_core::retry) for that).
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TMap; use stm_core::atomically;
    /// let map = TMap::new();
    /// atomically(|tx| { map.insert(tx, 2, 'b')?; map.insert(tx, 1, 'a') });
    /// assert_eq!(atomically(|tx| map.pop_first(tx)), Some((1, 'a')));
    /// assert_eq!(atomically(|tx| map.len(tx)), 1);
    /// ```
    pub fn pop_first(&self, tx: &mut Transaction) -> StmResult<Option<(K, V)>> {
        let Some((key, value)) = self.first(tx)? else {
            return Ok(None);
        };
        self.remove_present(tx, &key)?;
        Ok(Some((key, value)))
    }

    /// Removes and returns the entry with the largest key; `None` if the map is empty.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TMap; use stm_core::atomically;
    /// let map = TMap::new();
    /// atomically(|tx| { map.insert(tx, 2, 'b')?; map.insert(tx, 1, 'a') });
    /// assert_eq!(atomically(|tx| map.pop_last(tx)), Some((2, 'b')));
    /// ```
    pub fn pop_last(&self, tx: &mut Transaction) -> StmResult<Option<(K, V)>> {
        let Some((key, value)) = self.last(tx)? else {
            return Ok(None);
        };
        self.remove_present(tx, &key)?;
        Ok(Some((key, value)))
    }

    /// Calls `f` on the entries whose keys are in `range`, in key order; stops early when `f`
    /// returns `false`.
    fn walk<R: RangeBounds<K>>(
        tx: &mut Transaction,
        link: &Link<K, V>,
        range: &R,
        f: &mut dyn FnMut(&K, &V) -> bool,
    ) -> StmResult<bool> {
        let Some(h) = link else {
            return Ok(true);
        };
        let (left, right, above_start, below_end) = h.read_with(tx, |n| {
            let above_start = match range.start_bound() {
                Bound::Included(s) => n.key > *s,
                Bound::Excluded(s) => n.key > *s,
                Bound::Unbounded => true,
            };
            let below_end = match range.end_bound() {
                Bound::Included(e) => n.key < *e,
                Bound::Excluded(e) => n.key < *e,
                Bound::Unbounded => true,
            };
            (n.left.clone(), n.right.clone(), above_start, below_end)
        })?;
        // Only subtrees that can hold keys in the range are visited.
        if above_start && !Self::walk(tx, &left, range, f)? {
            return Ok(false);
        }
        let go_on = h.read_with(tx, |n| !range.contains(&n.key) || f(&n.key, &n.value))?;
        if !go_on {
            return Ok(false);
        }
        if below_end {
            return Self::walk(tx, &right, range, f);
        }
        Ok(true)
    }

    /// Calls `f` on every entry in key order.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TMap; use stm_core::atomically;
    /// let map = TMap::new();
    /// atomically(|tx| { map.insert(tx, 2, 'b')?; map.insert(tx, 1, 'a') });
    /// let mut keys = Vec::new();
    /// atomically(|tx| { keys.clear(); map.for_each(tx, |k, _| keys.push(*k)) });
    /// assert_eq!(keys, [1, 2]);
    /// ```
    pub fn for_each(&self, tx: &mut Transaction, mut f: impl FnMut(&K, &V)) -> StmResult<()> {
        let root = self.inner.root.read(tx)?;
        Self::walk(tx, &root, &(..), &mut |k, v| {
            f(k, v);
            true
        })?;
        Ok(())
    }

    /// The entries whose keys are in `range`, cloned, in key order.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TMap; use stm_core::atomically;
    /// let map = TMap::new();
    /// atomically(|tx| { for i in 0..10 { map.insert(tx, i, i * i)?; } Ok(()) });
    /// assert_eq!(atomically(|tx| map.range(tx, 3..=4)), vec![(3, 9), (4, 16)]);
    /// ```
    pub fn range<R: RangeBounds<K>>(
        &self,
        tx: &mut Transaction,
        range: R,
    ) -> StmResult<Vec<(K, V)>> {
        let root = self.inner.root.read(tx)?;
        let mut out = Vec::new();
        Self::walk(tx, &root, &range, &mut |k, v| {
            out.push((k.clone(), v.clone()));
            true
        })?;
        Ok(out)
    }

    /// Every entry, cloned, in key order.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TMap; use stm_core::atomically;
    /// let map = TMap::new();
    /// atomically(|tx| { map.insert(tx, 2, 'b')?; map.insert(tx, 1, 'a') });
    /// assert_eq!(atomically(|tx| map.to_vec(tx)), vec![(1, 'a'), (2, 'b')]);
    /// ```
    pub fn to_vec(&self, tx: &mut Transaction) -> StmResult<Vec<(K, V)>> {
        self.range(tx, ..)
    }

    /// Every key, cloned, in order.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TMap; use stm_core::atomically;
    /// let map = TMap::new();
    /// atomically(|tx| { map.insert(tx, 2, 'b')?; map.insert(tx, 1, 'a') });
    /// assert_eq!(atomically(|tx| map.keys(tx)), vec![1, 2]);
    /// ```
    pub fn keys(&self, tx: &mut Transaction) -> StmResult<Vec<K>> {
        let mut out = Vec::new();
        self.for_each(tx, |k, _| out.push(k.clone()))?;
        Ok(out)
    }

    /// Every value, cloned, in key order.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TMap; use stm_core::atomically;
    /// let map = TMap::new();
    /// atomically(|tx| { map.insert(tx, 2, 'b')?; map.insert(tx, 1, 'a') });
    /// assert_eq!(atomically(|tx| map.values(tx)), vec!['a', 'b']);
    /// ```
    pub fn values(&self, tx: &mut Transaction) -> StmResult<Vec<V>> {
        let mut out = Vec::new();
        self.for_each(tx, |_, v| out.push(v.clone()))?;
        Ok(out)
    }

    /// Checks the red-black invariants and returns the tree's black height, or a description
    /// of the first violation. For tests.
    ///
    /// Checked: keys strictly increase in order; the root is black; no red link leans right
    /// (left-leaning); no red node has a red child; every path from the root to a leaf has
    /// the same number of black nodes; the striped length equals the number of nodes.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TMap; use stm_core::atomically;
    /// let map = TMap::new();
    /// atomically(|tx| { for i in 0..100 { map.insert(tx, i, ())?; } Ok(()) });
    /// let height = atomically(|tx| map.check_invariants(tx)).unwrap();
    /// assert!(height <= 7); // black height of a red-black tree of 100 nodes
    /// ```
    pub fn check_invariants(&self, tx: &mut Transaction) -> StmResult<Result<usize, String>> {
        let root = self.inner.root.read(tx)?;
        if Tree::<K, V>::is_red(tx, &root)? {
            return Ok(Err("the root is red".into()));
        }
        let mut nodes = 0;
        let mut last: Option<K> = None;
        let result = Self::check(tx, &root, false, &mut nodes, &mut last)?;
        if result.is_ok() {
            let len = self.len(tx)?;
            if len != nodes {
                return Ok(Err(format!(
                    "len() is {len} but the tree has {nodes} nodes"
                )));
            }
        }
        Ok(result)
    }

    fn check(
        tx: &mut Transaction,
        link: &Link<K, V>,
        parent_red: bool,
        nodes: &mut usize,
        last: &mut Option<K>,
    ) -> StmResult<Result<usize, String>> {
        let Some(h) = link else {
            return Ok(Ok(1));
        };
        let n = h.read(tx)?;
        if n.red && parent_red {
            return Ok(Err("a red node has a red child".into()));
        }
        if Tree::<K, V>::is_red(tx, &n.right)? {
            return Ok(Err("a red link leans right".into()));
        }
        let left = match Self::check(tx, &n.left, n.red, nodes, last)? {
            Ok(height) => height,
            Err(e) => return Ok(Err(e)),
        };
        if last.as_ref().is_some_and(|l| *l >= n.key) {
            return Ok(Err("keys are out of order".into()));
        }
        *last = Some(n.key.clone());
        *nodes += 1;
        let right = match Self::check(tx, &n.right, n.red, nodes, last)? {
            Ok(height) => height,
            Err(e) => return Ok(Err(e)),
        };
        if left != right {
            return Ok(Err(format!(
                "black heights differ: {left} on the left, {right} on the right"
            )));
        }
        Ok(Ok(left + usize::from(!n.red)))
    }
}
