//! A persistent list: newest element first, tails shared between copies.
//!
//! The explorer keeps every distinct state; a state with n invalidations in
//! flight differs from its parent by one element. Sharing the tail makes
//! that one new node, so n states along a path cost memory linear in n, not
//! quadratic as copied vectors would.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

struct Node<T> {
    head: T,
    tail: PList<T>,
    /// Hash of the whole list from this node on.
    hash: u64,
    len: u32,
}

/// An immutable list with O(1) clone and push and a cached hash.
pub struct PList<T>(Option<Arc<Node<T>>>);

impl<T> Clone for PList<T> {
    fn clone(&self) -> Self {
        PList(self.0.clone())
    }
}

impl<T> Default for PList<T> {
    fn default() -> Self {
        PList(None)
    }
}

impl<T: Hash> PList<T> {
    /// The list with `head` in front of `self`.
    pub fn push(&mut self, head: T) {
        let mut h = rustc_hash::FxHasher::default();
        head.hash(&mut h);
        h.write_u64(self.hash_value());
        let node = Node {
            hash: h.finish(),
            len: self.len() as u32 + 1,
            tail: std::mem::take(self),
            head,
        };
        self.0 = Some(Arc::new(node));
    }

    /// Rebuilds the list from elements given oldest first.
    pub fn from_oldest_first(items: impl IntoIterator<Item = T>) -> Self {
        let mut l = PList::default();
        for x in items {
            l.push(x);
        }
        l
    }
}

impl<T> PList<T> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |n| n.len as usize)
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// Elements, newest first.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        let mut cur = self.0.as_deref();
        std::iter::from_fn(move || {
            let n = cur?;
            cur = n.tail.0.as_deref();
            Some(&n.head)
        })
    }

    fn hash_value(&self) -> u64 {
        self.0.as_ref().map_or(0, |n| n.hash)
    }
}

impl<T: PartialEq> PartialEq for PList<T> {
    fn eq(&self, o: &Self) -> bool {
        match (&self.0, &o.0) {
            (None, None) => true,
            (Some(a), Some(b)) => {
                Arc::ptr_eq(a, b)
                    || (a.hash == b.hash && a.len == b.len && a.head == b.head && a.tail == b.tail)
            }
            _ => false,
        }
    }
}
impl<T: Eq> Eq for PList<T> {}

impl<T> Hash for PList<T> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(self.hash_value());
    }
}

impl<T: fmt::Debug> fmt::Debug for PList<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_built_apart_are_equal_and_hash_alike() {
        let a = PList::from_oldest_first([1, 2, 3]);
        let mut b = PList::from_oldest_first([1, 2]);
        b.push(3);
        assert_eq!(a, b);
        assert_eq!(a.hash_value(), b.hash_value());
        assert_eq!(a.iter().copied().collect::<Vec<_>>(), vec![3, 2, 1]);
        assert_ne!(a, PList::from_oldest_first([2, 1, 3]));
        assert_eq!(a.len(), 3);
    }

    #[test]
    fn a_push_shares_the_tail() {
        let a = PList::from_oldest_first([1, 2]);
        let mut b = a.clone();
        b.push(3);
        let tail = b.0.as_ref().unwrap().tail.0.as_ref().unwrap();
        assert!(Arc::ptr_eq(tail, a.0.as_ref().unwrap()));
    }
}
