//! `MegaRef`: a whole world (a tree of maps) in one reference, with conflicts at path
//! granularity (after Christophe Grand's megaref for Clojure).

use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use imbl::OrdMap;
use smallvec::SmallVec;
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

/// One change a committed transaction made to a world, kept as a layer over a flat base
/// until a compaction folds it in.
#[derive(Clone)]
enum Change<K, V> {
    /// The value at the path became this (`None`: removed).
    Set(Path<K>, Option<V>),
    /// The path and everything below it were removed.
    Clear(Path<K>),
}

impl<K, V> Change<K, V> {
    fn path(&self) -> &[K] {
        match self {
            Change::Set(path, _) | Change::Clear(path) => path,
        }
    }
}

impl<K: Ord + Clone, V: Clone> Change<K, V> {
    fn apply(&self, root: &mut Node<K, V>) {
        match self {
            Change::Set(path, value) => root.update(path, &mut |node: &mut Node<K, V>| {
                let had = node.value.is_some();
                node.value.clone_from(value);
                node.len = node.len + usize::from(node.value.is_some()) - usize::from(had);
            }),
            Change::Clear(path) => root.update(path, &mut |node: &mut Node<K, V>| {
                *node = Node::empty();
            }),
        }
    }
}

/// A world as a stack of changes over a flat base. A commit pushes one layer (O(1), so that
/// commits of unrelated paths hold the world's lock only briefly); a compaction, done outside
/// the lock, folds the layers into a new base, many changes in one copy of the paths they share.
struct Layer<K, V> {
    /// The flat world under every change of this stack.
    base: Option<Arc<Node<K, V>>>,
    /// This layer's change, over `below`; `None` for the base layer.
    change: Option<Change<K, V>>,
    below: Option<Arc<Layer<K, V>>>,
    /// Changes between this layer and the base, this one included.
    depth: usize,
    /// The hash of this layer's path (`MegaRef`'s stripe hash of the whole path).
    hash: u64,
    /// One bit per path hash (`Filter::bit`) for every change from this layer down to the
    /// base, all bits after a `Clear`: a path whose bit is clear was changed by no layer, so
    /// its value is the base's.
    filter: Filter,
    /// The world up to this layer, made flat on first need and kept.
    flat: OnceLock<Option<Arc<Node<K, V>>>>,
    /// The number of changes committed to the world up to this one, this one included (for a
    /// base: up to the last change folded into it). Rebases keep it: it names a change for
    /// as long as the world lives.
    seq: u64,
    /// For a base folded from layers: their paths, for writers whose snapshot predates the
    /// fold ([`World::changed_since`]).
    history: Option<Arc<History<K>>>,
}

/// The paths of the changes folded into a base: those numbered after `from`, up to the base's
/// own number.
struct History<K> {
    from: u64,
    paths: Vec<(u64, Path<K>)>,
}

impl<K: Clone> History<K> {
    /// The paths of the changes in the stack under `top`, down to its base.
    fn of<V>(top: &Layer<K, V>) -> Self {
        let mut paths = Vec::with_capacity(top.depth);
        let mut layer = top;
        while let (Some(change), Some(below)) = (&layer.change, &layer.below) {
            paths.push((layer.seq, Path::from(change.path())));
            layer = below;
        }
        History {
            from: layer.seq,
            paths,
        }
    }
}

/// Whether a change of `changed` affects an operation on `path`: one is a prefix of the other
/// (equal included).
fn related<K: PartialEq>(changed: &[K], path: &[K]) -> bool {
    changed.starts_with(path) || path.starts_with(changed)
}

impl<K, V> Drop for Layer<K, V> {
    /// Unlinks the stack below one layer at a time: no recursion on a deep stack.
    fn drop(&mut self) {
        let mut below = self.below.take();
        // `into_inner`, not `try_unwrap`: of two threads letting go of a layer at once,
        // exactly one gets it, so neither drops it recursively.
        while let Some(mut layer) = below.and_then(Arc::into_inner) {
            below = layer.below.take();
        }
    }
}

/// An immutable value of a whole world (or of a subtree): cloning it is O(1), and it shares
/// structure with the worlds it was made from.
///
/// A world taken by [`MegaRef::snapshot`] may still carry the last few changes as layers
/// (at most a small constant number, see [`MegaRef`]); `get_in` looks through them, and the
/// first `children`, `len`, `iter` or comparison folds them once, cached for the world's
/// clones.
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
    top: Arc<Layer<K, V>>,
}

