//! `TMap`: a transactional sorted map, a red-black tree of `TVar` nodes (STMX's `TMAP`).

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Bound, ControlFlow, RangeBounds};
use std::sync::Arc;

use stm_core::{StmResult, TVar, Transaction};

use crate::counter::StripedCounter;

/// A transactional sorted map. STMX's `TMAP`.
///
/// A red-black tree whose every node is a `TVar`, so the depth stays below `2 log2(n + 1)` and
/// an operation reads O(log n) nodes. It is rebalanced bottom-up: an insert or a delete
/// descends once and then changes O(1) nodes amortized (recolourings up the path, at most two
/// rotations for an insert and three for a delete). Transactions that touch different parts
/// of the tree conflict only where their paths meet and where rebalancing rewrites nodes; the
/// length is a striped counter, as in [`THashMap`](crate::THashMap).
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
    /// The node's colour. A red node has black children, and every path from a node down to
    /// an empty link passes the same number of black nodes.
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// One step of a search path: a node, and the side the search left it by.
type Step<K, V> = (Handle<K, V>, Side);

/// The depth of a red-black tree of up to 2^24 entries (`2 log2(n + 1)`).
const PATH_CAPACITY: usize = 48;

/// The tree algorithms: a classic bottom-up red-black tree (CLRS) over node handles, without
/// parent links (a parent link would make every rotation write the moved subtrees too). An
/// operation descends once, recording its path; the fix-up walks back up that path, recolouring
/// and doing at most two rotations for an insert and three for a delete. Each step reads the
/// nodes it needs and writes only nodes whose fields change.
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

    /// Makes `link` the subtree below `parent` (the last step of a path), or the root.
    fn attach(
        tx: &mut Transaction,
        root: &TVar<Link<K, V>>,
        parent: Option<&Step<K, V>>,
        link: Link<K, V>,
    ) -> StmResult<()> {
        match parent {
            Some((p, side)) => Self::set_child(tx, p, *side, link),
            None => {
                if !root.read_with(tx, |r| Self::same(r, &link))? {
                    root.write(tx, link)?;
                }
                Ok(())
            }
        }
    }

    /// Rotates `h`'s child on side `up` into `h`'s place and returns it (the caller attaches
    /// it to `h`'s parent); the risen node gets colour `top_red`, `h` colour `down_red`. A
    /// left rotation takes `up = Right`.
    fn rotate(
        tx: &mut Transaction,
        h: Handle<K, V>,
        up: Side,
        top_red: bool,
        down_red: bool,
    ) -> StmResult<Handle<K, V>> {
        let mut hn = h.read(tx)?;
        let x = hn
            .child_mut(up)
            .take()
            .expect("a rotation moves up an existing child");
        let mut xn = x.read(tx)?;
        *hn.child_mut(up) = xn.child_mut(up.other()).take();
        hn.red = down_red;
        h.write(tx, hn)?;
        *xn.child_mut(up.other()) = Some(h);
        xn.red = top_red;
        x.write(tx, xn)?;
        Ok(x)
    }

    /// Restores the invariants after the red node `z` was attached below the end of `path`
    /// (CLRS `RB-INSERT-FIXUP`): recolour up the path while the uncle is red, then at most two
    /// rotations.
    fn fix_insert(
        tx: &mut Transaction,
        root: &TVar<Link<K, V>>,
        mut path: Vec<Step<K, V>>,
        mut z: Handle<K, V>,
    ) -> StmResult<()> {
        loop {
            let Some((p, p_side)) = path.last().cloned() else {
                return Self::set_red(tx, &z, false); // z is the root
            };
            if !p.read_with(tx, |n| n.red)? {
                return Ok(());
            }
            // A red parent is not the root, so there is a grandparent.
            let (g, g_side) = path[path.len() - 2].clone();
            let uncle = Self::child(tx, &g, g_side.other())?;
            if Self::is_red(tx, &uncle)? {
                Self::set_red(tx, &p, false)?;
                Self::set_red(tx, uncle.as_ref().expect("a red uncle exists"), false)?;
                Self::set_red(tx, &g, true)?;
                path.truncate(path.len() - 2);
                z = g;
                continue;
            }
            // A black uncle: one or two rotations end it.
            if p_side != g_side {
                // Zig-zag: rotate `z` above `p`, so the red pair lines up with `g`.
                let z_up = Self::rotate(tx, p, p_side, true, true)?;
                Self::set_child(tx, &g, g_side, Some(z_up))?;
            }
            let top = Self::rotate(tx, g, g_side, false, true)?;
            path.truncate(path.len() - 2);
            return Self::attach(tx, root, path.last(), Some(top));
        }
    }

    /// Restores the black height after a black node was removed from below the end of
    /// `path` (CLRS `RB-DELETE-FIXUP`): the subtree on the last step's side is one black
    /// short. Recolours up the path while the sibling and its children are black, then at most
    /// three rotations.
    fn fix_delete(
        tx: &mut Transaction,
        root: &TVar<Link<K, V>>,
        mut path: Vec<Step<K, V>>,
    ) -> StmResult<()> {
        while let Some((p, side)) = path.last().cloned() {
            let mut sibling = Self::child(tx, &p, side.other())?
                .expect("a subtree one black short has a sibling");
            if sibling.read_with(tx, |n| n.red)? {
                // Case 1: a red sibling. Rotate it above `p`, so the sibling becomes black.
                let top = Self::rotate(tx, p.clone(), side.other(), false, true)?;
                let at = path.len() - 1;
                Self::attach(
                    tx,
                    root,
                    at.checked_sub(1).map(|i| &path[i]),
                    Some(top.clone()),
                )?;
                path.insert(at, (top, side));
                sibling = Self::child(tx, &p, side.other())?
                    .expect("a red node's children are real nodes");
            }
            let (near, far) = sibling.read_with(tx, |n| {
                (n.child(side).clone(), n.child(side.other()).clone())
            })?;
            let (near_red, far_red) = (Self::is_red(tx, &near)?, Self::is_red(tx, &far)?);
            if !near_red && !far_red {
                // Case 2: push the shortage up to `p`.
                Self::set_red(tx, &sibling, true)?;
                if p.read_with(tx, |n| n.red)? {
                    return Self::set_red(tx, &p, false);
                }
                path.pop();
                continue;
            }
            if !far_red {
                // Case 3: turn the red near nephew into the far one.
                let near_up = Self::rotate(tx, sibling, side, false, true)?;
                Self::set_child(tx, &p, side.other(), Some(near_up.clone()))?;
                sibling = near_up;
            }
            // Case 4: rotate the sibling above `p`; its far child turns black. Done.
            let p_red = p.read_with(tx, |n| n.red)?;
            let far = Self::child(tx, &sibling, side.other())?;
            let top = Self::rotate(tx, p, side.other(), p_red, false)?;
            Self::set_red(tx, far.as_ref().expect("a red far nephew exists"), false)?;
            path.pop();
            return Self::attach(tx, root, path.last(), Some(top));
        }
        Ok(()) // the root absorbs the shortage
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
        match self.search(tx, &key)? {
            (_, Some(h)) => Self::replace_value(tx, &h, value).map(Some),
            (path, None) => self.insert_below(tx, path, key, value).map(|()| None),
        }
    }

    /// Descends once towards `key`: the path from the root, and the node holding `key` if
    /// there is one (the path then ends at its parent; otherwise at the node below which `key`
    /// belongs).
    #[allow(
        clippy::type_complexity,
        reason = "a private helper's (path, node) pair"
    )]
    fn search<Q>(
        &self,
        tx: &mut Transaction,
        key: &Q,
    ) -> StmResult<(Vec<Step<K, V>>, Option<Handle<K, V>>)>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        // Room for the path of a tree of 2^24 entries: one allocation, not one per doubling.
        let mut path: Vec<Step<K, V>> = Vec::with_capacity(PATH_CAPACITY);
        let mut link = self.inner.root.read(tx)?;
        while let Some(h) = link {
            let step = h.read_with(tx, |n| match key.cmp(n.key.borrow()) {
                Ordering::Less => Some((Side::Left, n.left.clone())),
                Ordering::Greater => Some((Side::Right, n.right.clone())),
                Ordering::Equal => None,
            })?;
            let Some((side, next)) = step else {
                return Ok((path, Some(h)));
            };
            path.push((h, side));
            link = next;
        }
        Ok((path, None))
    }

    /// Replaces the value of node `h` (the shape does not change: only `h` is written).
    fn replace_value(tx: &mut Transaction, h: &Handle<K, V>, value: V) -> StmResult<V> {
        let mut old = None;
        h.modify(tx, |mut n| {
            old = Some(std::mem::replace(&mut n.value, value));
            n
        })?;
        Ok(old.expect("modify ran"))
    }

    /// Adds a node for `key`, which is absent, below the end of `path` (from `search`).
    fn insert_below(
        &self,
        tx: &mut Transaction,
        path: Vec<Step<K, V>>,
        key: K,
        value: V,
    ) -> StmResult<()> {
        let z = TVar::new(Node {
            key,
            value,
            left: None,
            right: None,
            red: true,
        });
        Tree::attach(tx, &self.inner.root, path.last(), Some(z.clone()))?;
        Tree::fix_insert(tx, &self.inner.root, path, z)?;
        self.inner.len.add(tx, 1)
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
        match self.search(tx, key)? {
            (path, Some(z)) => self.delete_node(tx, path, z).map(Some),
            (_, None) => Ok(None),
        }
    }

    /// Removes node `z`, reached by `path`, and returns its value. A node with two children
    /// takes its successor's entry, and the successor's node (which has no left child) goes.
    fn delete_node(
        &self,
        tx: &mut Transaction,
        mut path: Vec<Step<K, V>>,
        z: Handle<K, V>,
    ) -> StmResult<V> {
        let (left, right) = z.read_with(tx, |n| (n.left.clone(), n.right.clone()))?;
        let (removed, y, child) = match (left, right) {
            (Some(_), Some(right)) => {
                path.push((z.clone(), Side::Right));
                let mut y = right;
                while let Some(next) = Tree::child(tx, &y, Side::Left)? {
                    path.push((y, Side::Left));
                    y = next;
                }
                let (key, value, child) =
                    y.read_with(tx, |n| (n.key.clone(), n.value.clone(), n.right.clone()))?;
                let mut removed = None;
                z.modify(tx, |mut n| {
                    n.key = key;
                    removed = Some(std::mem::replace(&mut n.value, value));
                    n
                })?;
                (removed.expect("modify ran"), y, child)
            }
            (left, right) => {
                let value = z.read_with(tx, |n| n.value.clone())?;
                (value, z, left.or(right))
            }
        };
        // `y` has at most one child: splice it out.
        let y_red = y.read_with(tx, |n| n.red)?;
        Tree::attach(tx, &self.inner.root, path.last(), child.clone())?;
        if !y_red {
            match &child {
                Some(c) if c.read_with(tx, |n| n.red)? => Tree::set_red(tx, c, false)?,
                _ => Tree::fix_delete(tx, &self.inner.root, path)?,
            }
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
        let (path, found) = self.search(tx, &key)?;
        let old = match &found {
            Some(h) => Some(h.read_with(tx, |n| n.value.clone())?),
            None => None,
        };
        match (f(old.clone()), found) {
            (Some(new), Some(h)) => {
                Self::replace_value(tx, &h, new)?;
            }
            (Some(new), None) => self.insert_below(tx, path, key, new)?,
            (None, Some(h)) => {
                self.delete_node(tx, path, h)?;
            }
            (None, None) => {}
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
        self.pop_edge(tx, Side::Left)
    }

    /// Removes the entry at the far `side` of the tree (one descent).
    fn pop_edge(&self, tx: &mut Transaction, side: Side) -> StmResult<Option<(K, V)>> {
        let Some(mut h) = self.inner.root.read(tx)? else {
            return Ok(None);
        };
        let mut path = Vec::with_capacity(PATH_CAPACITY);
        while let Some(next) = Tree::child(tx, &h, side)? {
            path.push((h, side));
            h = next;
        }
        let key = h.read_with(tx, |n| n.key.clone())?;
        let value = self.delete_node(tx, path, h)?;
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
        self.pop_edge(tx, Side::Right)
    }

    /// Calls `f` on the entries whose keys are in `range`, in key order, until it returns
    /// `false`. An in-order walk with an explicit stack through borrowed links: each node in
    /// or next to the range is read once, and no handle is cloned.
    fn walk<R: RangeBounds<K>>(
        &self,
        tx: &mut Transaction,
        range: &R,
        f: &mut dyn FnMut(&K, &V) -> bool,
    ) -> StmResult<()> {
        let above_start = |key: &K| match range.start_bound() {
            Bound::Included(s) | Bound::Excluded(s) => key > s,
            Bound::Unbounded => true,
        };
        let below_end = |key: &K| match range.end_bound() {
            Bound::Included(e) | Bound::Excluded(e) => key < e,
            Bound::Unbounded => true,
        };
        self.inner.root.read_through(tx, |root, reader| {
            let mut stack: Vec<&Node<K, V>> = Vec::new();
            let mut link = root.as_ref();
            loop {
                // Down the left spine, skipping subtrees wholly before the range.
                while let Some(h) = link {
                    let node = reader.read_ref(h)?;
                    stack.push(node);
                    link = if above_start(&node.key) {
                        node.left.as_ref()
                    } else {
                        None
                    };
                }
                let Some(node) = stack.pop() else {
                    return Ok(());
                };
                if range.contains(&node.key) && !f(&node.key, &node.value) {
                    return Ok(());
                }
                link = if below_end(&node.key) {
                    node.right.as_ref()
                } else {
                    None
                };
            }
        })
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
        self.walk(tx, &(..), &mut |k, v| {
            f(k, v);
            true
        })
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
        let mut out = Vec::new();
        self.walk(tx, &range, &mut |k, v| {
            out.push((k.clone(), v.clone()));
            true
        })?;
        Ok(out)
    }

    /// Calls `f` on the entries whose keys are in `range`, in key order, without cloning
    /// them, until `f` returns [`ControlFlow::Break`]: the borrowing form of
    /// [`range`](Self::range), for callers that only visit.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// # use stm_collections::TMap; use stm_core::atomically;
    /// let map = TMap::new();
    /// atomically(|tx| { for i in 0..10 { map.insert(tx, i, i * i)?; } Ok(()) });
    /// // The first two squares from 3 on that are over 10.
    /// let mut found = Vec::new();
    /// atomically(|tx| {
    ///     found.clear();
    ///     map.range_with(tx, 3.., |k, v| {
    ///         if *v > 10 {
    ///             found.push(*k);
    ///         }
    ///         if found.len() == 2 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    ///     })
    /// });
    /// assert_eq!(found, [4, 5]);
    /// ```
    pub fn range_with<R: RangeBounds<K>>(
        &self,
        tx: &mut Transaction,
        range: R,
        mut f: impl FnMut(&K, &V) -> ControlFlow<()>,
    ) -> StmResult<()> {
        self.walk(tx, &range, &mut |k, v| f(k, v).is_continue())
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
    /// of the first violation. For tests: not part of the supported API.
    ///
    /// Checked: keys strictly increase in order; the root is black; no red node has a red
    /// child; every path from the root to a leaf has the same number of black nodes; the
    /// striped length equals the number of nodes.
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
    #[doc(hidden)]
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
