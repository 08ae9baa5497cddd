//! A bump allocator for the guest: every call runs in a fresh instance whose memory the host
//! drops afterwards, so freeing is left to the host and the guest stays small and fast.
//!
//! `dealloc` gives memory back only when it frees the most recent allocation, and `realloc`
//! grows the most recent allocation in place, so a growing `Vec` or `String` leaves no copies
//! behind. A call that allocates more than its memory limit traps with a memory-limit error.
#![allow(unsafe_code)]

use core::{
    alloc::{GlobalAlloc, Layout},
    cell::Cell,
};

const PAGE: usize = 65536;

/// The allocator the SDK installs as `#[global_allocator]` on wasm32.
#[derive(Debug)]
pub struct Bump {
    /// First free byte.
    next: Cell<usize>,
    /// End of the memory this allocator owns.
    end: Cell<usize>,
    /// Start of the most recent allocation (`usize::MAX` when none can be undone).
    last: Cell<usize>,
}

// SAFETY: wasm32-unknown-unknown guests are single-threaded (the host disables wasm threads).
unsafe impl Sync for Bump {}

impl Bump {
    /// An allocator that owns no memory yet; it takes pages with `memory.grow` as needed.
    pub const fn new() -> Self {
        Self {
            next: Cell::new(0),
            end: Cell::new(0),
            last: Cell::new(usize::MAX),
        }
    }

    /// Grows linear memory so that at least `bytes` more are available after `next`.
    fn reserve(&self, bytes: usize) -> bool {
        let pages = bytes.div_ceil(PAGE).max(1);
        let previous = core::arch::wasm32::memory_grow(0, pages);
        if previous == usize::MAX {
            return false;
        }
        let start = previous * PAGE;
        if start != self.end.get() {
            // The new pages do not follow ours (first use): allocate from them.
            self.next.set(start);
            self.last.set(usize::MAX);
        }
        self.end.set(start + pages * PAGE);
        true
    }
}

impl Default for Bump {
    fn default() -> Self {
        Self::new()
    }
}

fn align_up(at: usize, align: usize) -> usize {
    (at + align - 1) & !(align - 1)
}

unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let (size, align) = (layout.size(), layout.align());
        let mut start = align_up(self.next.get(), align);
        if start.saturating_add(size) > self.end.get() {
            if !self.reserve(size.saturating_add(align)) {
                return core::ptr::null_mut();
            }
            start = align_up(self.next.get(), align);
        }
        self.next.set(start + size);
        self.last.set(start);
        start as *mut u8
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        if ptr as usize == self.last.get() {
            self.next.set(self.last.get());
            self.last.set(usize::MAX);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let at = ptr as usize;
        if at == self.last.get() {
            let end = at.saturating_add(new_size);
            if end > self.end.get() {
                let contiguous_end = self.end.get();
                if self.reserve(end - contiguous_end)
                    && self.end.get() >= end
                    && self.next.get() <= at + layout.size()
                {
                    self.next.set(end);
                    return ptr;
                }
            } else {
                self.next.set(end);
                return ptr;
            }
        }
        if new_size <= layout.size() {
            return ptr;
        }
        // SAFETY: the alignment comes from a valid layout and `new_size` is non-zero.
        let fresh = unsafe { self.alloc(Layout::from_size_align_unchecked(new_size, layout.align())) };
        if !fresh.is_null() {
            // SAFETY: both blocks are valid for `layout.size()` bytes and do not overlap.
            unsafe { core::ptr::copy_nonoverlapping(ptr, fresh, layout.size()) };
        }
        fresh
    }
}
