//! `MegaRef`: a whole world (a tree of maps) in one reference, with conflicts at path
//! granularity (after Christophe Grand's megaref for Clojure).

use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher, Hash};
use std::sync::Arc;

use imbl::OrdMap;
use stm_core::{StmResult, TVar, Transaction};

/// What a path update does to the subtree it reaches, in place (an empty node is pruned).
type Rewrite<'f, K, V> = dyn FnMut(&mut Node<K, V>) + 'f;

/// One node of a world: its value, if any, its children, and how many values its subtree
/// holds. A child exists only while its subtree holds a value.
///
/// Children are held by value, not behind an `Arc` each: copying a map node on a path update
/// then clones leaf children without touching a reference count (a leaf's empty map holds no
/// pointer), and a child's own map shares its structure through `imbl`.
#[derive(Clone)]
struct Node<K, V> {
    value: Option<V>,
    children: OrdMap<K, Node<K, V>>,
    len: usize,
}

impl<K: Ord + Clone, V: Clone> Node<K, V> {
    fn empty() -> Self {
        Node {
            value: None,
            children: OrdMap::new(),
            len: 0,
        }
    }

    fn at(&self, path: &[K]) -> Option<&Node<K, V>> {
        let mut node = self;
        for key in path {
            node = node.children.get(key)?;
        }
        Some(node)
    }

    /// Applies `f` to the subtree at `path`, in place: the maps on the way are copied where
    /// they are shared (`imbl`'s copy-on-write), one lookup per level. Nodes left empty are
    /// pruned on the way back up.
    fn update(&mut self, path: &[K], f: &mut Rewrite<'_, K, V>) {
        let Some((key, rest)) = path.split_first() else {
            return f(self);
        };
        let (old_len, new_len) = match self.children.get_mut(key) {
            Some(child) => {
                let old_len = child.len;
                child.update(rest, f);
                let new_len = child.len;
                if new_len == 0 {
                    self.children.remove(key);
                }
                (old_len, new_len)
            }
            None => {
                let mut child = Node::empty();
                child.update(rest, f);
                let new_len = child.len;
                if new_len > 0 {
                    self.children.insert(key.clone(), child);
                }
                (0, new_len)
            }
        };
        self.len = self.len - old_len + new_len;
    }
}

/// An immutable value of a whole world (or of a subtree): cloning it is O(1), and it shares
/// structure with the worlds it was made from.
///
/// # Examples
///
/// ```
/// use stm_collections::MegaRef;
/// use stm_core::atomically;
///
/// let world = MegaRef::new();
/// atomically(|tx| {
///     world.set_in(tx, &["fruit", "apple"], 3)?;
///     world.set_in(tx, &["fruit", "pear"], 1)
/// });
/// let snapshot = atomically(|tx| world.snapshot(tx));
/// assert_eq!(snapshot.get_in(&["fruit", "apple"]), Some(&3));
/// assert_eq!(snapshot.children(&["fruit"]), ["apple", "pear"]);
/// assert_eq!(snapshot.len(), 2);
/// ```
pub struct World<K, V> {
    root: Option<Arc<Node<K, V>>>,
}

impl<K, V> Clone for World<K, V> {
    fn clone(&self) -> Self {
        World {
            root: self.root.clone(),
        }
    }
}

impl<K: Ord + Clone + fmt::Debug, V: Clone + fmt::Debug> fmt::Debug for World<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Ord + Clone, V: Clone> Default for World<K, V> {
    fn default() -> Self {
        World { root: None }
    }
}

impl<K: Ord + Clone, V: Clone + PartialEq> PartialEq for World<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<K: Ord + Clone, V: Clone> World<K, V> {
    fn node(&self, path: &[K]) -> Option<&Node<K, V>> {
        self.root.as_deref()?.at(path)
    }

    /// The value at `path`, if any.
    ///
    /// # Examples
    ///
    /// See [`World`].
    pub fn get_in(&self, path: &[K]) -> Option<&V> {
        self.node(path)?.value.as_ref()
    }

