//! The arena of an object: its `BPF_MAP_TYPE_ARENA` map and its `__arena`
//! globals (section `.addr_space.1`).
//!
//! ```text
//!  arena (ARENA map, max_entries pages)        user_vm_start + pages * 4096
//!  +---------+---------+-- ... --+----------------------------+
//!  | page 0  | page 1  |         | .addr_space.1, page-rounded |
//!  +---------+---------+-- ... --+----------------------------+
//!  ^ user_vm_start               ^ user_vm_start + globals_offset(pages, size)
//! ```
//!
//! The globals live in the arena's last pages, where libbpf 1.7 puts them
//! (`init_arena_map_data`: `arena_data_off = mmap_sz - roundup(data_sz,
//! page_sz)`), so page 0 stays free for a program that reserves it to catch
//! NULL dereferences; older libbpf put them at page 0. Their pages are
//! allocated when the object is loaded (libbpf copies the initial bytes
//! through its mapping, which faults them in). An `ld_imm64` of a global is
//! linked as any data reference: `Placed::Data(i)` plus the offset, so the
//! caller answers `Placed::Data(i)` with `user_vm_start + globals_offset`.

use super::maps::{ARENA_PAGE_SIZE, MapType};
use super::{DataKind, LoadError, Object};

/// The section clang puts `__arena` globals in (address space 1).
pub const ARENA_DATA_SECTION: &str = ".addr_space.1";

/// Offset from the arena's start of its globals: `size` bytes rounded up to
/// whole pages, at the end of an arena of `pages` pages. `None` when they do
/// not fit.
pub fn globals_offset(pages: u32, size: u64) -> Option<u64> {
    let arena = u64::from(pages) * ARENA_PAGE_SIZE;
    arena.checked_sub(size.checked_next_multiple_of(ARENA_PAGE_SIZE)?)
}

impl Object {
    /// The index in [`Object::maps`] of the object's `ARENA` map, if it has
    /// one (it has at most one).
    pub fn arena(&self) -> Option<usize> {
        self.maps.iter().position(|m| m.map_type == MapType::Arena)
    }
}

/// libbpf's rules: at most one arena map; `__arena` globals need it and
/// must fit in it.
pub(super) fn check_arena(object: &Object) -> Result<(), LoadError> {
    let mut arenas = object.maps.iter().filter(|m| m.map_type == MapType::Arena);
    let arena = arenas.next();
    if let (Some(first), Some(second)) = (arena, arenas.next()) {
        return Err(LoadError::CountArenas {
            first: first.name.clone(),
            second: second.name.clone(),
        });
    }
    for data in &object.data {
        let size = data.bytes.len() as u64;
        if data.kind != DataKind::Arena || size == 0 {
            continue;
        }
        let Some(arena) = arena else {
            return Err(LoadError::FindArena {
                section: data.name.clone(),
                size,
            });
        };
        if globals_offset(arena.max_entries, size).is_none() {
            return Err(LoadError::FitArena {
                section: data.name.clone(),
                size,
                map: arena.name.clone(),
                pages: arena.max_entries,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A parsed sample of `images/progs`.
    pub(crate) fn setup_sample(name: &str) -> Object {
        let path = format!("{}/../images/progs/{name}", env!("CARGO_MANIFEST_DIR"));
        Object::parse(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn arena_globals_need_one_arena_with_room() {
        let mut hash = setup_sample("arena_hash.bpf.o");
        assert_eq!(check_arena(&hash).map_err(|e| e.to_string()), Ok(()));
        // 16 396 bytes of globals: 5 pages.
        hash.maps[0].max_entries = 5;
        assert!(check_arena(&hash).is_ok());
        hash.maps[0].max_entries = 4;
        assert_eq!(
            check_arena(&hash).unwrap_err().to_string(),
            "Section `.addr_space.1` holds 16400 bytes of __arena globals, more than the 4 pages of ARENA map `arena`"
        );
        let mut second = hash.maps[0].clone();
        second.name = "other".into();
        hash.maps.push(second);
        assert_eq!(
            check_arena(&hash).unwrap_err().to_string(),
            "Maps `arena` and `other` are both ARENA maps; an object may have only one"
        );
        hash.maps.clear();
        assert_eq!(hash.arena(), None);
        assert_eq!(
            check_arena(&hash).unwrap_err().to_string(),
            "Section `.addr_space.1` holds __arena globals (16400 bytes), but the object declares no ARENA map in .maps"
        );
        // No globals: no arena needed.
        let mut churn = setup_sample("arena_churn.bpf.o");
        churn.maps.clear();
        assert!(check_arena(&churn).is_ok());
    }

    #[test]
    fn globals_take_the_last_whole_pages() {
        assert_eq!(globals_offset(16, 0x198), Some(15 * 4096));
        assert_eq!(globals_offset(16, 4096), Some(15 * 4096));
        assert_eq!(globals_offset(16, 4097), Some(14 * 4096));
        assert_eq!(globals_offset(16, 16 * 4096), Some(0));
        assert_eq!(globals_offset(16, 16 * 4096 + 1), None);
        assert_eq!(globals_offset(1 << 20, 8), Some((1 << 32) - 4096));
        assert_eq!(globals_offset(1, u64::MAX), None);
    }
}
