//! `THashMap`: a transactional hash map (STMX's `THASH-TABLE`).

use std::borrow::Borrow;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, OnceLock};

use stm_core::{StmResult, TVar, Transaction};

use crate::counter::StripedCounter;

/// The fewest buckets a table has.
const MIN_BUCKETS: usize = 16;
/// How many times a map can double: far more than memory allows.
const GENERATIONS: usize = 48;
/// An insert that leaves its bucket this long checks the load factor (and so reads every
/// stripe of the length). With a good hash, short buckets are the rule until the table is full.
const CHECK_LOAD_AT: usize = 3;

/// The hasher of a [`THashMap`] built without one: foldhash's, seeded at random for each map
/// (see [`THashMap`], *Hashing*).
///
/// # Examples
///
/// ```
/// use stm_collections::{DefaultHashBuilder, THashMap};
///
/// let map: THashMap<u64, u64, DefaultHashBuilder> = THashMap::new();
/// # drop(map);
/// ```
pub type DefaultHashBuilder = foldhash::fast::RandomState;

/// A transactional hash map. STMX's `THASH-TABLE`.
///
/// Every method takes the transaction, so map operations compose with any other transactional
/// code: moving an entry from one map to another is one atomic step.
///
/// # Conflicts
///
/// The map is an array of buckets, each its own `TVar`, so operations on keys in different
/// buckets do not conflict. There is no hot `TVar` that every insert writes:
///
/// - The length is a striped counter: each thread adds to its own stripe. [`len`](Self::len)
///   sums the stripes, so it conflicts with concurrent inserts and removes (a consistent length
///   must), but inserts do not conflict with each other through it.
/// - The table is found through a generation number that only a resize writes. A resize (the
///   table doubles when it holds more entries than buckets) reads and rewrites every bucket,
///   so it conflicts with everything, once per doubling.
///
/// # Hashing
///
/// Keys are hashed with [`DefaultHashBuilder`] (foldhash, the default hash of `hashbrown`),
/// seeded at random for each map: several times cheaper than `std`'s SipHash on short keys.
/// Its resistance to hash flooding rests on the seed staying secret and is weaker than
/// SipHash's; for keys an adversary chooses, build the map with
/// `std::collections::hash_map::RandomState` through [`with_hasher`](Self::with_hasher).
///
/// Keys and values are cloned out on reads (`get` returns a clone) and a bucket's entries are
/// cloned when it is written; wrap large values in `Arc`. Cloning the map gives a second handle
/// to the same map.
///
/// # Examples
///
/// ```
/// use stm_collections::THashMap;
/// use stm_core::atomically;
///
/// let (from, to) = (THashMap::new(), THashMap::new());
/// atomically(|tx| from.insert(tx, "apple", 3));
/// // Move an entry between maps atomically.
/// atomically(|tx| {
///     if let Some(n) = from.remove(tx, "apple")? {
///         to.insert(tx, "apple", n)?;
///     }
///     Ok(())
/// });
/// assert_eq!(atomically(|tx| to.get(tx, "apple")), Some(3));
/// assert!(atomically(|tx| from.is_empty(tx)));
/// ```
pub struct THashMap<K, V, S = DefaultHashBuilder> {
    inner: Arc<Inner<K, V, S>>,
}

struct Inner<K, V, S> {
    /// Which of `tables` is current; written only by a resize.
    generation: TVar<usize>,
    /// Table `g` has `base << g` buckets. A table is allocated when the map first grows into
    /// it and then stays; the resize empties the buckets of the table it leaves.
    tables: Box<[OnceLock<Table<K, V>>]>,
    base: usize,
    len: StripedCounter,
    hasher: S,
}

/// A bucket: the entries whose hashes land here, in no order.
type Bucket<K, V> = TVar<Entries<K, V>>;

/// A bucket's entries. With a good hash and at most one entry per bucket on average (the table
/// doubles beyond that), most buckets hold one entry or none: that entry lives in the bucket's
/// value itself, so a lookup misses on two cache lines (the variable, the value), not three
/// (and a `Vec`'s buffer).
#[derive(Clone)]
enum Entries<K, V> {
    None,
    One((K, V)),
    Many(Vec<(K, V)>),
}

