//! Value boxes: fixed size classes, recycled by the thread that frees them; and the inline
//! representation of primitive values, which need no box at all.
//!
//! A write moves its value into a box; the commit publishes the box and retires the one it
//! replaced. Through the system allocator that is a `malloc` per write and a `free` per retired
//! value, often on another thread than the `malloc` (measured: half of a two-thread bank
//! transfer's time was glibc's `_int_malloc`/`_int_free`). Values of up to 128 bytes
//! (alignment up to 16) get blocks of a few fixed sizes instead, and a [`Pool`] owned by each
//! thread's transaction keeps freed blocks for the next write: in a steady state a write takes
//! a block from the pool and a reclaimed value gives one back, and the allocator is not called
//! at all. Larger, over-aligned and zero-sized values use `Box`. Primitive values
//! ([`is_inline`]) are not boxed: they live in two words inside the variable.

use std::alloc::{Layout, alloc, dealloc, handle_alloc_error};
use std::any::TypeId;
use std::ptr::NonNull;

/// The value of an inline variable: the bytes of a `T`, in two machine words.
pub(crate) type Words = [usize; 2];

/// True if `T`'s values live inline in the variable (two words read and written with atomic
/// word accesses and checked by the version, like a seqlock) rather than in a box.
///
/// Only primitive types qualify: their every byte is initialized (no padding), so copying a
/// value into integer words is defined; they have no drop glue, so a replaced value needs no
/// grace period; and each byte pattern read back was written whole by one commit (the version
/// check discards torn reads before they are turned back into a `T`). The comparisons fold to
/// a constant in optimized builds.
#[inline(always)]
pub(crate) fn is_inline<T: 'static>() -> bool {
    if size_of::<T>() > size_of::<Words>() {
        return false;
    }
    let t = TypeId::of::<T>();
    t == TypeId::of::<u64>()
        || t == TypeId::of::<i64>()
        || t == TypeId::of::<usize>()
        || t == TypeId::of::<isize>()
        || t == TypeId::of::<u32>()
        || t == TypeId::of::<i32>()
        || t == TypeId::of::<u128>()
        || t == TypeId::of::<i128>()
        || t == TypeId::of::<u16>()
        || t == TypeId::of::<i16>()
        || t == TypeId::of::<u8>()
        || t == TypeId::of::<i8>()
        || t == TypeId::of::<f64>()
        || t == TypeId::of::<f32>()
        || t == TypeId::of::<bool>()
        || t == TypeId::of::<char>()
}

/// The bytes of `value` as words (zero beyond `size_of::<T>()`).
///
/// # Safety
///
/// `is_inline::<T>()`: every byte of a `T` is initialized and it fits in [`Words`].
#[inline(always)]
pub(crate) unsafe fn to_words<T>(value: T) -> Words {
    debug_assert!(size_of::<T>() <= size_of::<Words>());
    let mut words: Words = [0; 2];
    // SAFETY: `T` fits in the words and has no padding (the caller's duty), so every byte
    // copied is initialized; the regions do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(
            (&raw const value).cast::<u8>(),
            words.as_mut_ptr().cast::<u8>(),
            size_of::<T>(),
        );
    }
    // `T` has no drop glue (`is_inline`); forgetting it is only for clarity.
    std::mem::forget(value);
    words
}

/// The `T` whose bytes `words` hold.
///
/// # Safety
///
/// `words` came from [`to_words::<T>`] (this `T`), whole: not mixed from two values.
#[inline(always)]
pub(crate) unsafe fn from_words<T>(words: Words) -> T {
    // SAFETY: the words hold the bytes of a valid `T` (the caller's duty); the read is
    // unaligned-safe whatever `T`'s alignment.
    unsafe { std::ptr::read_unaligned(words.as_ptr().cast::<T>()) }
}

/// Block sizes; a value gets the smallest that fits.
const CLASS_SIZES: [usize; 4] = [16, 32, 64, 128];
/// The alignment of every block.
const BLOCK_ALIGN: usize = 16;
/// Free blocks a pool keeps per class; more go back to the allocator.
const KEEP_PER_CLASS: usize = 4096;

/// The index in `sizes` (ascending) of the smallest block that holds `size` bytes at
/// `align`, or `None` if none does (a zero size, an alignment above [`BLOCK_ALIGN`], or too
/// big). Shared by the value pools and the variables' block cache.
const fn size_class(sizes: &[usize], size: usize, align: usize) -> Option<usize> {
    if size == 0 || align > BLOCK_ALIGN {
        return None;
    }
    let mut class = 0;
    while class < sizes.len() {
        if size <= sizes[class] {
            return Some(class);
        }
        class += 1;
    }
    None
}

