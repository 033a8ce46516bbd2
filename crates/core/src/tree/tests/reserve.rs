//! Memory: page sizes, reservations that make inserts allocation-free, and allocation failure.

use super::arena::MAX_SLOT_PAGES;
use super::support::*;
use super::*;
use alloc::boxed::Box;

#[test]
fn slot_and_node_sizes() {
    // A slot is 16 bytes of payload (`None` in the pointer's niche) and a 4-byte free link;
    // a leaf 64 prefixes, 64 slots and a length; an inner node 64 prefixes, 64 slots, 64
    // children and a length.
    assert_eq!(size_of::<Option<Box<[u8]>>>(), 16);
    struct BoxKey(#[allow(dead_code)] Box<[u8]>);
    assert_eq!(size_of::<Option<BoxKey>>(), 16);
    assert_eq!(size_of::<Leaf>(), 776);
    assert_eq!(size_of::<Inner>(), 1032);
    let mut t = Tree::new();
    t.insert(ent(b"a", 1)).unwrap();
    // One leaf page; no inner node page until the root splits.
    assert_eq!(
        t.allocated_bytes(),
        PAGE * (4 + size_of::<Option<Ent>>())
            + t.slots.table_bytes()
            + super::arena::NODE_PAGE * size_of::<Leaf>()
            + t.nodes.leaves.table_bytes()
    );
}

#[test]
fn insert_reserved_never_allocates() {
    let mut t = Tree::new();
    for i in 0..10 {
        t.insert(ent(&k32(i), i)).unwrap();
    }
    t.reserve(3000).unwrap();
    assert_eq!(t.reserved(), 3000);
    t.check();
    let bytes = t.allocated_bytes();
    let _no_pages = Budget::set(Some(0));
    // Existing keys also consume a reservation.
    for i in 0..3000 {
        let (id, old) = t.insert_reserved(ent(&k32(i), i + 1)).unwrap();
        assert_eq!(old.is_some(), i < 10);
        assert_eq!(t.find(&k32(i)), Some(id));
        assert_eq!(t.reserved(), 2999 - i as usize);
    }
    assert_eq!(t.allocated_bytes(), bytes);
    assert_eq!(t.len(), 3000);
    t.check();
    // No reservation left: behaves like insert, which needs a page now and fails cleanly.
    let e = ent(b"new", 7);
    if t.free_slots() == 0 {
        assert_eq!(t.insert_reserved(e.clone()), Err(e));
        assert_eq!(t.len(), 3000);
        t.check();
    }
}

#[test]
fn insert_does_not_use_reserved_slots() {
    let mut t = Tree::new();
    for i in 0..1000 {
        t.insert(ent(&k32(i), i)).unwrap();
    }
    let free = PAGE - 1000;
    assert_eq!(t.free_slots(), free);
    t.reserve(free).unwrap();
    assert_eq!(
        t.slots.pages.len(),
        1,
        "reserve within free slots allocated"
    );
    let bytes = t.allocated_bytes();

    {
        let _no_pages = Budget::set(Some(0));
        let e = ent(b"x", 1);
        assert_eq!(t.insert(e.clone()), Err(e));
        assert_eq!(t.len(), 1000);
        assert_eq!(t.reserved(), free);
        assert_eq!(t.allocated_bytes(), bytes);
        t.check();
        // Replacing needs no slot, so it succeeds without a page.
        assert!(t.insert(ent(&k32(5), 55)).unwrap().1.is_some());
    }

    t.insert(ent(b"x", 1)).unwrap();
    assert!(t.allocated_bytes() > bytes, "insert took a reserved slot");
    assert_eq!(t.slots.pages.len(), 2);
    assert_eq!(t.reserved(), free);
    t.check();
}

#[test]
fn reserve_failure_leaves_tree_unchanged() {
    let mut t = Tree::new();
    t.insert(ent(b"a", 1)).unwrap();
    t.reserve(10).unwrap();
    assert_eq!(t.reserve(usize::MAX), Err(AllocError));
    assert_eq!(t.reserve(usize::MAX - 5), Err(AllocError));
    assert_eq!(t.reserve(MAX_SLOT_PAGES * PAGE), Err(AllocError));
    assert_eq!(t.reserved(), 10);
    assert_eq!(t.slots.pages.len(), 1);
    {
        // Needs three pages, only two can be had: all or nothing.
        let _two = Budget::set(Some(2));
        assert_eq!(t.reserve(3 * PAGE), Err(AllocError));
    }
    assert_eq!(t.reserved(), 10);
    assert_eq!(t.slots.pages.len(), 1);
    t.check();
    t.reserve(3 * PAGE).unwrap();
    assert_eq!(t.slots.pages.len(), 4);
    t.unreserve(usize::MAX);
    assert_eq!(t.reserved(), 0);
    t.check();
}

#[test]
fn clear_frees_everything() {
    let mut t = Tree::new();
    for i in 0..3000 {
        t.insert(ent(&k32(i), i)).unwrap();
    }
    t.reserve(5).unwrap();
    t.remove(&k32(7));
    t.clear();
    assert_eq!(t.allocated_bytes(), 0);
    assert_eq!(t.reserved(), 0);
    assert!(t.is_empty());
    t.check();
    t.insert(ent(b"a", 1)).unwrap();
    t.check();
}