impl<K, V> std::ops::Deref for Entries<K, V> {
    type Target = [(K, V)];

    fn deref(&self) -> &[(K, V)] {
        match self {
            Entries::None => &[],
            Entries::One(entry) => std::slice::from_ref(entry),
            Entries::Many(entries) => entries,
        }
    }
}

impl<K: Clone + Eq, V: Clone> Entries<K, V> {
    /// These entries with `key` set to `value` (an existing entry keeps its key), and the value
    /// replaced. Allocates only for a bucket of two entries or more.
    fn inserted(&self, key: K, value: V) -> (Self, Option<V>) {
        match self {
            Entries::None => (Entries::One((key, value)), None),
            Entries::One((k, v)) if *k == key => {
                (Entries::One((k.clone(), value)), Some(v.clone()))
            }
            Entries::One(entry) => (Entries::Many(vec![entry.clone(), (key, value)]), None),
            Entries::Many(entries) => {
                let mut new = Vec::with_capacity(entries.len() + 1);
                new.extend_from_slice(entries);
                let old = match new.iter_mut().find(|(k, _)| *k == key) {
                    Some(entry) => Some(std::mem::replace(&mut entry.1, value)),
                    None => {
                        new.push((key, value));
                        None
                    }
                };
                (Entries::Many(new), old)
            }
        }
    }

    /// These entries without `key`, and its value; `None` if `key` is absent.
    fn removed<Q>(&self, key: &Q) -> Option<(Self, V)>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        match self {
            Entries::One((k, v)) if k.borrow() == key => Some((Entries::None, v.clone())),
            Entries::None | Entries::One(_) => None,
            Entries::Many(entries) => {
                let at = entries.iter().position(|(k, _)| k.borrow() == key)?;
                let mut new = entries.clone();
                let (_, old) = new.swap_remove(at);
                Some((new.into(), old))
            }
        }
    }
}

impl<K, V> From<Vec<(K, V)>> for Entries<K, V> {
    fn from(mut entries: Vec<(K, V)>) -> Self {
        match entries.len() {
            0 => Entries::None,
            1 => Entries::One(entries.pop().expect("one entry")),
            _ => Entries::Many(entries),
        }
    }
}

struct Table<K, V> {
    buckets: Box<[Bucket<K, V>]>,
}

impl<K, V> Table<K, V>
where
    K: Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn new(buckets: usize) -> Self {
        debug_assert!(buckets.is_power_of_two());
        Self {
            buckets: (0..buckets).map(|_| TVar::new(Entries::None)).collect(),
        }
    }

    fn bucket(&self, hash: u64) -> &Bucket<K, V> {
        // Truncating the hash is fine: only its low bits pick the bucket.
        &self.buckets[hash as usize & (self.buckets.len() - 1)]
    }
}

impl<K, V, S> Clone for THashMap<K, V, S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, V, S> fmt::Debug for THashMap<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("THashMap").finish_non_exhaustive()
    }
}

impl<K, V> Default for THashMap<K, V>
where
    K: Clone + Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> THashMap<K, V>
where
    K: Clone + Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Creates an empty map.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::THashMap; use stm_core::atomically;
    /// let map = THashMap::<u32, String>::new();
    /// assert_eq!(atomically(|tx| map.len(tx)), 0);
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// Creates an empty map with room for about `capacity` entries before it first grows.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::THashMap; use stm_core::atomically;
    /// let map = THashMap::with_capacity(1000);
    /// atomically(|tx| map.insert(tx, 1, 'a'));
    /// ```
    #[must_use]
    pub fn with_capacity(capacity: usize) -> Self {
        Self::with_capacity_and_hasher(capacity, DefaultHashBuilder::default())
    }
}