    /// The keys of the children of `path` that hold values below them, in key order.
    ///
    /// # Examples
    ///
    /// See [`World`].
    pub fn children(&self, path: &[K]) -> Vec<K> {
        self.node(path)
            .map(|n| n.children.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The number of values in the world. O(1).
    ///
    /// # Examples
    ///
    /// See [`World`].
    pub fn len(&self) -> usize {
        self.root.as_ref().map_or(0, |r| r.len)
    }

    /// Whether the world holds no value.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(stm_collections::World::<u8, u8>::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every `(path, value)`, in key order (a node's value before its children's).
    ///
    /// # Examples
    ///
    /// ```
    /// use stm_collections::MegaRef;
    /// use stm_core::atomically;
    ///
    /// let world = MegaRef::new();
    /// atomically(|tx| { world.set_in(tx, &[2], 'b')?; world.set_in(tx, &[1, 5], 'a') });
    /// let all: Vec<_> = atomically(|tx| world.snapshot(tx)).iter().map(|(p, v)| (p, *v)).collect();
    /// assert_eq!(all, [(vec![1, 5], 'a'), (vec![2], 'b')]);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (Vec<K>, &V)> {
        let mut stack: Vec<(Vec<K>, &Node<K, V>)> = Vec::new();
        if let Some(root) = self.root.as_deref() {
            stack.push((Vec::new(), root));
        }
        std::iter::from_fn(move || {
            while let Some((path, node)) = stack.pop() {
                for (key, child) in node.children.iter().rev() {
                    let mut p = path.clone();
                    p.push(key.clone());
                    stack.push((p, child));
                }
                if let Some(value) = &node.value {
                    return Some((path, value));
                }
            }
            None
        })
    }

    /// The world below `path`, as a world of its own (paths relative to `path`). O(1).
    fn sub(&self, path: &[K]) -> World<K, V> {
        if path.is_empty() {
            return self.clone();
        }
        // A node's copy is O(1): its value, and its map (shared).
        let root = self.node(path).map(|n| Arc::new(n.clone()));
        World { root }
    }

    /// This world with `f` applied to the subtree at `path`, in place (see `Node::update`).
    fn update(&self, path: &[K], mut f: impl FnMut(&mut Node<K, V>)) -> Self {
        let mut root = match &self.root {
            // The root is shared with `self`: copy the node (its map is shared below).
            Some(root) => Node::clone(root),
            None => Node::empty(),
        };
        root.update(path, &mut f);
        World {
            root: (root.len > 0).then(|| Arc::new(root)),
        }
    }

    /// This world with the value at `path` replaced by `f(value)`.
    fn alter(&self, path: &[K], f: impl FnOnce(Option<&V>) -> Option<V>) -> Self {
        let mut f = Some(f);
        self.update(path, |node| {
            let f = f.take().expect("applied once");
            let had = node.value.is_some();
            node.value = f(node.value.as_ref());
            node.len = node.len + usize::from(node.value.is_some()) - usize::from(had);
        })
    }
}

/// A world serializes as the sequence of its `(path, value)` pairs in key order.
#[cfg(feature = "serde")]
impl<K, V> serde::Serialize for World<K, V>
where
    K: Ord + Clone + serde::Serialize,
    V: Clone + serde::Serialize,
{
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(self.len()))?;
        for pair in self.iter() {
            seq.serialize_element(&pair)?;
        }
        seq.end()
    }
}

#[cfg(feature = "serde")]
impl<'de, K, V> serde::Deserialize<'de> for World<K, V>
where
    K: Ord + Clone + serde::Deserialize<'de>,
    V: Clone + serde::Deserialize<'de>,
{
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let pairs = Vec::<(Vec<K>, V)>::deserialize(deserializer)?;
        Ok(pairs
            .into_iter()
            .fold(World::default(), |world, (path, value)| {
                world.alter(&path, |_| Some(value))
            }))
    }
}

/// The number of guard stripes a [`MegaRef::new`] has per path level, as megaref's default.
const DEFAULT_STRIPES: usize = 32;
/// Path levels with guards of their own; deeper levels share them again (level modulo this),
/// so that a path's guards never collide with its own ancestors'.
const LEVELS: usize = 8;

struct Shared<K, V> {
    world: TVar<World<K, V>>,
    /// Stripes per path level.
    stripes: usize,
    /// Per path (striped by level and hash): written by every write of that path; read by
    /// every operation on a path below it.
    node_guards: Box<[TVar<u64>]>,
    /// Per path (striped by level and hash): commuted by every write of that path or below it;
    /// read by every operation on that path except a `commute_in`.
    subtree_guards: Box<[TVar<u64>]>,
    /// Deterministic (fixed keys): which paths share a stripe is the same in every run.
    hasher: BuildHasherDefault<DefaultHasher>,
}