impl<K, V> Clone for World<K, V> {
    fn clone(&self) -> Self {
        World {
            top: Arc::clone(&self.top),
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
        World::flat(None)
    }
}

impl<K: Ord + Clone, V: Clone + PartialEq> PartialEq for World<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<K: Ord + Clone, V: Clone> World<K, V> {
    /// A world with no layers over `base`.
    fn flat(base: Option<Arc<Node<K, V>>>) -> Self {
        Self::flat_at(base, 0, None)
    }

    /// A world with no layers over `base`, the fold of the changes up to number `seq`.
    fn flat_at(base: Option<Arc<Node<K, V>>>, seq: u64, history: Option<Arc<History<K>>>) -> Self {
        World {
            top: Arc::new(Layer {
                base,
                change: None,
                below: None,
                depth: 0,
                hash: 0,
                filter: Filter::EMPTY,
                flat: OnceLock::new(),
                seq,
                history,
            }),
        }
    }

    /// The number of changes committed to this world so far.
    fn seq(&self) -> u64 {
        self.top.seq
    }

    /// Whether a change numbered after `seq` (committed since a transaction read this world
    /// at `seq`) touched `path`, a prefix or an extension of it. True, to be safe, when those
    /// changes were folded before the last compaction (a transaction that spanned two).
    fn changed_since(&self, seq: u64, path: &[K]) -> bool {
        let mut layer = &*self.top;
        while layer.seq > seq {
            let (Some(change), Some(below)) = (&layer.change, &layer.below) else {
                return layer.history.as_ref().is_none_or(|h| {
                    h.from > seq
                        || h.paths
                            .iter()
                            .any(|(n, changed)| *n > seq && related(changed, path))
                });
            };
            if related(change.path(), path) {
                return true;
            }
            layer = below;
        }
        false
    }

    /// The world folded flat (computed once per layer, then shared by its clones).
    fn root(&self) -> Option<&Node<K, V>> {
        let top = &*self.top;
        if top.change.is_none() {
            return top.base.as_deref();
        }
        top.flat.get_or_init(|| Self::fold(top)).as_deref()
    }

    /// Folds a stack of layers: its changes, oldest first, applied to one copy of the paths
    /// they touch (`imbl` copies a shared map node once, then updates it in place).
    fn fold(top: &Layer<K, V>) -> Option<Arc<Node<K, V>>> {
        let mut changes = Vec::with_capacity(top.depth);
        let mut layer = top;
        let start = loop {
            if let Some(change) = &layer.change {
                if let Some(flat) = layer.flat.get() {
                    break flat.as_deref();
                }
                changes.push(change);
            }
            match &layer.below {
                Some(below) => layer = below,
                None => break layer.base.as_deref(),
            }
        };
        let mut root = start.cloned().unwrap_or_else(Node::empty);
        for change in changes.into_iter().rev() {
            change.apply(&mut root);
        }
        (root.len > 0).then(|| Arc::new(root))
    }

    /// The number of changes layered over the flat base.
    fn depth(&self) -> usize {
        self.top.depth
    }

    /// This world with `change` (of a path whose stripe hash is `hash`) layered on top. O(1)
    /// (`LAYER_LIMIT` aside).
    fn push(&self, change: &Change<K, V>, hash: u64) -> Self {
        self.push_numbered(change, hash, self.top.seq + 1)
    }

    /// [`push`](Self::push) of the change numbered `seq`.
    fn push_numbered(&self, change: &Change<K, V>, hash: u64, seq: u64) -> Self {
        let top = &self.top;
        let filter = match change {
            Change::Set(..) => top.filter.with(hash),
            Change::Clear(_) => Filter::FULL,
        };
        let world = World {
            top: Arc::new(Layer {
                base: top.base.clone(),
                change: Some(change.clone()),
                below: Some(Arc::clone(top)),
                depth: top.depth + 1,
                hash,
                filter,
                flat: OnceLock::new(),
                seq,
                history: None,
            }),
        };
        if world.depth() > LAYER_LIMIT {
            // Compactions were lost (their transactions aborted): fold here, in the commit.
            let history = Arc::new(History::of(&world.top));
            return World::flat_at(Self::fold(&world.top), seq, Some(history));
        }
        world
    }

