//! Reading the kind-specific data of BTF types: struct members, arrays,
//! variables and data sections, and the size of a type.
//!
//! Every walk here follows type ids the object wrote, so every walk is
//! bounded: a chain of typedefs, qualifiers and arrays longer than
//! [`MAX_TYPE_CHAIN`] is refused (BTF allows cycles only through pointers,
//! which no walk here follows, but a hostile file can write any cycle).

use super::{Btf, BtfError, BtfKind, BtfType, le32};

/// Most typedefs, qualifiers and array levels followed from one type, as
/// the kernel's `MAX_RESOLVE_DEPTH`.
pub const MAX_TYPE_CHAIN: usize = 32;

/// `BTF_VAR_STATIC`, `BTF_VAR_GLOBAL_ALLOCATED`, `BTF_VAR_GLOBAL_EXTERN`;
/// the same numbers for a `FUNC`'s linkage (`BTF_FUNC_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Linkage {
    /// `static`.
    Static,
    /// Defined here, visible to other objects.
    Global,
    /// Declared `extern`: defined elsewhere (kfuncs, ksyms, kconfig).
    Extern,
    /// A number BTF does not define.
    Other(u32),
}

impl Linkage {
    fn from_number(n: u32) -> Linkage {
        match n {
            0 => Linkage::Static,
            1 => Linkage::Global,
            2 => Linkage::Extern,
            n => Linkage::Other(n),
        }
    }
}

/// A member of a `STRUCT` or `UNION` (`struct btf_member`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member<'a> {
    /// Its name, empty when anonymous.
    pub name: &'a str,
    /// Its type id.
    pub type_id: u32,
    /// Offset from the start of the struct, in bits.
    pub bit_offset: u32,
    /// Width of a bitfield, 0 for an ordinary member.
    pub bitfield_size: u32,
}

/// An `ARRAY` type's data (`struct btf_array`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArrayInfo {
    /// Element type id.
    pub elem_type: u32,
    /// Index type id.
    pub index_type: u32,
    /// Number of elements.
    pub nelems: u32,
}

/// An entry of a `DATASEC` (`struct btf_var_secinfo`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VarSecInfo {
    /// The `VAR` (or, in `.ksyms`, the `FUNC`) it describes.
    pub type_id: u32,
    /// Offset in the section. Clang writes 0 in objects; libbpf (and
    /// bpfvisor) take the offset from the ELF symbol of the same name.
    pub offset: u32,
    /// Size of the variable; also 0 in objects.
    pub size: u32,
}

impl Btf {
    /// The type `id`, which must exist (`void`, id 0, does not).
    pub fn get_type(&self, id: u32) -> Result<&BtfType, BtfError> {
        self.type_by_id(id).ok_or(BtfError::ResolveType {
            id,
            count: self.types().len(),
        })
    }

    /// Follows typedefs and qualifiers (`const`, `volatile`, `restrict`,
    /// type tags) from `id` to the type they name: its id and the type
    /// (`None` for `void`).
    pub fn skip_modifiers(&self, id: u32) -> Result<(u32, Option<&BtfType>), BtfError> {
        let mut id = id;
        for _ in 0..MAX_TYPE_CHAIN {
            if id == 0 {
                return Ok((0, None));
            }
            let ty = self.get_type(id)?;
            match ty.kind {
                BtfKind::Typedef
                | BtfKind::Const
                | BtfKind::Volatile
                | BtfKind::Restrict
                | BtfKind::TypeTag => id = ty.size_or_type,
                _ => return Ok((id, Some(ty))),
            }
        }
        Err(BtfError::ChainTypes { id })
    }