/// A whole world (a tree of maps addressed by paths `&[K]`, each node holding an optional
/// value) in one reference, after Christophe Grand's megaref: updates of unrelated paths do not
/// conflict, and the whole world can still be read as one consistent value, in O(1).
///
/// # Conflicts
///
/// Two transactions conflict only when one writes a path that the other reads or writes, or a
/// prefix or extension of it (plus false conflicts when guard stripes collide: about 1 in
/// `stripes` per path level, since each level has its own stripes). `snapshot` conflicts with a write anywhere below what it covers,
/// and `children` with any write below its node. A read-only transaction never conflicts.
///
/// How: the world is one [`TVar`] that writers [`commute`](TVar::commute) (so writers never
/// conflict through it) and that reads do not record. Conflicts come from two sets of guard
/// variables, striped by path level and hash. A path's *node guard* is written by writes of
/// that path and read by every operation below it. Its *subtree guard* is commuted by every
/// write of the path or below it, and read by every operation on the path (except
/// `commute_in`, which reads nothing there).
///
/// A child is listed by `children` while its subtree holds a value; removing the last value
/// below a node removes the node. The empty path `&[]` is the root, which may hold a value too.
///
/// # Examples
///
/// ```
/// use stm_collections::MegaRef;
/// use stm_core::atomically;
///
/// let world: MegaRef<&str, i64> = MegaRef::new();
/// atomically(|tx| {
///     world.set_in(tx, &["ann", "balance"], 100)?;
///     world.set_in(tx, &["bob", "balance"], 0)
/// });
/// // Two transfers touching different accounts would not conflict; this one moves 30.
/// atomically(|tx| {
///     world.alter_in(tx, &["ann", "balance"], |b| b.map(|b| b - 30))?;
///     world.commute_in(tx, &["bob", "balance"], |b| Some(b.copied().unwrap_or(0) + 30))
/// });
/// let all = atomically(|tx| world.snapshot(tx)); // O(1), consistent
/// assert_eq!(all.get_in(&["bob", "balance"]), Some(&30));
/// assert_eq!(all.children(&[]), ["ann", "bob"]);
/// ```
pub struct MegaRef<K, V> {
    shared: Arc<Shared<K, V>>,
    /// The path this handle's paths are relative to (`subref`).
    prefix: Arc<[K]>,
}

impl<K, V> Clone for MegaRef<K, V> {
    fn clone(&self) -> Self {
        MegaRef {
            shared: Arc::clone(&self.shared),
            prefix: Arc::clone(&self.prefix),
        }
    }
}

impl<K, V> fmt::Debug for MegaRef<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MegaRef")
            .field("stripes", &self.shared.stripes)
            .finish_non_exhaustive()
    }
}

impl<K, V> Default for MegaRef<K, V>
where
    K: Hash + Eq + Ord + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> MegaRef<K, V>