    /// This world with the layers up to `folded` (a layer of an earlier version of it)
    /// replaced by `base`, their fold, whose changes' paths are `history`; unchanged when
    /// `folded` is no longer in its stack (another compaction came first). The changes keep
    /// their numbers.
    fn rebase(
        &self,
        folded: &Arc<Layer<K, V>>,
        base: &Option<Arc<Node<K, V>>>,
        history: &Arc<History<K>>,
    ) -> Self {
        let mut above = Vec::new();
        let mut layer = &self.top;
        while !Arc::ptr_eq(layer, folded) {
            match (&layer.change, &layer.below) {
                (Some(change), Some(below)) => {
                    above.push((change, layer.hash, layer.seq));
                    layer = below;
                }
                _ => return self.clone(),
            }
        }
        let mut world = World::flat_at(base.clone(), folded.seq, Some(Arc::clone(history)));
        for (change, hash, seq) in above.into_iter().rev() {
            world = world.push_numbered(change, hash, seq);
        }
        world
    }

    fn node(&self, path: &[K]) -> Option<&Node<K, V>> {
        self.root()?.at(path)
    }

    /// The value at `path`, if any. Looks through the layers (newest first), without folding.
    ///
    /// # Examples
    ///
    /// See [`World`].
    pub fn get_in(&self, path: &[K]) -> Option<&V> {
        let mut layer = &*self.top;
        loop {
            let Some(change) = &layer.change else {
                return layer.base.as_deref()?.at(path)?.value.as_ref();
            };
            if let Some(flat) = layer.flat.get() {
                return flat.as_deref()?.at(path)?.value.as_ref();
            }
            match change {
                // The last keys first: paths of one depth mostly differ there, and
                // comparing them is cheaper than comparing the slices.
                Change::Set(p, value) if p.last() == path.last() && **p == *path => {
                    return value.as_ref();
                }
                Change::Clear(p) if path.starts_with(p) => return None,
                _ => {}
            }
            layer = layer
                .below
                .as_deref()
                .expect("a change layer has one below");
        }
    }