/// The layout of a block of `sizes[class]` bytes.
const fn sized_block(sizes: &[usize], class: usize) -> Layout {
    match Layout::from_size_align(sizes[class], BLOCK_ALIGN) {
        Ok(layout) => layout,
        Err(_) => panic!("block sizes are multiples of 8"),
    }
}

/// The size class of `T`'s boxes, or `None` if they are plain `Box<T>`.
const fn class_of<T>() -> Option<usize> {
    size_class(&CLASS_SIZES, size_of::<T>(), align_of::<T>())
}

const fn block_layout(class: usize) -> Layout {
    sized_block(&CLASS_SIZES, class)
}

/// Free blocks, by size class, owned by one thread's transaction.
///
/// # Invariants
///
/// Every pointer in `free[c]` is an unused block of `block_layout(c)` from the global
/// allocator, owned by the pool alone.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    free: [Vec<NonNull<u8>>; CLASS_SIZES.len()],
}

/// Moves `value` into a new box for a variable: a pooled block if `T` is small (from `pool` if
/// it has one), else a `Box<T>`. Free it with [`free_value`].
#[inline]
pub(crate) fn box_value<T>(pool: Option<&mut Pool>, value: T) -> *mut T {
    let Some(class) = (const { class_of::<T>() }) else {
        return Box::into_raw(Box::new(value));
    };
    let block = match pool.and_then(|p| p.free[class].pop()) {
        Some(block) => block.as_ptr(),
        None => {
            let layout = block_layout(class);
            // SAFETY: the layout has a non-zero size.
            let block = unsafe { alloc(layout) };
            if block.is_null() {
                handle_alloc_error(layout);
            }
            block
        }
    };
    let ptr = block.cast::<T>();
    // SAFETY: `block` is an unused block of at least `size_of::<T>()` bytes, aligned to 16 >=
    // `align_of::<T>()` (`class_of`).
    unsafe { ptr.write(value) };
    ptr
}

/// Drops the value in a box made by [`box_value::<T>`] and frees the box, into `pool` if given
/// and not full.
///
/// # Safety
///
/// `ptr` came from `box_value::<T>` (this `T`), holds a value, and is not used again.
#[inline]
pub(crate) unsafe fn free_value<T>(ptr: *mut T, pool: Option<&mut Pool>) {
    let Some(class) = (const { class_of::<T>() }) else {
        // SAFETY: `box_value` made it with `Box::into_raw` (the caller's duty).
        drop(unsafe { Box::from_raw(ptr) });
        return;
    };
    /// Frees the block even if the value's destructor panics.
    struct Block(*mut u8, usize);
    impl Drop for Block {
        fn drop(&mut self) {
            // SAFETY: a block of this class from `box_value`, no longer holding a value.
            unsafe { dealloc(self.0, block_layout(self.1)) };
        }
    }
    let block = Block(ptr.cast(), class);
    // SAFETY: `ptr` holds a `T` (the caller's duty), dropped once, here.
    unsafe { std::ptr::drop_in_place(ptr) };
    if let Some(pool) = pool
        && pool.free[class].len() < KEEP_PER_CLASS
        && let Some(free) = NonNull::new(block.0)
    {
        std::mem::forget(block);
        pool.free[class].push(free);
    }
}

/// Sizes of the blocks cached for variables: what glibc's `malloc` hands out anyway for
/// requests up to each (its chunks are 16-byte multiples with an 8-byte header), so a cached
/// block takes no more memory than a variable allocated directly.
const VAR_SIZES: [usize; 7] = [24, 40, 56, 72, 88, 104, 120];
/// Free blocks a thread keeps per size for variables (more go back to the allocator).
#[cfg(not(stm_loom))]
const KEEP_VARS_PER_SIZE: usize = 1024;

/// The block size index serving a variable of `layout`, if any.
const fn var_class(layout: Layout) -> Option<usize> {
    size_class(&VAR_SIZES, layout.size(), layout.align())
}

const fn var_block_layout(class: usize) -> Layout {
    sized_block(&VAR_SIZES, class)
}

/// Free blocks for variables, by [`VAR_SIZES`] index, owned by one thread.
///
/// # Invariants
///
/// Every pointer in `free[c]` is an unused block of `var_block_layout(c)` from the global
/// allocator, owned by the cache alone.
#[cfg(not(stm_loom))]
struct VarBlocks {
    free: [Vec<NonNull<u8>>; VAR_SIZES.len()],
}

#[cfg(not(stm_loom))]
impl Drop for VarBlocks {
    fn drop(&mut self) {
        for (class, blocks) in self.free.iter_mut().enumerate() {
            for block in blocks.drain(..) {
                // SAFETY: cached blocks are unused blocks of this size (invariant).
                unsafe { dealloc(block.as_ptr(), var_block_layout(class)) };
            }
        }
    }
}

