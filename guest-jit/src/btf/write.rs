//! An editable copy of a `.BTF` section, written back as bytes: what a
//! loader patches before it hands an object's BTF to a kernel (libbpf's
//! fix-ups of what clang leaves for the loader: `DATASEC` sizes, variable
//! offsets, extern declarations).
//!
//! The copy keeps every type as its 12-byte head and its kind data, and
//! the string table as it was; types and strings are only ever appended,
//! so every type id and string offset of the original stays valid.

use std::collections::HashMap;

use super::{BTF_HEADER_SIZE, BTF_MAGIC, BTF_VERSION, Btf, BtfKind, TYPE_HEAD_SIZE, le32};

/// One type: `struct btf_type` and the kind data after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawType {
    /// Offset of the name in the string table (0: anonymous).
    pub name_off: u32,
    /// `info`: vlen in bits 0-15, kind in bits 24-28, kind flag in 31.
    pub info: u32,
    /// `size` or `type`, depending on the kind.
    pub size_or_type: u32,
    /// The kind data, as many bytes as the kind and vlen say.
    pub data: Vec<u8>,
}

impl RawType {
    /// A type of `kind` with `vlen` entries in `data` (which the caller
    /// sizes for the kind).
    pub fn new(kind: BtfKind, name_off: u32, vlen: u16, size_or_type: u32, data: Vec<u8>) -> Self {
        RawType {
            name_off,
            info: (u32::from(kind.number()) << 24) | u32::from(vlen),
            size_or_type,
            data,
        }
    }

    /// Its kind, `None` for a number BTF does not define.
    pub fn kind(&self) -> Option<BtfKind> {
        BtfKind::from_number(((self.info >> 24) & 0x1f) as u8)
    }

    /// Member, parameter or variable count; for a `FUNC`, its linkage.
    pub const fn vlen(&self) -> u16 {
        (self.info & 0xffff) as u16
    }

    /// Sets the vlen bits of `info`, keeping kind and kind flag.
    pub fn set_vlen(&mut self, vlen: u16) {
        self.info = (self.info & !0xffff) | u32::from(vlen);
    }

    /// The 32-bit word `index` of the kind data; 0 past its end.
    pub fn word(&self, index: usize) -> u32 {
        index.checked_mul(4).map_or(0, |at| le32(&self.data, at))
    }

    /// Sets the 32-bit word `index` of the kind data; nothing past its
    /// end.
    pub fn set_word(&mut self, index: usize, value: u32) {
        let at = index.saturating_mul(4);
        if let Some(word) = self.data.get_mut(at..at.saturating_add(4)) {
            word.copy_from_slice(&value.to_le_bytes());
        }
    }
}

/// A `.BTF` section being edited.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BtfWriter {
    /// Types by id; `types[i]` is id `i + 1`, as in [`Btf`].
    types: Vec<RawType>,
    strings: Vec<u8>,
    /// The first offset of each string.
    string_offsets: HashMap<Vec<u8>, u32>,
}

impl BtfWriter {
    /// A copy of `btf`'s types and strings.
    pub fn new(btf: &Btf) -> BtfWriter {
        let types = btf
            .types()
            .iter()
            .map(|ty| RawType {
                name_off: ty.name_off,
                info: ty.info,
                size_or_type: ty.size_or_type,
                data: btf.type_data(ty).to_vec(),
            })
            .collect();
        let mut string_offsets = HashMap::new();
        let mut start = 0;
        for piece in btf.strings.split(|&b| b == 0) {
            let offset = u32::try_from(start).unwrap_or(u32::MAX);
            string_offsets.entry(piece.to_vec()).or_insert(offset);
            start += piece.len() + 1;
        }
        BtfWriter {
            types,
            strings: btf.strings.clone(),
            string_offsets,
        }
    }

    /// Number of types (the highest id).
    pub fn type_count(&self) -> usize {
        self.types.len()
    }

    /// The type `id` (1-based).
    pub fn get(&self, id: u32) -> Option<&RawType> {
        let index = usize::try_from(id).ok()?.checked_sub(1)?;
        self.types.get(index)
    }

    /// The type `id`, to edit.
    pub fn get_mut(&mut self, id: u32) -> Option<&mut RawType> {
        let index = usize::try_from(id).ok()?.checked_sub(1)?;
        self.types.get_mut(index)
    }