    /// [`get_in`](Self::get_in) of a path whose stripe hash is `hash`: straight to the base
    /// when no layer changed a path with that hash's bit.
    fn get_in_hashed(&self, path: &[K], hash: u64) -> Option<&V> {
        let top = &*self.top;
        if top.filter.may_hold(hash) {
            return self.get_in(path);
        }
        top.base.as_deref()?.at(path)?.value.as_ref()
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

    /// The number of values in the world. O(1) once the world is flat.
    ///
    /// # Examples
    ///
    /// See [`World`].
    pub fn len(&self) -> usize {
        self.root().map_or(0, |r| r.len)
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
        if let Some(root) = self.root() {
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

    /// The world below `path`, as a world of its own (paths relative to `path`). O(1) once
    /// the world is flat.
    fn sub(&self, path: &[K]) -> World<K, V> {
        if path.is_empty() {
            return self.clone();
        }
        // A node's copy is O(1): its value, and its map (shared).
        World::flat(self.node(path).map(|n| Arc::new(n.clone())))
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
        let mut root = Node::empty();
        for (path, value) in pairs {
            Change::Set(path.into_iter().collect(), Some(value)).apply(&mut root);
        }
        Ok(World::flat((root.len > 0).then(|| Arc::new(root))))
    }
}

/// A set of path hashes with false positives (a 1024-bit Bloom filter with one hash): which
/// paths the layers of a world may have changed. With `COMPACT_AT` changes in it, about one
/// lookup in eight walks the layers for nothing (one in sixteen on average over a fold's
/// cycle).
#[derive(Clone, Copy)]
struct Filter([u64; FILTER_WORDS]);

/// The filter's size in words: 1,024 bits.
const FILTER_WORDS: usize = 16;

impl Filter {
    const EMPTY: Filter = Filter([0; FILTER_WORDS]);
    const FULL: Filter = Filter([u64::MAX; FILTER_WORDS]);

    /// The word and bit of `hash`: its top 10 bits (stripes use the low ones).
    fn bit(hash: u64) -> (usize, u64) {
        let i = (hash >> (64 - (FILTER_WORDS * 64).ilog2())) as usize;
        (i / 64, 1 << (i % 64))
    }

    fn with(mut self, hash: u64) -> Filter {
        let (word, bit) = Self::bit(hash);
        self.0[word] |= bit;
        self
    }

    fn may_hold(&self, hash: u64) -> bool {
        let (word, bit) = Self::bit(hash);
        self.0[word] & bit != 0
    }
}

/// A whole path, as a change keeps it (no allocation up to 4 keys).
type Path<K> = SmallVec<[K; 4]>;

/// The guard indexes of a path's prefixes (no allocation up to `LEVELS` levels).
type Stripes = SmallVec<[usize; LEVELS + 1]>;

/// The number of guard stripes a [`MegaRef::new`] has per path level, as megaref's default.
const DEFAULT_STRIPES: usize = 32;
/// Path levels with guards of their own; deeper levels share them again (level modulo this),
/// so that a path's guards never collide with its own ancestors'.
const LEVELS: usize = 8;
/// A write that sees this many changes layered over the world's flat base starts a
/// compaction (one at a time; see [`MegaRef::compact`]). More changes per fold share more of
/// their path copies (on a 64×64 world, 128 random changes copy about 55 rows, 32 changes
/// about 25): 32 → 128 measured 13% less time per update on one thread and 15-20% less on
/// two (`design.md`, *Compaction*).
const COMPACT_AT: usize = 128;
/// More layers than this (compactions lost with their transactions) are folded in the
/// commit that adds one.
const LAYER_LIMIT: usize = 4 * COMPACT_AT;

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
    hasher: foldhash::fast::FixedState,
    /// Set while a transaction folds the world's layers, so that one thread does it; cleared
    /// by the install (which also runs early when the same transaction reads the world again:
    /// at worst a second compaction folds again). A compaction starts anyway past
    /// `2 * COMPACT_AT` layers (the first one's transaction may have aborted). A hint only: no
    /// correctness depends on it.
    compacting: AtomicBool,
}

/// A whole world (a tree of maps addressed by paths `&[K]`, each node holding an optional
/// value) in one reference, after Christophe Grand's megaref: updates of unrelated paths do not
/// conflict, and the whole world can still be read as one consistent value, in O(1).
///
/// # Conflicts
///
/// Two transactions conflict only when one writes a path that the other reads or writes, or a
/// prefix or extension of it (plus false conflicts when guard stripes collide: about 1 in
/// `stripes` per path level, since each level has its own stripes; between two writers only
/// when one writes a path at the depth of one of the other's ancestors, never at commit
/// between writers of paths of one depth). `snapshot` conflicts with a write anywhere
/// below what it covers, and `children` with any write below its node. A read-only
/// transaction never conflicts.
///
/// How: the world is one [`TVar`] that writers commute (so writers never conflict through it)
/// and that reads do not record. Conflicts come from two sets of guard variables, striped by
/// path level and hash. A path's *node guard* is written by writes of that path and read by
/// every operation below it. Its *subtree guard* is commuted by every write of the path or
/// below it, and read by every operation on the path (except `commute_in`, which reads nothing
/// there). A writer's read of its subtree guard keeps its view consistent but is not validated
/// at commit: instead, its commute of the world checks that no change committed since its
/// snapshot touched the path, a prefix or an extension of it, and refuses otherwise (the
/// transaction then conflicts and runs again).
///
/// # Cost
///
/// A commit adds its change to the world as a layer, in O(1), so that writers of unrelated
/// paths hold the world's lock only briefly. A writer that finds 128 layers folds them into a
/// new flat world outside any lock (one copy of the paths they share), in its own
/// transaction. Each layer carries a 1024-bit filter of the paths changed from it down to the
/// base, so the transaction's `get_in` goes straight to the base unless a layer may hold the
/// path; then it walks the layers (at most 512), newest first. A [`World`]'s first
/// `children`, `len` or `iter` folds its layers once.
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
                hasher: foldhash::fast::FixedState::default(),
                compacting: AtomicBool::new(false),
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
            prefix: self.full(path).into_iter().collect(),
        }
    }

    fn full(&self, path: &[K]) -> Path<K> {
        // Pushed one by one: `SmallVec`'s `collect` (its `extend`) costs more for a few keys.
        let mut full = Path::with_capacity(self.prefix.len() + path.len());
        for key in self.prefix.iter().chain(path) {
            full.push(key.clone());
        }
        full
    }