    /// The size in bytes of a value of type `id`, as C's `sizeof`:
    /// modifiers and `VAR`s followed, arrays multiplied out, pointers 8.
    /// Functions, forward declarations and `void` have no size.
    pub fn type_size(&self, id: u32) -> Result<u32, BtfError> {
        let mut count = 1u64;
        let mut at = id;
        for _ in 0..MAX_TYPE_CHAIN {
            let (next, ty) = self.skip_modifiers(at)?;
            let Some(ty) = ty else {
                return Err(BtfError::SizeType { id, kind: "void" });
            };
            let size = match ty.kind {
                BtfKind::Int
                | BtfKind::Enum
                | BtfKind::Enum64
                | BtfKind::Struct
                | BtfKind::Union
                | BtfKind::Float
                | BtfKind::Datasec => u64::from(ty.size_or_type),
                BtfKind::Ptr => 8,
                BtfKind::Var => {
                    at = ty.size_or_type;
                    continue;
                }
                BtfKind::Array => {
                    let array = self.array(ty).ok_or(BtfError::SizeType {
                        id: next,
                        kind: "ARRAY",
                    })?;
                    count = count.saturating_mul(array.nelems.into());
                    at = array.elem_type;
                    continue;
                }
                kind => {
                    return Err(BtfError::SizeType {
                        id: next,
                        kind: kind.name(),
                    });
                }
            };
            let total = count.saturating_mul(size);
            return u32::try_from(total).map_err(|_| BtfError::OverflowSize { id });
        }
        Err(BtfError::ChainTypes { id })
    }