    /// Appends `ty`; its id.
    pub fn add_type(&mut self, ty: RawType) -> u32 {
        self.types.push(ty);
        u32::try_from(self.types.len()).unwrap_or(u32::MAX)
    }

    /// The string at `offset`, if it is one.
    pub fn string(&self, offset: u32) -> Option<&str> {
        let start = usize::try_from(offset).ok()?;
        let rest = self.strings.get(start..)?;
        let len = rest.iter().position(|&b| b == 0)?;
        std::str::from_utf8(&rest[..len]).ok()
    }

    /// The offset of `text` in the string table, if it is there.
    pub fn find_string(&self, text: &str) -> Option<u32> {
        self.string_offsets.get(text.as_bytes()).copied()
    }

    /// The offset of `text`, appended to the string table unless it is
    /// there already.
    pub fn add_string(&mut self, text: &str) -> u32 {
        if let Some(offset) = self.find_string(text) {
            return offset;
        }
        let offset = u32::try_from(self.strings.len()).unwrap_or(u32::MAX);
        // A NUL inside would end the string early: keep what precedes it.
        let bytes = text.split('\0').next().unwrap_or_default().as_bytes();
        self.strings.extend_from_slice(bytes);
        self.strings.push(0);
        self.string_offsets.entry(bytes.to_vec()).or_insert(offset);
        offset
    }

    /// The section's bytes: header, types, strings.
    pub fn to_bytes(&self) -> Vec<u8> {
        let type_len: usize = self
            .types
            .iter()
            .map(|t| TYPE_HEAD_SIZE + t.data.len())
            .sum();
        let len32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let mut out = Vec::with_capacity(BTF_HEADER_SIZE + type_len + self.strings.len());
        out.extend(BTF_MAGIC.to_le_bytes());
        out.extend([BTF_VERSION, 0]);
        out.extend(len32(BTF_HEADER_SIZE).to_le_bytes());
        out.extend(0u32.to_le_bytes()); // type_off
        out.extend(len32(type_len).to_le_bytes());
        out.extend(len32(type_len).to_le_bytes()); // str_off
        out.extend(len32(self.strings.len()).to_le_bytes());
        for ty in &self.types {
            out.extend(ty.name_off.to_le_bytes());
            out.extend(ty.info.to_le_bytes());
            out.extend(ty.size_or_type.to_le_bytes());
            out.extend(&ty.data);
        }
        out.extend(&self.strings);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{STRINGS, setup_btf, setup_types};
    use super::*;

    #[test]
    fn an_unedited_copy_writes_the_same_bytes() {
        let bytes = setup_btf(&setup_types(), STRINGS);
        let writer = BtfWriter::new(&Btf::parse(&bytes).unwrap());
        assert_eq!(writer.to_bytes(), bytes);
    }

    #[test]
    fn edits_and_additions_read_back() {
        let btf = Btf::parse(&setup_btf(&setup_types(), STRINGS)).unwrap();
        let mut writer = BtfWriter::new(&btf);
        assert_eq!(writer.find_string("ctx"), Some(10));
        assert_eq!(writer.add_string("main"), 5, "present strings are reused");
        let name = writer.add_string("long");
        assert_eq!(name, STRINGS.len() as u32);
        let long = writer.add_type(RawType::new(
            BtfKind::Int,
            name,
            0,
            8,
            64u32.to_le_bytes().to_vec(),
        ));
        assert_eq!(long, 4);
        // FUNC main: static instead of global.
        let func = writer.get_mut(3).unwrap();
        func.set_vlen(0);
        assert_eq!(func.kind(), Some(BtfKind::Func));
        // The proto's parameter: unnamed.
        writer.get_mut(2).unwrap().set_word(0, 0);
        let btf = Btf::parse(&writer.to_bytes()).unwrap();
        let int = btf.type_by_id(long).unwrap();
        assert_eq!((btf.type_name(int), int.size_or_type), (Some("long"), 8));
        assert_eq!(btf.type_data(int), 64u32.to_le_bytes());
        let func = btf.type_by_id(3).unwrap();
        assert_eq!(btf.linkage(func), Some(crate::btf::Linkage::Static));
        assert_eq!(le32(btf.type_data(btf.type_by_id(2).unwrap()), 0), 0);
        assert_eq!(writer.get(2).unwrap().word(1), 1);
        assert_eq!(writer.get(2).unwrap().word(99), 0);
        assert_eq!(writer.get(0), None);
    }
}