    /// The guard index of each prefix of `path`, the empty prefix first (its level's block of
    /// stripes, and a stripe in it by hash), and the hash of the whole path (for the layers'
    /// filters).
    fn stripes(&self, path: &[K]) -> (Stripes, u64) {
        let stripes = self.shared.stripes;
        let index =
            |level: usize, hash: u64| (level % LEVELS) * stripes + (hash as usize) % stripes;
        // One hasher over the whole path: the hash of each prefix, in one pass.
        let mut hasher = self.shared.hasher.build_hasher();
        let mut out = Stripes::new();
        let mut hash = hasher.finish();
        out.push(index(0, hash));
        for (i, key) in path.iter().enumerate() {
            key.hash(&mut hasher);
            hash = hasher.finish();
            out.push(index(i + 1, hash));
        }
        (out, hash)
    }

    /// The guard indexes and hash of `path` (see [`stripes`](Self::stripes)), after reading
    /// the node guards of its ancestors: every operation conflicts with writes of a prefix.
    fn read_ancestors(&self, tx: &mut Transaction, path: &[K]) -> StmResult<(Stripes, u64)> {
        let (stripes, hash) = self.stripes(path);
        let (_, ancestors) = stripes.split_last().expect("the root at least");
        for &s in ancestors {
            self.shared.node_guards[s].read(tx)?;
        }
        Ok((stripes, hash))
    }

    /// The guards of a read of `path`: its ancestors' node guards (writes of a prefix) and
    /// its own subtree guard (writes of the path or an extension). Returns its hash.
    fn guard_read(&self, tx: &mut Transaction, path: &[K]) -> StmResult<u64> {
        let (stripes, hash) = self.read_ancestors(tx, path)?;
        let own = stripes.last().expect("the root at least");
        self.shared.subtree_guards[*own].read(tx)?;
        Ok(hash)
    }

    /// The guards of a write of `path`: reads of its ancestors' node guards, a read of its own
    /// subtree guard for opacity only (unless it only commutes), a blind write of its own node
    /// guard (a commute for `commute_in`), and a commute of the subtree guard of every prefix.
    /// Returns the path's hash.
    ///
    /// The commit does not validate the subtree guard's read: a writer checks instead, at
    /// commit, that no change since its snapshot touched a related path
    /// ([`checked_change`](Self::checked_change)). So writers of two paths of one depth whose
    /// stripes collide do not conflict, while the read keeps the attempt's view consistent if
    /// its snapshot moves (an extension still fails if a colliding writer committed since the
    /// read: rare, and never at commit).
    fn guard_write(&self, tx: &mut Transaction, path: &[K], commuting: bool) -> StmResult<u64> {
        let (stripes, hash) = self.read_ancestors(tx, path)?;
        let own = stripes.last().expect("the root at least");
        if !commuting {
            self.shared.subtree_guards[*own].read_with_opacity_only(tx, |_| ())?;
        }
        let node = &self.shared.node_guards[*own];
        if commuting {
            node.commute(tx, |n| n.wrapping_add(1))?;
        } else {
            // A blind write: it bumps the version that operations below the path read, and
            // it neither reads the guard (writers of colliding stripes do not conflict) nor
            // waits for its lock as a commute does (a commit of two writes could then wait
            // on another that waits on it, each yielding for thousands of tries: 25 ants on
            // 2 cores went from 390,000 to 20,000 moves a second).
            node.write(tx, 0)?;
        }
        for &s in &stripes {
            self.shared.subtree_guards[s].commute(tx, |n| n.wrapping_add(1))?;
        }
        Ok(hash)
    }

    /// The number of changes in the committed world of this transaction's snapshot (its own
    /// changes left out), for [`checked_change`](Self::checked_change). Read before the world
    /// itself: a snapshot that moves in between only makes the check cover more.
    fn seen_seq(&self, tx: &mut Transaction) -> StmResult<u64> {
        self.shared
            .world
            .read_committed_with_unrecorded(tx, World::seq)
    }

    /// The world as this transaction sees it, without recording the read (the guards read
    /// before it make the conflicts).
    fn world<R>(&self, tx: &mut Transaction, f: impl FnOnce(&World<K, V>) -> R) -> StmResult<R> {
        self.shared.world.read_with_unrecorded(tx, f)
    }