    /// The members of a `STRUCT` or `UNION`; empty for other kinds.
    pub fn members<'a>(&'a self, ty: &BtfType) -> Vec<Member<'a>> {
        if !matches!(ty.kind, BtfKind::Struct | BtfKind::Union) {
            return Vec::new();
        }
        // With kind_flag set, the offset word holds the bitfield size in
        // its top 8 bits and the bit offset in the low 24.
        let kind_flag = ty.info >> 31 == 1;
        self.type_data(ty)
            .chunks_exact(12)
            .map(|m| {
                let offset = le32(m, 8);
                let (bit_offset, bitfield_size) = if kind_flag {
                    (offset & 0xff_ffff, offset >> 24)
                } else {
                    (offset, 0)
                };
                Member {
                    // Checked at parse: every member name resolves.
                    name: self.string(le32(m, 0)).unwrap_or_default(),
                    type_id: le32(m, 4),
                    bit_offset,
                    bitfield_size,
                }
            })
            .collect()
    }

    /// An `ARRAY`'s element type and count; `None` for other kinds.
    pub fn array(&self, ty: &BtfType) -> Option<ArrayInfo> {
        if ty.kind != BtfKind::Array {
            return None;
        }
        let data = self.type_data(ty);
        Some(ArrayInfo {
            elem_type: le32(data, 0),
            index_type: le32(data, 4),
            nelems: le32(data, 8),
        })
    }

    /// The entries of a `DATASEC`; empty for other kinds.
    pub fn datasec_entries(&self, ty: &BtfType) -> Vec<VarSecInfo> {
        if ty.kind != BtfKind::Datasec {
            return Vec::new();
        }
        self.type_data(ty)
            .chunks_exact(12)
            .map(|e| VarSecInfo {
                type_id: le32(e, 0),
                offset: le32(e, 4),
                size: le32(e, 8),
            })
            .collect()
    }

    /// The `DATASEC` named `name` (an ELF section name: `.maps`,
    /// `.rodata`, `.ksyms`...).
    pub fn find_datasec(&self, name: &str) -> Option<&BtfType> {
        self.type_by_id(*self.datasecs.get(name)?)
    }

    /// The linkage of a `VAR` (its data word) or a `FUNC` (its vlen);
    /// `None` for other kinds.
    pub fn linkage(&self, ty: &BtfType) -> Option<Linkage> {
        match ty.kind {
            BtfKind::Var => Some(Linkage::from_number(le32(self.type_data(ty), 0))),
            BtfKind::Func => Some(Linkage::from_number(ty.vlen().into())),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::setup_btf;
    use super::*;

    /// Builds type bytes one type at a time.
    #[derive(Default)]
    struct Types(Vec<u8>);

    impl Types {
        fn head(&mut self, name: u32, kind: u32, vlen: u32, size_or_type: u32) -> &mut Self {
            self.0.extend(name.to_le_bytes());
            self.0.extend(((kind << 24) | vlen).to_le_bytes());
            self.0.extend(size_or_type.to_le_bytes());
            self
        }
        fn words(&mut self, words: &[u32]) -> &mut Self {
            for w in words {
                self.0.extend(w.to_le_bytes());
            }
            self
        }
    }

    const STRINGS: &[u8] = b"\0int\0s\0a\0b\0.data\0v\0";

    /// 1 `int`; 2 typedef of 1; 3 const 2; 4 `3[5]`; 5 pointer to 4;
    /// 6 `struct s { int a; int b:3; }`; 7 global `VAR v` of type 4;
    /// 8 `DATASEC .data { v at 0, 20 bytes }`; 9 a typedef of itself.
    fn setup() -> Btf {
        let mut t = Types::default();
        t.head(1, 1, 0, 4).words(&[32]);
        t.head(0, 8, 0, 1);
        t.head(0, 10, 0, 2);
        t.head(0, 3, 0, 0).words(&[3, 1, 5]);
        t.head(0, 2, 0, 4);
        // kind_flag set: offsets carry bitfield sizes.
        t.head(5, (1 << 7) | 4, 2, 8)
            .words(&[7, 1, 0, 9, 1, (3 << 24) | 32]);
        t.head(17, 14, 0, 4).words(&[1]);
        t.head(11, 15, 1, 0).words(&[7, 0, 20]);
        t.head(0, 8, 0, 9);
        Btf::parse(&setup_btf(&t.0, STRINGS)).unwrap()
    }

    #[test]
    fn sizes_follow_modifiers_and_arrays() {
        let btf = setup();
        assert_eq!(btf.type_size(1), Ok(4));
        assert_eq!(btf.type_size(3), Ok(4));
        assert_eq!(btf.type_size(4), Ok(20));
        assert_eq!(btf.type_size(5), Ok(8));
        assert_eq!(btf.type_size(6), Ok(8));
        assert_eq!(btf.type_size(7), Ok(20), "a VAR has its type's size");
        assert_eq!(
            btf.type_size(0).unwrap_err().to_string(),
            "BTF type 0 (void) has no size"
        );
        assert_eq!(
            btf.type_size(9).unwrap_err().to_string(),
            "BTF type 9 starts a chain of more than 32 typedefs, qualifiers or arrays"
        );
        assert_eq!(
            btf.type_size(99).unwrap_err().to_string(),
            "BTF type 99 does not exist; the object has 9 types"
        );
        assert_eq!(btf.skip_modifiers(3).map(|(id, _)| id), Ok(1));
    }

    #[test]
    fn huge_arrays_overflow() {
        let mut t = Types::default();
        t.head(1, 1, 0, 8).words(&[64]);
        t.head(0, 3, 0, 0).words(&[1, 1, u32::MAX]);
        t.head(0, 3, 0, 0).words(&[2, 1, u32::MAX]);
        let btf = Btf::parse(&setup_btf(&t.0, STRINGS)).unwrap();
        assert_eq!(
            btf.type_size(3).unwrap_err().to_string(),
            "BTF type 3 is larger than 4 GiB"
        );
    }

    #[test]
    fn members_arrays_and_datasecs_decode() {
        let btf = setup();
        let s = btf.type_by_id(6).unwrap();
        let members = btf.members(s);
        assert_eq!(members.len(), 2);
        assert_eq!((members[0].name, members[0].bit_offset), ("a", 0));
        assert_eq!(
            (
                members[1].name,
                members[1].bit_offset,
                members[1].bitfield_size
            ),
            ("b", 32, 3)
        );
        let array = btf.array(btf.type_by_id(4).unwrap()).unwrap();
        assert_eq!((array.elem_type, array.nelems), (3, 5));
        let sec = btf.find_datasec(".data").unwrap();
        assert_eq!(
            btf.datasec_entries(sec),
            [VarSecInfo {
                type_id: 7,
                offset: 0,
                size: 20
            }]
        );
        assert!(btf.find_datasec(".bss").is_none());
        let var = btf.type_by_id(7).unwrap();
        assert_eq!(btf.linkage(var), Some(Linkage::Global));
        assert_eq!(btf.linkage(s), None);
    }
}