where
    K: Hash + Eq + Ord + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// An empty world with 32 guard stripes.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::MegaRef; use stm_core::atomically;
    /// let world = MegaRef::<u32, String>::new();
    /// assert!(atomically(|tx| world.snapshot(tx)).is_empty());
    /// ```
    pub fn new() -> Self {
        Self::with_guards(DEFAULT_STRIPES)
    }

    /// An empty world with `stripes` guard stripes per path level (at least 1): more stripes,
    /// fewer false conflicts between unrelated paths, at 16 variables more per stripe (two
    /// guards on each of 8 levels).
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::MegaRef;
    /// let world = MegaRef::<u32, u32>::with_guards(256);
    /// # drop(world);
    /// ```
    pub fn with_guards(stripes: usize) -> Self {
        let stripes = stripes.max(1);
        MegaRef {
            shared: Arc::new(Shared {
                world: TVar::new(World::default()),
                stripes,
                node_guards: (0..stripes * LEVELS).map(|_| TVar::new(0)).collect(),
                subtree_guards: (0..stripes * LEVELS).map(|_| TVar::new(0)).collect(),
                hasher: BuildHasherDefault::default(),
            }),
            prefix: Arc::from(Vec::new()),
        }
    }

    /// A view of the subtree at `path`: its paths are relative to `path`, and it shares the
    /// world (and its conflicts) with this handle.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::MegaRef; use stm_core::atomically;
    /// let world = MegaRef::new();
    /// let ann = world.subref(&["accounts", "ann"]);
    /// atomically(|tx| ann.set_in(tx, &["balance"], 5));
    /// assert_eq!(atomically(|tx| world.get_in(tx, &["accounts", "ann", "balance"])), Some(5));
    /// ```
    pub fn subref(&self, path: &[K]) -> MegaRef<K, V> {
        MegaRef {
            shared: Arc::clone(&self.shared),
            prefix: self.full(path).into(),
        }
    }

    fn full(&self, path: &[K]) -> Vec<K> {
        let mut full = Vec::with_capacity(self.prefix.len() + path.len());
        full.extend_from_slice(&self.prefix);
        full.extend_from_slice(path);
        full
    }

    /// The guard index of each prefix of `path`, the empty prefix first: its level's block of
    /// stripes, and a stripe in it by hash.
    fn stripes(&self, path: &[K]) -> Vec<usize> {
        let stripes = self.shared.stripes;
        let index =
            |level: usize, hash: u64| (level % LEVELS) * stripes + (hash as usize) % stripes;
        let mut hash = self.shared.hasher.hash_one(0_u8);
        let mut out = Vec::with_capacity(path.len() + 1);
        out.push(index(0, hash));
        for (i, key) in path.iter().enumerate() {
            hash = self.shared.hasher.hash_one((hash, key));
            out.push(index(i + 1, hash));
        }
        out
    }

    /// The guards of an operation on `path` (returns its guard indexes): reads the node guards
    /// of its ancestors (conflicts with writes of a prefix) and, unless it only commutes, its
    /// own subtree guard (conflicts with writes of the path or an extension).
    fn guard_read(
        &self,
        tx: &mut Transaction,
        path: &[K],
        commuting: bool,
    ) -> StmResult<Vec<usize>> {
        let stripes = self.stripes(path);
        let (own, ancestors) = stripes.split_last().expect("the root at least");
        for &s in ancestors {
            self.shared.node_guards[s].read(tx)?;
        }
        if !commuting {
            self.shared.subtree_guards[*own].read(tx)?;
        }
        Ok(stripes)
    }

    /// The guards of a write of `path`: those of [`guard_read`](Self::guard_read), then a
    /// write of its own node guard (a commute for `commute_in`), and a commute of the subtree
    /// guard of every prefix.
    fn guard_write(&self, tx: &mut Transaction, path: &[K], commuting: bool) -> StmResult<()> {
        let stripes = self.guard_read(tx, path, commuting)?;
        let own = &self.shared.node_guards[*stripes.last().expect("the root at least")];
        if commuting {
            own.commute(tx, |n| n.wrapping_add(1))?;
        } else {
            own.modify(tx, |n| n.wrapping_add(1))?;
        }
        for &s in &stripes {
            self.shared.subtree_guards[s].commute(tx, |n| n.wrapping_add(1))?;
        }
        Ok(())
    }

    /// The world as this transaction sees it, without recording the read (the guards read
    /// before it make the conflicts).
    fn world<R>(&self, tx: &mut Transaction, f: impl FnOnce(&World<K, V>) -> R) -> StmResult<R> {
        self.shared.world.read_with_unrecorded(tx, f)
    }

    /// The value at `path`.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::MegaRef; use stm_core::atomically;
    /// let world = MegaRef::new();
    /// atomically(|tx| world.set_in(tx, &[1, 2], "x"));
    /// assert_eq!(atomically(|tx| world.get_in(tx, &[1, 2])), Some("x"));
    /// assert_eq!(atomically(|tx| world.get_in(tx, &[1])), None);
    /// ```
    pub fn get_in(&self, tx: &mut Transaction, path: &[K]) -> StmResult<Option<V>> {
        let path = self.full(path);
        self.guard_read(tx, &path, false)?;
        self.world(tx, |w| w.get_in(&path).cloned())
    }

    /// Sets the value at `path`.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// See [`get_in`](Self::get_in).
    pub fn set_in(&self, tx: &mut Transaction, path: &[K], value: V) -> StmResult<()> {
        self.alter_in(tx, path, |_| Some(value))
    }

    /// Replaces the value at `path` with `f(value)`; `None` removes it.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::MegaRef; use stm_core::atomically;
    /// let world = MegaRef::new();
    /// atomically(|tx| world.alter_in(tx, &["hits"], |n| Some(n.copied().unwrap_or(0) + 1)));
    /// assert_eq!(atomically(|tx| world.get_in(tx, &["hits"])), Some(1));
    /// ```
    pub fn alter_in(
        &self,
        tx: &mut Transaction,
        path: &[K],
        f: impl FnOnce(Option<&V>) -> Option<V>,
    ) -> StmResult<()> {
        let full = self.full(path);
        self.guard_write(tx, &full, false)?;
        let new = self.world(tx, |w| f(w.get_in(&full)))?;
        self.shared
            .world
            .commute(tx, move |w| w.alter(&full, |_| new.clone()))
    }

    /// Clojure's `commute-in`: at commit, `f` is applied to the value at `path` in the latest
    /// world, so transactions that only commute a path never conflict on it (a later
    /// `get_in` of it in the same transaction sees the result). `f` must be pure.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::MegaRef; use stm_core::atomically;
    /// let world = MegaRef::new();
    /// for _ in 0..3 {
    ///     atomically(|tx| world.commute_in(tx, &["visits"], |n| Some(n.copied().unwrap_or(0) + 1)));
    /// }
    /// assert_eq!(atomically(|tx| world.get_in(tx, &["visits"])), Some(3));
    /// ```
    pub fn commute_in(
        &self,
        tx: &mut Transaction,
        path: &[K],
        f: impl Fn(Option<&V>) -> Option<V> + Send + Sync + 'static,
    ) -> StmResult<()> {
        let full = self.full(path);
        self.guard_write(tx, &full, true)?;
        self.shared.world.commute(tx, move |w| w.alter(&full, &f))
    }

    /// Removes the value at `path` (its subtree stays) and returns it.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::MegaRef; use stm_core::atomically;
    /// let world = MegaRef::new();
    /// atomically(|tx| world.set_in(tx, &[1], 'a'));
    /// assert_eq!(atomically(|tx| world.remove_in(tx, &[1])), Some('a'));
    /// assert_eq!(atomically(|tx| world.remove_in(tx, &[1])), None);
    /// ```
    pub fn remove_in(&self, tx: &mut Transaction, path: &[K]) -> StmResult<Option<V>> {
        let full = self.full(path);
        self.guard_write(tx, &full, false)?;
        let old = self.world(tx, |w| w.get_in(&full).cloned())?;
        if old.is_some() {
            self.shared
                .world
                .commute(tx, move |w| w.alter(&full, |_| None))?;
        }
        Ok(old)
    }

    /// Removes `path` and everything below it.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::MegaRef; use stm_core::atomically;
    /// let world = MegaRef::new();
    /// atomically(|tx| { world.set_in(tx, &[1], 'a')?; world.set_in(tx, &[1, 2], 'b') });
    /// atomically(|tx| world.remove_subtree(tx, &[1]));
    /// assert!(atomically(|tx| world.snapshot(tx)).is_empty());
    /// ```
    pub fn remove_subtree(&self, tx: &mut Transaction, path: &[K]) -> StmResult<()> {
        let full = self.full(path);
        self.guard_write(tx, &full, false)?;
        self.shared
            .world
            .commute(tx, move |w| w.update(&full, |n| *n = Node::empty()))
    }

    /// The keys of the children of `path` that hold values below them, in key order.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::MegaRef; use stm_core::atomically;
    /// let world = MegaRef::new();
    /// atomically(|tx| { world.set_in(tx, &["b", "x"], 1)?; world.set_in(tx, &["a"], 2) });
    /// assert_eq!(atomically(|tx| world.children(tx, &[])), ["a", "b"]);
    /// ```
    pub fn children(&self, tx: &mut Transaction, path: &[K]) -> StmResult<Vec<K>> {
        let full = self.full(path);
        self.guard_read(tx, &full, false)?;
        self.world(tx, |w| w.children(&full))
    }

    /// The whole tree (of this view), as an immutable [`World`]. O(1), whatever its size.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// See [`MegaRef`].
    pub fn snapshot(&self, tx: &mut Transaction) -> StmResult<World<K, V>> {
        self.guard_read(tx, &self.prefix, false)?;
        let prefix = Arc::clone(&self.prefix);
        self.world(tx, |w| w.sub(&prefix))
    }
}