#[cfg(not(stm_loom))]
thread_local! {
    /// Blocks for variables (`TVarHandle::new`), refilled by the variables whose memory this
    /// thread frees (their grace period passed in its recycler). Separate from the value
    /// pools, which live in the thread's transaction and are out of reach while it runs.
    static VAR_BLOCKS: std::cell::RefCell<VarBlocks> = const {
        std::cell::RefCell::new(VarBlocks {
            free: [const { Vec::new() }; VAR_SIZES.len()],
        })
    };
}

/// Memory for a variable of layout `layout`: a cached block of the calling thread if the
/// layout fits one, else from the allocator. Free it with [`free_var`] and the same layout.
/// Queues and trees create a variable per element, and `malloc` plus `free` were a fifth of a
/// channel's put and take.
pub(crate) fn alloc_var(layout: Layout) -> *mut u8 {
    let layout = match var_class(layout) {
        Some(class) => {
            #[cfg(not(stm_loom))]
            if let Ok(Some(block)) = VAR_BLOCKS.try_with(|c| c.borrow_mut().free[class].pop()) {
                return block.as_ptr();
            }
            var_block_layout(class)
        }
        None => layout,
    };
    // SAFETY: a variable's layout has a non-zero size (a header at least).
    let memory = unsafe { alloc(layout) };
    if memory.is_null() {
        handle_alloc_error(layout);
    }
    memory
}

/// Frees memory from [`alloc_var`], into the calling thread's cache if it has room.
///
/// # Safety
///
/// `memory` came from `alloc_var(layout)` with this `layout`, holds nothing that needs
/// dropping, and is not used again.
pub(crate) unsafe fn free_var(memory: *mut u8, layout: Layout) {
    let Some(class) = var_class(layout) else {
        // SAFETY: allocated with this layout (the caller's duty).
        unsafe { dealloc(memory, layout) };
        return;
    };
    #[cfg(not(stm_loom))]
    {
        let kept = NonNull::new(memory).is_some_and(|block| {
            VAR_BLOCKS
                .try_with(|c| {
                    let mut cache = c.borrow_mut();
                    let room = cache.free[class].len() < KEEP_VARS_PER_SIZE;
                    if room {
                        cache.free[class].push(block);
                    }
                    room
                })
                .unwrap_or(false)
        });
        if kept {
            return;
        }
    }
    // SAFETY: a block of this size from `alloc_var` (the caller's duty).
    unsafe { dealloc(memory, var_block_layout(class)) };
}

impl Drop for Pool {
    fn drop(&mut self) {
        for (class, blocks) in self.free.iter_mut().enumerate() {
            for block in blocks.drain(..) {
                // SAFETY: pool blocks are unused blocks of this class (invariant on `Pool`).
                unsafe { dealloc(block.as_ptr(), block_layout(class)) };
            }
        }
    }
}

#[cfg(all(test, not(stm_loom)))]
mod tests {
    use super::*;

    #[test]
    fn classes_fit_and_large_values_are_boxed() {
        assert_eq!(class_of::<u8>(), Some(0));
        assert_eq!(class_of::<u128>(), Some(0));
        assert_eq!(class_of::<[u64; 3]>(), Some(1));
        assert_eq!(class_of::<[u8; 128]>(), Some(3));
        assert_eq!(class_of::<[u8; 129]>(), None);
        assert_eq!(class_of::<()>(), None);
        #[repr(align(32))]
        struct Wide(#[allow(dead_code)] u8);
        assert_eq!(class_of::<Wide>(), None);
    }

    #[test]
    fn variables_get_the_smallest_block_that_fits() {
        let layout = |size, align| Layout::from_size_align(size, align).unwrap();
        assert_eq!(var_class(layout(24, 8)), Some(0));
        assert_eq!(var_class(layout(25, 8)), Some(1));
        assert_eq!(var_class(layout(120, 16)), Some(6));
        assert_eq!(var_class(layout(121, 8)), None);
        // Small plain values get a cache line of their own: the allocator serves those.
        assert_eq!(var_class(layout(64, 64)), None);
        assert_eq!(var_block_layout(1), layout(40, 16));
    }

    #[test]
    fn freed_blocks_are_reused() {
        let mut pool = Pool::default();
        let a = box_value(Some(&mut pool), String::from("a"));
        // SAFETY: made by `box_value::<String>` just above.
        unsafe { free_value(a, Some(&mut pool)) };
        let b = box_value(Some(&mut pool), String::from("b"));
        assert_eq!(a, b, "the freed block is taken again");
        // SAFETY: as above.
        unsafe { free_value(b, None) };
    }
}
