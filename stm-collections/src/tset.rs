//! `TSet`: a transactional hash set, on [`THashMap`].

use std::borrow::Borrow;
use std::fmt;
use std::hash::Hash;

use stm_core::{StmResult, Transaction};

use crate::THashMap;

/// A transactional hash set: a [`THashMap`] with `()` values, with the same conflict
/// behaviour (values in different buckets do not conflict; `len` reads a striped count).
/// Cloning gives a second handle to the same set.
///
/// # Examples
///
/// ```
/// use stm_collections::TSet;
/// use stm_core::atomically;
///
/// let seen = TSet::new();
/// assert!(atomically(|tx| seen.insert(tx, "a")));
/// assert!(!atomically(|tx| seen.insert(tx, "a"))); // already there
/// assert!(atomically(|tx| seen.contains(tx, "a")));
/// ```
pub struct TSet<T> {
    map: THashMap<T, ()>,
}

impl<T> Clone for TSet<T> {
    fn clone(&self) -> Self {
        Self {
            map: self.map.clone(),
        }
    }
}

impl<T> fmt::Debug for TSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TSet").finish_non_exhaustive()
    }
}

impl<T: Clone + Hash + Eq + Send + Sync + 'static> Default for TSet<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone + Hash + Eq + Send + Sync + 'static> TSet<T> {
    /// Creates an empty set.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TSet; use stm_core::atomically;
    /// assert!(atomically(|tx| TSet::<u8>::new().is_empty(tx)));
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self {
            map: THashMap::new(),
        }
    }

    /// Creates an empty set with room for about `capacity` values before it first grows.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TSet; use stm_core::atomically;
    /// let set = TSet::with_capacity(100);
    /// atomically(|tx| set.insert(tx, 1));
    /// ```
    #[must_use]
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            map: THashMap::with_capacity(capacity),
        }
    }

    /// Adds `value`; returns whether it was new.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TSet; use stm_core::atomically;
    /// let set = TSet::new();
    /// assert!(atomically(|tx| set.insert(tx, 1)));
    /// assert!(!atomically(|tx| set.insert(tx, 1)));
    /// ```
    pub fn insert(&self, tx: &mut Transaction, value: T) -> StmResult<bool> {
        Ok(self.map.insert(tx, value, ())?.is_none())
    }

    /// Removes `value`; returns whether it was there.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TSet; use stm_core::atomically;
    /// let set = TSet::new();
    /// atomically(|tx| set.insert(tx, 1));
    /// assert!(atomically(|tx| set.remove(tx, &1)));
    /// assert!(!atomically(|tx| set.remove(tx, &1)));
    /// ```
    pub fn remove<Q>(&self, tx: &mut Transaction, value: &Q) -> StmResult<bool>
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        Ok(self.map.remove(tx, value)?.is_some())
    }

    /// Whether `value` is in the set.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TSet; use stm_core::atomically;
    /// let set = TSet::new();
    /// atomically(|tx| set.insert(tx, "x".to_string()));
    /// assert!(atomically(|tx| set.contains(tx, "x")));
    /// ```
    pub fn contains<Q>(&self, tx: &mut Transaction, value: &Q) -> StmResult<bool>
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.contains_key(tx, value)
    }

    /// The number of values; see [`THashMap::len`] for its cost.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TSet; use stm_core::atomically;
    /// let set = TSet::new();
    /// atomically(|tx| { set.insert(tx, 1)?; set.insert(tx, 2) });
    /// assert_eq!(atomically(|tx| set.len(tx)), 2);
    /// ```
    pub fn len(&self, tx: &mut Transaction) -> StmResult<usize> {
        self.map.len(tx)
    }

    /// Whether the set is empty.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TSet; use stm_core::atomically;
    /// assert!(atomically(|tx| TSet::<u8>::new().is_empty(tx)));
    /// ```
    pub fn is_empty(&self, tx: &mut Transaction) -> StmResult<bool> {
        self.map.is_empty(tx)
    }

    /// Removes every value.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TSet; use stm_core::atomically;
    /// let set = TSet::new();
    /// atomically(|tx| { set.insert(tx, 1)?; set.clear(tx) });
    /// assert!(atomically(|tx| set.is_empty(tx)));
    /// ```
    pub fn clear(&self, tx: &mut Transaction) -> StmResult<()> {
        self.map.clear(tx)
    }

    /// Calls `f` on every value, in no particular order.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TSet; use stm_core::atomically;
    /// let set = TSet::new();
    /// atomically(|tx| { set.insert(tx, 1)?; set.insert(tx, 2) });
    /// let mut sum = 0;
    /// atomically(|tx| { sum = 0; set.for_each(tx, |v| sum += v) });
    /// assert_eq!(sum, 3);
    /// ```
    pub fn for_each(&self, tx: &mut Transaction, mut f: impl FnMut(&T)) -> StmResult<()> {
        self.map.for_each(tx, |k, ()| f(k))
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
    /// # use stm_collections::TSet; use stm_core::atomically;
    /// let set = TSet::new();
    /// atomically(|tx| set.insert(tx, 'a'));
    /// assert_eq!(atomically(|tx| set.to_vec(tx)), vec!['a']);
    /// ```
    pub fn to_vec(&self, tx: &mut Transaction) -> StmResult<Vec<T>> {
        self.map.keys(tx)
    }
}