impl<K, V, S> THashMap<K, V, S>
where
    K: Clone + Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher,
{
    /// Creates an empty map that hashes keys with `hasher` (STMX's `:hash`), as
    /// `std::collections::HashMap::with_hasher` does: a faster hash for trusted keys, or a
    /// deterministic one.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::hash::BuildHasherDefault;
    /// use std::collections::hash_map::DefaultHasher;
    /// use stm_collections::THashMap;
    /// use stm_core::atomically;
    ///
    /// // A deterministic hash (the same buckets in every run).
    /// let map: THashMap<&str, u32, BuildHasherDefault<DefaultHasher>> =
    ///     THashMap::with_hasher(BuildHasherDefault::default());
    /// atomically(|tx| map.insert(tx, "a", 1));
    /// assert_eq!(atomically(|tx| map.get(tx, "a")), Some(1));
    /// ```
    #[must_use]
    pub fn with_hasher(hasher: S) -> Self {
        Self::with_capacity_and_hasher(0, hasher)
    }

    /// [`with_capacity`](THashMap::with_capacity) and [`with_hasher`](Self::with_hasher).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::collections::hash_map::RandomState;
    /// # use stm_collections::THashMap; use stm_core::atomically;
    /// let map = THashMap::with_capacity_and_hasher(100, RandomState::new());
    /// atomically(|tx| map.insert(tx, 1, 'a'));
    /// ```
    #[must_use]
    pub fn with_capacity_and_hasher(capacity: usize, hasher: S) -> Self {
        let base = capacity.max(MIN_BUCKETS).next_power_of_two();
        let tables: Box<[OnceLock<Table<K, V>>]> =
            (0..GENERATIONS).map(|_| OnceLock::new()).collect();
        let _ = tables[0].set(Table::new(base));
        Self {
            inner: Arc::new(Inner {
                generation: TVar::new(0),
                tables,
                base,
                len: StripedCounter::new(),
                hasher,
            }),
        }
    }

    fn table(&self, tx: &mut Transaction) -> StmResult<&Table<K, V>> {
        let generation = self.inner.generation.read(tx)?;
        Ok(self.inner.tables[generation]
            .get()
            .expect("the current table is allocated before it becomes current"))
    }

    fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.inner.hasher.hash_one(key)
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
    /// # use stm_collections::THashMap; use stm_core::atomically;
    /// let map = THashMap::new();
    /// atomically(|tx| map.insert(tx, "k".to_string(), 1));
    /// assert_eq!(atomically(|tx| map.get(tx, "k")), Some(1)); // borrowed key
    /// ```
    pub fn get<Q>(&self, tx: &mut Transaction, key: &Q) -> StmResult<Option<V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
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
    /// # use stm_collections::THashMap; use stm_core::atomically;
    /// let map = THashMap::new();
    /// atomically(|tx| map.insert(tx, "big", vec![0_u8; 4096]));
    /// assert_eq!(atomically(|tx| map.get_with(tx, "big", Vec::len)), Some(4096));
    /// ```
    pub fn get_with<Q, R>(
        &self,
        tx: &mut Transaction,
        key: &Q,
        f: impl FnOnce(&V) -> R,
    ) -> StmResult<Option<R>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        self.table(tx)?.bucket(hash).read_with(tx, |entries| {
            entries
                .iter()
                .find(|(k, _)| k.borrow() == key)
                .map(|(_, v)| f(v))
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
    /// # use stm_collections::THashMap; use stm_core::atomically;
    /// let map = THashMap::new();
    /// atomically(|tx| map.insert(tx, 1, ()));
    /// assert!(atomically(|tx| map.contains_key(tx, &1)));
    /// ```
    pub fn contains_key<Q>(&self, tx: &mut Transaction, key: &Q) -> StmResult<bool>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        self.table(tx)?
            .bucket(hash)
            .read_with(tx, |entries| entries.iter().any(|(k, _)| k.borrow() == key))
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
    /// # use stm_collections::THashMap; use stm_core::atomically;
    /// let map = THashMap::new();
    /// assert_eq!(atomically(|tx| map.insert(tx, 1, "a")), None);
    /// assert_eq!(atomically(|tx| map.insert(tx, 1, "b")), Some("a"));
    /// ```
    pub fn insert(&self, tx: &mut Transaction, key: K, value: V) -> StmResult<Option<V>> {
        let hash = self.hash(&key);
        let old = self.rewrite(tx, hash, |entries| {
            let (new, old) = entries.inserted(key, value);
            let delta = if old.is_some() { 0 } else { 1 };
            Some((new, delta, old))
        })?;
        Ok(old.flatten())
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
    /// # use stm_collections::THashMap; use stm_core::atomically;
    /// let map = THashMap::new();
    /// atomically(|tx| map.insert(tx, 1, "a"));
    /// assert_eq!(atomically(|tx| map.remove(tx, &1)), Some("a"));
    /// assert_eq!(atomically(|tx| map.remove(tx, &1)), None);
    /// ```
    pub fn remove<Q>(&self, tx: &mut Transaction, key: &Q) -> StmResult<Option<V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        self.rewrite(tx, hash, |entries| {
            let (new, old) = entries.removed(key)?;
            Some((new, -1, old))
        })
    }

    /// Updates the entry for `key` in place: `f` gets the current value (`None` if absent) and
    /// returns the new one (`None` removes the entry). Returns the value `f` was given.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::THashMap; use stm_core::atomically;
    /// let counts = THashMap::new();
    /// for word in ["a", "b", "a"] {
    ///     atomically(|tx| counts.update(tx, word, |n| Some(n.unwrap_or(0) + 1)));
    /// }
    /// assert_eq!(atomically(|tx| counts.get(tx, "a")), Some(2));
    /// ```
    pub fn update(
        &self,
        tx: &mut Transaction,
        key: K,
        f: impl FnOnce(Option<V>) -> Option<V>,
    ) -> StmResult<Option<V>> {
        let hash = self.hash(&key);
        let old = self.rewrite(tx, hash, |entries| {
            let at = entries.iter().position(|(k, _)| *k == key);
            let old = at.map(|i| entries[i].1.clone());
            let value = f(old.clone());
            let mut new = entries.to_vec();
            let delta = match (at, value) {
                (Some(i), Some(value)) => {
                    new[i].1 = value;
                    0
                }
                (Some(i), None) => {
                    new.swap_remove(i);
                    -1
                }
                (None, Some(value)) => {
                    new.push((key, value));
                    1
                }
                // Absent and staying absent: nothing to write.
                (None, None) => return None,
            };
            Some((new.into(), delta, old))
        })?;
        Ok(old.flatten())
    }

    /// Replaces the bucket of `hash` with what `edit` makes of its entries: the new entries,
    /// the change in length and a result, or `None` to leave the bucket as it is (unwritten,
    /// so that a lookup-only path conflicts with nobody). Then counts the change and grows the
    /// table if the bucket is long and the map full.
    fn rewrite<R>(
        &self,
        tx: &mut Transaction,
        hash: u64,
        edit: impl FnOnce(&Entries<K, V>) -> Option<(Entries<K, V>, isize, R)>,
    ) -> StmResult<Option<R>> {
        let bucket = self.table(tx)?.bucket(hash);
        let Some((entries, delta, out)) = bucket.read_with(tx, |entries| edit(entries))? else {
            return Ok(None);
        };
        let bucket_len = entries.len();
        bucket.write(tx, entries)?;
        if delta != 0 {
            self.inner.len.add(tx, delta)?;
        }
        if delta > 0 && bucket_len >= CHECK_LOAD_AT {
            self.grow_if_full(tx)?;
        }
        Ok(Some(out))
    }

    /// Doubles the table if it holds more entries than buckets.
    fn grow_if_full(&self, tx: &mut Transaction) -> StmResult<()> {
        let generation = self.inner.generation.read(tx)?;
        let old = self.table(tx)?;
        if self.inner.len.sum(tx)? <= old.buckets.len() {
            return Ok(());
        }
        let next = generation + 1;
        assert!(
            next < GENERATIONS,
            "THashMap: cannot grow past {} doublings",
            GENERATIONS - 1
        );
        // Allocated once, outside any commit: a resize that aborts leaves it empty for the
        // next try, since its bucket writes were never published.
        let new = self.inner.tables[next].get_or_init(|| Table::new(self.inner.base << next));
        let mask = new.buckets.len() - 1;
        let mut fresh: Vec<Vec<(K, V)>> = vec![Vec::new(); new.buckets.len()];
        for bucket in old.buckets.iter() {
            let entries = bucket.read(tx)?;
            if entries.is_empty() {
                continue;
            }
            for (k, v) in entries.iter().cloned() {
                let i = self.hash(&k) as usize & mask;
                fresh[i].push((k, v));
            }
            bucket.write(tx, Entries::None)?;
        }
        for (bucket, entries) in new.buckets.iter().zip(fresh) {
            if !entries.is_empty() {
                bucket.write(tx, entries.into())?;
            }
        }
        self.inner.generation.write(tx, next)
    }

    /// The number of entries. Reads every stripe of the count: it conflicts with concurrent
    /// inserts and removes, so keep it out of hot transactions.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::THashMap; use stm_core::atomically;
    /// let map = THashMap::new();
    /// atomically(|tx| { map.insert(tx, 1, 1)?; map.insert(tx, 2, 2) });
    /// assert_eq!(atomically(|tx| map.len(tx)), 2);
    /// ```
    pub fn len(&self, tx: &mut Transaction) -> StmResult<usize> {
        self.inner.len.sum(tx)
    }

    /// Whether the map is empty; as costly as [`len`](Self::len).
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::THashMap; use stm_core::atomically;
    /// assert!(atomically(|tx| THashMap::<u8, u8>::new().is_empty(tx)));
    /// ```
    pub fn is_empty(&self, tx: &mut Transaction) -> StmResult<bool> {
        Ok(self.len(tx)? == 0)
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
    /// # use stm_collections::THashMap; use stm_core::atomically;
    /// let map = THashMap::new();
    /// atomically(|tx| { map.insert(tx, 1, 1)?; map.clear(tx) });
    /// assert!(atomically(|tx| map.is_empty(tx)));
    /// ```
    pub fn clear(&self, tx: &mut Transaction) -> StmResult<()> {
        let table = self.table(tx)?;
        for bucket in table.buckets.iter() {
            if !bucket.read_with(tx, |entries| entries.is_empty())? {
                bucket.write(tx, Entries::None)?;
            }
        }
        self.inner.len.reset(tx)
    }

    /// Calls `f` on every entry, in no particular order.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::THashMap; use stm_core::atomically;
    /// let map = THashMap::new();
    /// atomically(|tx| { map.insert(tx, 1, 10)?; map.insert(tx, 2, 20) });
    /// let mut sum = 0;
    /// atomically(|tx| { sum = 0; map.for_each(tx, |_, v| sum += v) });
    /// assert_eq!(sum, 30);
    /// ```
    pub fn for_each(&self, tx: &mut Transaction, mut f: impl FnMut(&K, &V)) -> StmResult<()> {
        let table = self.table(tx)?;
        for bucket in table.buckets.iter() {
            bucket.read_with(tx, |entries| {
                for (k, v) in entries.iter() {
                    f(k, v);
                }
            })?;
        }
        Ok(())
    }

    /// Every entry, cloned, in no particular order.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::THashMap; use stm_core::atomically;
    /// let map = THashMap::new();
    /// atomically(|tx| map.insert(tx, 1, 'a'));
    /// assert_eq!(atomically(|tx| map.to_vec(tx)), vec![(1, 'a')]);
    /// ```
    pub fn to_vec(&self, tx: &mut Transaction) -> StmResult<Vec<(K, V)>> {
        let mut out = Vec::new();
        self.for_each(tx, |k, v| out.push((k.clone(), v.clone())))?;
        Ok(out)
    }

    /// Every key, cloned, in no particular order.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::THashMap; use stm_core::atomically;
    /// let map = THashMap::new();
    /// atomically(|tx| map.insert(tx, 1, 'a'));
    /// assert_eq!(atomically(|tx| map.keys(tx)), vec![1]);
    /// ```
    pub fn keys(&self, tx: &mut Transaction) -> StmResult<Vec<K>> {
        let mut out = Vec::new();
        self.for_each(tx, |k, _| out.push(k.clone()))?;
        Ok(out)
    }

    /// Every value, cloned, in no particular order.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::THashMap; use stm_core::atomically;
    /// let map = THashMap::new();
    /// atomically(|tx| map.insert(tx, 1, 'a'));
    /// assert_eq!(atomically(|tx| map.values(tx)), vec!['a']);
    /// ```
    pub fn values(&self, tx: &mut Transaction) -> StmResult<Vec<V>> {
        let mut out = Vec::new();
        self.for_each(tx, |_, v| out.push(v.clone()))?;
        Ok(out)
    }
}