    /// Layers `change` (of a path whose hash is `hash`) on the world at commit, or only checks
    /// its path if `!layer`, unless a change committed since this transaction's snapshot
    /// (numbered after `since`, see [`seen_seq`](Self::seen_seq)) touched that path, a prefix
    /// or an extension of it: then the commit conflicts. A checked commute: writers of
    /// unrelated paths never conflict through the world. Then compacts if the world this
    /// transaction saw had `seen` layers or more.
    fn checked_change(
        &self,
        tx: &mut Transaction,
        seen: usize,
        since: u64,
        (change, hash): (Change<K, V>, u64),
        layer: bool,
    ) -> StmResult<()> {
        self.shared.world.commute_checked(tx, move |committed, w| {
            if committed.changed_since(since, change.path()) {
                return None;
            }
            Some(if layer {
                w.push(&change, hash)
            } else {
                w.clone()
            })
        })?;
        self.compact(tx, seen)
    }

    /// Folds the layers of the latest committed world into a new flat base, here, outside
    /// the world's lock, and installs it at commit (a commute that keeps the layers committed
    /// meanwhile). Does nothing below `COMPACT_AT` layers or while another transaction
    /// compacts; if this transaction aborts, the next compaction past `2 * COMPACT_AT` layers
    /// (or the commit past `LAYER_LIMIT`) takes over.
    fn compact(&self, tx: &mut Transaction, seen: usize) -> StmResult<()> {
        let shared = &self.shared;
        // Loaded before the swap: while a compaction runs, every writer passes here, and a
        // swap would write the flag's line from every core.
        if seen < COMPACT_AT
            || (seen < 2 * COMPACT_AT
                && (shared.compacting.load(Ordering::Relaxed)
                    || shared.compacting.swap(true, Ordering::Acquire)))
        {
            return Ok(());
        }
        // The latest committed world: this transaction's own layers are not in its stack yet.
        let latest = shared.world.read_atomic();
        if latest.depth() < COMPACT_AT {
            shared.compacting.store(false, Ordering::Release);
            return Ok(());
        }
        latest.root(); // folds, and keeps the fold in the layer for readers that walk to it
        let folded = Arc::clone(&latest.top);
        let base = folded.flat.get().cloned().flatten();
        let history = Arc::new(History::of(&folded));
        let shared = Arc::clone(shared);
        self.shared.world.commute(tx, move |w| {
            shared.compacting.store(false, Ordering::Release);
            w.rebase(&folded, &base, &history)
        })
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
        let hash = self.guard_read(tx, &path)?;
        self.world(tx, |w| w.get_in_hashed(&path, hash).cloned())
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
        let hash = self.guard_write(tx, &full, false)?;
        let since = self.seen_seq(tx)?;
        let (new, seen) = self.world(tx, |w| (f(w.get_in_hashed(&full, hash)), w.depth()))?;
        self.checked_change(tx, seen, since, (Change::Set(full, new), hash), true)
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
        let hash = self.guard_write(tx, &full, true)?;
        let seen = self.world(tx, World::depth)?;
        self.shared.world.commute(tx, move |w| {
            let new = f(w.get_in_hashed(&full, hash));
            w.push(&Change::Set(full.clone(), new), hash)
        })?;
        self.compact(tx, seen)
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
        let hash = self.guard_write(tx, &full, false)?;
        let since = self.seen_seq(tx)?;
        let (old, seen) = self.world(tx, |w| (w.get_in_hashed(&full, hash).cloned(), w.depth()))?;
        // Checked even when there was nothing to remove: that finding must still hold at commit.
        let change = (Change::Set(full, None), hash);
        self.checked_change(tx, seen, since, change, old.is_some())?;
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
        let hash = self.guard_write(tx, &full, false)?;
        let since = self.seen_seq(tx)?;
        let seen = self.world(tx, World::depth)?;
        self.checked_change(tx, seen, since, (Change::Clear(full), hash), true)
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
        self.guard_read(tx, &full)?;
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
        self.guard_read(tx, &self.prefix)?;
        let prefix = Arc::clone(&self.prefix);
        self.world(tx, |w| w.sub(&prefix))
    }
}
