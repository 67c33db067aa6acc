//! `TArray`: a fixed-length array of independent transactional slots.

use std::fmt;
use std::sync::Arc;

use stm_core::{StmResult, TVar, Transaction};

/// A fixed-length array whose slots are independent variables (Haskell's and ScalaSTM's
/// `TArray`): writes of different slots do not conflict.
///
/// Every method takes the transaction. Indexing past the end panics, as a slice does. Cloning
/// gives a second handle to the same array.
///
/// # Examples
///
/// ```
/// use stm_collections::TArray;
/// use stm_core::atomically;
///
/// let seats = TArray::new(4, None::<&str>);
/// atomically(|tx| seats.set(tx, 2, Some("ann")));
/// // Take the first free seat, atomically.
/// let seat = atomically(|tx| {
///     for i in 0..seats.len(tx)? {
///         if seats.get(tx, i)?.is_none() {
///             seats.set(tx, i, Some("bob"))?;
///             return Ok(Some(i));
///         }
///     }
///     Ok(None)
/// });
/// assert_eq!(seat, Some(0));
/// assert_eq!(atomically(|tx| seats.to_vec(tx)), [Some("bob"), None, Some("ann"), None]);
/// ```
pub struct TArray<T> {
    slots: Arc<[TVar<T>]>,
}

impl<T> Clone for TArray<T> {
    fn clone(&self) -> Self {
        Self {
            slots: Arc::clone(&self.slots),
        }
    }
}

impl<T> fmt::Debug for TArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TArray")
            .field("len", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl<T: Clone + Send + Sync + 'static> TArray<T> {
    /// An array of `len` slots, each holding a clone of `value`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TArray; use stm_core::atomically;
    /// let a = TArray::new(3, 0_u32);
    /// assert_eq!(atomically(|tx| a.to_vec(tx)), [0, 0, 0]);
    /// ```
    pub fn new(len: usize, value: T) -> Self {
        Self {
            slots: (0..len).map(|_| TVar::new(value.clone())).collect(),
        }
    }

    /// An array holding `values`, in order.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TArray; use stm_core::atomically;
    /// let a = TArray::from_vec(vec!['a', 'b']);
    /// assert_eq!(atomically(|tx| a.get(tx, 1)), 'b');
    /// ```
    pub fn from_vec(values: Vec<T>) -> Self {
        Self {
            slots: values.into_iter().map(TVar::new).collect(),
        }
    }

    /// The number of slots (fixed when the array was made).
    ///
    /// # Errors
    ///
    /// Never fails; it returns `StmResult` like every container method.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TArray; use stm_core::atomically;
    /// assert_eq!(atomically(|tx| TArray::new(5, ()).len(tx)), 5);
    /// ```
    pub fn len(&self, _tx: &mut Transaction) -> StmResult<usize> {
        Ok(self.slots.len())
    }

    /// Whether the array has no slots.
    ///
    /// # Errors
    ///
    /// Never fails; it returns `StmResult` like every container method.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TArray; use stm_core::atomically;
    /// assert!(atomically(|tx| TArray::<u8>::from_vec(vec![]).is_empty(tx)));
    /// ```
    pub fn is_empty(&self, _tx: &mut Transaction) -> StmResult<bool> {
        Ok(self.slots.is_empty())
    }

    fn slot(&self, index: usize) -> &TVar<T> {
        let len = self.slots.len();
        self.slots
            .get(index)
            .unwrap_or_else(|| panic!("TArray index {index} out of bounds (length {len})"))
    }

    /// A clone of the value in slot `index`.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Panics
    ///
    /// If `index` is not below the length.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TArray; use stm_core::atomically;
    /// let a = TArray::from_vec(vec![10, 20]);
    /// assert_eq!(atomically(|tx| a.get(tx, 0)), 10);
    /// ```
    pub fn get(&self, tx: &mut Transaction, index: usize) -> StmResult<T> {
        self.slot(index).read(tx)
    }

    /// Sets slot `index` to `value`.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Panics
    ///
    /// If `index` is not below the length.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TArray; use stm_core::atomically;
    /// let a = TArray::new(2, 0);
    /// atomically(|tx| a.set(tx, 1, 7));
    /// assert_eq!(atomically(|tx| a.to_vec(tx)), [0, 7]);
    /// ```
    pub fn set(&self, tx: &mut Transaction, index: usize, value: T) -> StmResult<()> {
        self.slot(index).write(tx, value)
    }

    /// Replaces the value in slot `index` with `f(value)`.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Panics
    ///
    /// If `index` is not below the length.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TArray; use stm_core::atomically;
    /// let hits = TArray::new(3, 0_u64);
    /// atomically(|tx| hits.modify(tx, 2, |n| n + 1));
    /// assert_eq!(atomically(|tx| hits.get(tx, 2)), 1);
    /// ```
    pub fn modify(
        &self,
        tx: &mut Transaction,
        index: usize,
        f: impl FnOnce(T) -> T,
    ) -> StmResult<()> {
        self.slot(index).modify(tx, f)
    }

    /// Clones of every slot's value, in order: a consistent snapshot of the whole array.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TArray; use stm_core::atomically;
    /// let a = TArray::from_vec(vec![1, 2, 3]);
    /// assert_eq!(atomically(|tx| a.to_vec(tx)), [1, 2, 3]);
    /// ```
    pub fn to_vec(&self, tx: &mut Transaction) -> StmResult<Vec<T>> {
        self.slots.iter().map(|slot| slot.read(tx)).collect()
    }
}
