//! BTF, the BPF type format: the `.BTF` section's types and string table
//! and the `.BTF.ext` section's function and line info, parsed from the
//! bytes clang writes (`include/uapi/linux/btf.h`,
//! `Documentation/bpf/btf.rst`).
//!
//! ```text
//!  .BTF      +-- header (24 bytes) --+---- types ----+--- strings ---+
//!            | magic eB9F  v1  len   | 12-byte head  | \0name\0...   |
//!            | type_off/len str_off/ | + kind data   |               |
//!            +-----------------------+---------------+---------------+
//!                                    ^ offsets count from the header's end
//!
//!  .BTF.ext  +-- header (32) --+- func_info -----------+- line_info ----------+
//!            | magic v1 len    | rec_size              | rec_size             |
//!            | func off/len    | {sec name, n, recs}.. | {sec name, n, recs}..|
//!            | line off/len .. |                       |                      |
//!            +-----------------+-----------------------+----------------------+
//! ```
//!
//! bpfvisor needs BTF for naming the C source line of an instruction in
//! load, verifier and trap messages, and for what the loader reads from
//! types (`types`): BTF-defined maps (`.maps`), global variables (the
//! `DATASEC`s of `.rodata`, `.data`, `.bss`) and extern kfuncs (`.ksyms`),
//! for showing map keys and values as their types read (`format`), and
//! for handing an object's BTF, patched, to the host kernel (`write`).
//! The type section is walked and checked (every kind's length, every name
//! in the string table) so that a corrupted section is refused rather than
//! half read; type ids inside kind data are checked where they are followed.

mod ext;
mod format;
mod lines;
mod types;
mod write;

use thiserror::Error;

pub use ext::{BtfExt, FuncInfo, InfoSection, LineInfo};
pub use format::{MAX_FORMAT_DEPTH, MAX_FORMAT_NODES, SectionVar, TypedValue, ValueFormatter};
pub use lines::{LineTable, SourceLine};
pub use types::{ArrayInfo, Linkage, MAX_TYPE_CHAIN, Member, VarSecInfo};
pub use write::{BtfWriter, RawType};

/// The magic number both sections start with, in the file's byte order.
pub const BTF_MAGIC: u16 = 0xeb9f;
/// The only BTF version there is.
pub const BTF_VERSION: u8 = 1;
/// Size of `struct btf_header`.
const BTF_HEADER_SIZE: usize = 24;
/// Size of `struct btf_type`, the head every type starts with.
const TYPE_HEAD_SIZE: usize = 12;

/// Why a `.BTF` or `.BTF.ext` section cannot be read.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum BtfError {
    /// The section is shorter than the header it must start with.
    #[error("{section} is {len} bytes, shorter than its {need}-byte header")]
    ReadHeader {
        /// `.BTF` or `.BTF.ext`.
        section: &'static str,
        /// Section length.
        len: usize,
        /// Bytes the header needs.
        need: usize,
    },
    /// The magic number is wrong (or big-endian).
    #[error("{section} has magic {magic:#06x}, not {BTF_MAGIC:#06x} (little-endian BTF)")]
    CheckMagic {
        /// `.BTF` or `.BTF.ext`.
        section: &'static str,
        /// The first two bytes, read little-endian.
        magic: u16,
    },
    /// The version is not 1.
    #[error("{section} has version {version}; only version {BTF_VERSION} exists")]
    CheckVersion {
        /// `.BTF` or `.BTF.ext`.
        section: &'static str,
        /// The version byte.
        version: u8,
    },
    /// A part of the section (header, types, strings, an info block) does
    /// not lie inside it.
    #[error(
        "{section} {part} at offset {offset} with length {len} does not fit in the section ({size} bytes)"
    )]
    CheckBounds {
        /// `.BTF` or `.BTF.ext`.
        section: &'static str,
        /// Which part.
        part: &'static str,
        /// Offset from the section start.
        offset: u64,
        /// Claimed length.
        len: u64,
        /// Section size.
        size: usize,
    },
    /// A part's offset or length breaks the 4-byte alignment BTF keeps.
    #[error("{section} {part} offset or length {value} is not a multiple of 4")]
    AlignPart {
        /// `.BTF` or `.BTF.ext`.
        section: &'static str,
        /// Which part.
        part: &'static str,
        /// The offending value.
        value: u64,
    },
    /// The string table is not a run of NUL-terminated strings starting
    /// with the empty one.
    #[error("BTF string table is malformed: {0}")]
    CheckStrings(&'static str),
    /// A type has a kind BTF does not define.
    #[error("BTF type {id} has unknown kind {kind}")]
    DecodeKind {
        /// Type id (1-based).
        id: u32,
        /// Kind number.
        kind: u8,
    },
    /// A type's kind-specific data runs past the type section.
    #[error("BTF type {id} ({kind}) with {vlen} members runs past the end of the type section")]
    ReadType {
        /// Type id.
        id: u32,
        /// Kind name.
        kind: &'static str,
        /// Member count from `info`.
        vlen: u16,
    },
    /// A name offset points outside the string table.
    #[error("{what} names string offset {offset}, outside the string table ({len} bytes)")]
    ResolveString {
        /// What names it.
        what: String,
        /// The offset.
        offset: u32,
        /// String table length.
        len: usize,
    },
    /// A `.BTF.ext` record size is smaller than the record it must hold.
    #[error(
        "{section} {part} record size {size} is below the minimum {min} or not a multiple of 4"
    )]
    CheckRecordSize {
        /// `.BTF.ext`.
        section: &'static str,
        /// `func_info` or `line_info`.
        part: &'static str,
        /// Claimed size.
        size: u32,
        /// Minimum.
        min: u32,
    },
    /// A `.BTF.ext` block claims no records.
    #[error("{section} {part} block for section `{name}` has no records")]
    CountRecords {
        /// `.BTF.ext`.
        section: &'static str,
        /// `func_info` or `line_info`.
        part: &'static str,
        /// The ELF section the block is for.
        name: String,
    },
    /// An instruction offset in `.BTF.ext` is not a multiple of 8.
    #[error(
        "Record in {part} for section `{name}` has instruction offset {offset}, not a multiple of 8"
    )]
    AlignInsnOffset {
        /// `func_info` or `line_info`.
        part: &'static str,
        /// The ELF section the record is for.
        name: String,
        /// Byte offset.
        offset: u32,
    },
    /// A `.BTF.ext` info part ends inside a block header.
    #[error(
        "{section} {part} ends inside a block header at offset {offset} of the part ({size} bytes)"
    )]
    ReadBlock {
        /// `.BTF.ext`.
        section: &'static str,
        /// `func_info` or `line_info`.
        part: &'static str,
        /// Offset of the block in the part.
        offset: usize,
        /// Part size.
        size: usize,
    },
    /// A `.BTF.ext` block claims more records than its part holds.
    #[error(
        "{section} {part} block for section `{name}` claims {count} records of {record_size} bytes, but {left} bytes remain"
    )]
    ReadRecords {
        /// `.BTF.ext`.
        section: &'static str,
        /// `func_info` or `line_info`.
        part: &'static str,
        /// The ELF section the block is for.
        name: String,
        /// Records claimed.
        count: u32,
        /// Size of each.
        record_size: usize,
        /// Bytes left in the part.
        left: usize,
    },
    /// `.BTF.ext` is present without `.BTF`, whose strings it needs.
    #[error(".BTF.ext is present without a .BTF section")]
    FindBtf,
    /// A type id names no type.
    #[error("BTF type {id} does not exist; the object has {count} types")]
    ResolveType {
        /// The id.
        id: u32,
        /// Types in the section.
        count: usize,
    },
    /// Typedefs, qualifiers or arrays chain too deep (or in a cycle).
    #[error(
        "BTF type {id} starts a chain of more than {MAX_TYPE_CHAIN} typedefs, qualifiers or arrays"
    )]
    ChainTypes {
        /// Where the chain starts.
        id: u32,
    },
    /// A type that must have a size (a variable's, a map key's) has none.
    #[error("BTF type {id} ({kind}) has no size")]
    SizeType {
        /// The type.
        id: u32,
        /// Its kind (`void` for id 0).
        kind: &'static str,
    },
    /// A type's size does not fit in 32 bits.
    #[error("BTF type {id} is larger than 4 GiB")]
    OverflowSize {
        /// The type.
        id: u32,
    },
}

/// Kinds of BTF types (`BTF_KIND_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BtfKind {
    /// `BTF_KIND_INT`.
    Int,
    /// `BTF_KIND_PTR`.
    Ptr,
    /// `BTF_KIND_ARRAY`.
    Array,
    /// `BTF_KIND_STRUCT`.
    Struct,
    /// `BTF_KIND_UNION`.
    Union,
    /// `BTF_KIND_ENUM`.
    Enum,
    /// `BTF_KIND_FWD`.
    Fwd,
    /// `BTF_KIND_TYPEDEF`.
    Typedef,
    /// `BTF_KIND_VOLATILE`.
    Volatile,
    /// `BTF_KIND_CONST`.
    Const,
    /// `BTF_KIND_RESTRICT`.
    Restrict,
    /// `BTF_KIND_FUNC`.
    Func,
    /// `BTF_KIND_FUNC_PROTO`.
    FuncProto,
    /// `BTF_KIND_VAR`.
    Var,
    /// `BTF_KIND_DATASEC`.
    Datasec,
    /// `BTF_KIND_FLOAT`.
    Float,
    /// `BTF_KIND_DECL_TAG`.
    DeclTag,
    /// `BTF_KIND_TYPE_TAG`.
    TypeTag,
    /// `BTF_KIND_ENUM64`.
    Enum64,
}

impl BtfKind {
    fn from_number(kind: u8) -> Option<BtfKind> {
        use BtfKind::*;
        Some(match kind {
            1 => Int,
            2 => Ptr,
            3 => Array,
            4 => Struct,
            5 => Union,
            6 => Enum,
            7 => Fwd,
            8 => Typedef,
            9 => Volatile,
            10 => Const,
            11 => Restrict,
            12 => Func,
            13 => FuncProto,
            14 => Var,
            15 => Datasec,
            16 => Float,
            17 => DeclTag,
            18 => TypeTag,
            19 => Enum64,
            _ => return None,
        })
    }

    /// The kind's number (`BTF_KIND_*`), as `info` holds it.
    pub const fn number(self) -> u8 {
        use BtfKind::*;
        match self {
            Int => 1,
            Ptr => 2,
            Array => 3,
            Struct => 4,
            Union => 5,
            Enum => 6,
            Fwd => 7,
            Typedef => 8,
            Volatile => 9,
            Const => 10,
            Restrict => 11,
            Func => 12,
            FuncProto => 13,
            Var => 14,
            Datasec => 15,
            Float => 16,
            DeclTag => 17,
            TypeTag => 18,
            Enum64 => 19,
        }
    }

    /// The kernel's name for the kind, for messages.
    pub const fn name(self) -> &'static str {
        use BtfKind::*;
        match self {
            Int => "INT",
            Ptr => "PTR",
            Array => "ARRAY",
            Struct => "STRUCT",
            Union => "UNION",
            Enum => "ENUM",
            Fwd => "FWD",
            Typedef => "TYPEDEF",
            Volatile => "VOLATILE",
            Const => "CONST",
            Restrict => "RESTRICT",
            Func => "FUNC",
            FuncProto => "FUNC_PROTO",
            Var => "VAR",
            Datasec => "DATASEC",
            Float => "FLOAT",
            DeclTag => "DECL_TAG",
            TypeTag => "TYPE_TAG",
            Enum64 => "ENUM64",
        }
    }

    /// Bytes of kind-specific data after the 12-byte head, given `vlen`.
    const fn extra_size(self, vlen: u16) -> usize {
        use BtfKind::*;
        let vlen = vlen as usize;
        match self {
            Int | Var | DeclTag => 4,
            Array => 12,
            Struct | Union | Datasec | Enum64 => 12 * vlen,
            Enum | FuncProto => 8 * vlen,
            Ptr | Fwd | Typedef | Volatile | Const | Restrict | Func | Float | TypeTag => 0,
        }
    }
}

/// One type: its head; kind-specific data stays in [`Btf::type_data`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BtfType {
    /// Kind.
    pub kind: BtfKind,
    /// Offset of the name in the string table (0: anonymous).
    pub name_off: u32,
    /// The raw `info` word: vlen in bits 0-15, kind flag in bit 31.
    pub info: u32,
    /// `size` or `type`, depending on the kind.
    pub size_or_type: u32,
    /// Range of the kind-specific data in the type section.
    data: std::ops::Range<usize>,
}

impl BtfType {
    /// Member, parameter or variable count.
    pub const fn vlen(&self) -> u16 {
        (self.info & 0xffff) as u16
    }
}

/// A parsed `.BTF` section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Btf {
    /// Types by id; id 0 is `void` and has no entry, so `types[i]` is id
    /// `i + 1`.
    types: Vec<BtfType>,
    type_section: Vec<u8>,
    strings: Vec<u8>,
    /// The first `DATASEC` of each name, so that lookups by section name
    /// do not walk every type (objects may be hostile and large).
    datasecs: std::collections::BTreeMap<String, u32>,
}

impl Btf {
    /// Parses and checks a `.BTF` section.
    pub fn parse(bytes: &[u8]) -> Result<Btf, BtfError> {
        const SECTION: &str = ".BTF";
        let header = Header::parse(SECTION, bytes, BTF_HEADER_SIZE)?;
        let type_off = header.word(8);
        let type_len = header.word(12);
        let str_off = header.word(16);
        let str_len = header.word(20);
        let types = header.part("type section", type_off, type_len)?;
        let strings = header.part("string table", str_off, str_len)?;
        for (part, value) in [("type section", type_off), ("type section", type_len)] {
            if value % 4 != 0 {
                return Err(BtfError::AlignPart {
                    section: SECTION,
                    part,
                    value: value.into(),
                });
            }
        }
        check_strings(strings)?;
        let mut btf = Btf {
            types: Vec::new(),
            type_section: types.to_vec(),
            strings: strings.to_vec(),
            datasecs: std::collections::BTreeMap::new(),
        };
        btf.read_types()?;
        Ok(btf)
    }

    fn read_types(&mut self) -> Result<(), BtfError> {
        let section = &self.type_section;
        let mut pos = 0;
        while pos < section.len() {
            let id = u32::try_from(self.types.len() + 1).unwrap_or(u32::MAX);
            let head = section
                .get(pos..pos + TYPE_HEAD_SIZE)
                .ok_or(BtfError::CheckBounds {
                    section: ".BTF",
                    part: "type head",
                    offset: pos as u64,
                    len: TYPE_HEAD_SIZE as u64,
                    size: section.len(),
                })?;
            let name_off = le32(head, 0);
            let info = le32(head, 4);
            let size_or_type = le32(head, 8);
            let number = ((info >> 24) & 0x1f) as u8;
            let kind =
                BtfKind::from_number(number).ok_or(BtfError::DecodeKind { id, kind: number })?;
            let vlen = (info & 0xffff) as u16;
            let start = pos + TYPE_HEAD_SIZE;
            let end = start + kind.extra_size(vlen);
            if end > section.len() {
                return Err(BtfError::ReadType {
                    id,
                    kind: kind.name(),
                    vlen,
                });
            }
            self.check_name(name_off, || format!("BTF type {id} ({})", kind.name()))?;
            self.types.push(BtfType {
                kind,
                name_off,
                info,
                size_or_type,
                data: start..end,
            });
            pos = end;
        }
        for (i, ty) in self.types.iter().enumerate() {
            if ty.kind == BtfKind::Datasec
                && let Some(name) = self.type_name(ty)
            {
                let id = u32::try_from(i + 1).unwrap_or(u32::MAX);
                self.datasecs.entry(name.to_owned()).or_insert(id);
            }
        }
        // Member, enumerator and parameter names must resolve too.
        for (i, ty) in self.types.iter().enumerate() {
            let stride = match ty.kind {
                BtfKind::Struct | BtfKind::Union | BtfKind::Enum64 => 12,
                BtfKind::Enum | BtfKind::FuncProto => 8,
                _ => continue,
            };
            for member in section[ty.data.clone()].chunks_exact(stride) {
                let name_off = le32(member, 0);
                self.check_name(name_off, || {
                    format!("A member of BTF type {} ({})", i + 1, ty.kind.name())
                })?;
            }
        }
        Ok(())
    }

    fn check_name(&self, offset: u32, what: impl Fn() -> String) -> Result<(), BtfError> {
        if self.string(offset).is_none() {
            return Err(BtfError::ResolveString {
                what: what(),
                offset,
                len: self.strings.len(),
            });
        }
        Ok(())
    }

    /// The string at `offset` in the string table, if it is one (it must be
    /// valid UTF-8 to be returned).
    pub fn string(&self, offset: u32) -> Option<&str> {
        let start = usize::try_from(offset).ok()?;
        let rest = self.strings.get(start..)?;
        let len = rest.iter().position(|&b| b == 0)?;
        std::str::from_utf8(&rest[..len]).ok()
    }

    /// The type with id `id` (1-based; 0 is `void`).
    pub fn type_by_id(&self, id: u32) -> Option<&BtfType> {
        let index = usize::try_from(id).ok()?.checked_sub(1)?;
        self.types.get(index)
    }

    /// Every type, in id order starting at 1.
    pub fn types(&self) -> &[BtfType] {
        &self.types
    }

    /// The name of a type, or `None` when anonymous.
    pub fn type_name(&self, ty: &BtfType) -> Option<&str> {
        self.string(ty.name_off).filter(|s| !s.is_empty())
    }

    /// The kind-specific bytes that follow a type's head.
    pub fn type_data(&self, ty: &BtfType) -> &[u8] {
        self.type_section.get(ty.data.clone()).unwrap_or_default()
    }
}

/// The common header of both sections: magic, version, flags, `hdr_len`.
struct Header<'a> {
    section: &'static str,
    bytes: &'a [u8],
    hdr_len: usize,
}

impl<'a> Header<'a> {
    /// Checks magic and version and that the header (at least `min` bytes,
    /// as long as `hdr_len` says) fits.
    fn parse(section: &'static str, bytes: &'a [u8], min: usize) -> Result<Self, BtfError> {
        if bytes.len() < 8 {
            return Err(BtfError::ReadHeader {
                section,
                len: bytes.len(),
                need: min,
            });
        }
        let magic = u16::from_le_bytes([bytes[0], bytes[1]]);
        if magic != BTF_MAGIC {
            return Err(BtfError::CheckMagic { section, magic });
        }
        if bytes[2] != BTF_VERSION {
            return Err(BtfError::CheckVersion {
                section,
                version: bytes[2],
            });
        }
        let hdr_len = le32(bytes, 4);
        let hdr_len_usize = usize::try_from(hdr_len).unwrap_or(usize::MAX);
        if hdr_len_usize < min || hdr_len_usize > bytes.len() {
            return Err(BtfError::CheckBounds {
                section,
                part: "header",
                offset: 0,
                len: hdr_len.into(),
                size: bytes.len(),
            });
        }
        if bytes.len() < min {
            return Err(BtfError::ReadHeader {
                section,
                len: bytes.len(),
                need: min,
            });
        }
        Ok(Header {
            section,
            bytes,
            hdr_len: hdr_len_usize,
        })
    }

    /// The 32-bit header field at byte `at` (inside the checked minimum).
    fn word(&self, at: usize) -> u32 {
        le32(self.bytes, at)
    }

    /// The part `off..off + len`, counted from the end of the header.
    fn part(&self, part: &'static str, off: u32, len: u32) -> Result<&'a [u8], BtfError> {
        let start = (self.hdr_len as u64) + u64::from(off);
        let end = start + u64::from(len);
        let range = usize::try_from(start).ok().zip(usize::try_from(end).ok());
        range
            .and_then(|(s, e)| self.bytes.get(s..e))
            .ok_or(BtfError::CheckBounds {
                section: self.section,
                part,
                offset: start,
                len: len.into(),
                size: self.bytes.len(),
            })
    }
}

/// The string table starts with the empty string and ends with a NUL.
fn check_strings(strings: &[u8]) -> Result<(), BtfError> {
    match (strings.first(), strings.last()) {
        (None, _) => Err(BtfError::CheckStrings("it is empty")),
        (Some(&first), _) if first != 0 => {
            Err(BtfError::CheckStrings("it does not start with a NUL"))
        }
        (_, Some(&last)) if last != 0 => Err(BtfError::CheckStrings("its last string has no NUL")),
        _ => Ok(()),
    }
}

/// The little-endian 32-bit word at `at`; 0 past the end (callers check
/// lengths first, so that never happens on a path that matters).
fn le32(bytes: &[u8], at: usize) -> u32 {
    bytes
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A `.BTF` section with the given type bytes and strings.
    pub(crate) fn setup_btf(types: &[u8], strings: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(BTF_MAGIC.to_le_bytes());
        out.extend([BTF_VERSION, 0]);
        out.extend(24u32.to_le_bytes());
        out.extend(0u32.to_le_bytes());
        out.extend((types.len() as u32).to_le_bytes());
        out.extend((types.len() as u32).to_le_bytes());
        out.extend((strings.len() as u32).to_le_bytes());
        out.extend(types);
        out.extend(strings);
        out
    }

    /// `int` (INT, 4 bytes) named at string offset 1, then `FUNC main`
    /// named at 5 pointing at a FUNC_PROTO with one parameter.
    pub(crate) fn setup_types() -> Vec<u8> {
        let mut t = Vec::new();
        let head = |t: &mut Vec<u8>, name: u32, kind: u32, vlen: u32, st: u32| {
            t.extend(name.to_le_bytes());
            t.extend(((kind << 24) | vlen).to_le_bytes());
            t.extend(st.to_le_bytes());
        };
        head(&mut t, 1, 1, 0, 4);
        t.extend(0x20u32.to_le_bytes()); // 32 bits
        head(&mut t, 0, 13, 1, 1); // proto returning int
        t.extend(10u32.to_le_bytes()); // param name "ctx"
        t.extend(1u32.to_le_bytes());
        head(&mut t, 5, 12, 1, 2); // global func
        t
    }

    pub(crate) const STRINGS: &[u8] = b"\0int\0main\0ctx\0";

    #[test]
    fn parses_types_and_strings() {
        let btf = Btf::parse(&setup_btf(&setup_types(), STRINGS)).unwrap();
        assert_eq!(btf.types().len(), 3);
        let int = btf.type_by_id(1).unwrap();
        assert_eq!((int.kind, btf.type_name(int)), (BtfKind::Int, Some("int")));
        assert_eq!(btf.type_data(int), 0x20u32.to_le_bytes());
        let func = btf.type_by_id(3).unwrap();
        assert_eq!(
            (func.kind, btf.type_name(func), func.size_or_type),
            (BtfKind::Func, Some("main"), 2)
        );
        assert_eq!(btf.type_by_id(0), None);
        assert_eq!(btf.type_by_id(4), None);
        assert_eq!(btf.string(10), Some("ctx"));
        assert_eq!(btf.string(100), None);
    }

    #[test]
    fn refuses_bad_headers() {
        let good = setup_btf(&setup_types(), STRINGS);
        let err = Btf::parse(&good[..6]).unwrap_err();
        assert_eq!(
            err.to_string(),
            ".BTF is 6 bytes, shorter than its 24-byte header"
        );
        let mut bad = good.clone();
        bad[0] = 0xeb;
        bad[1] = 0x9f;
        assert_eq!(
            Btf::parse(&bad).unwrap_err().to_string(),
            ".BTF has magic 0x9feb, not 0xeb9f (little-endian BTF)"
        );
        let mut bad = good.clone();
        bad[2] = 2;
        assert_eq!(
            Btf::parse(&bad).unwrap_err().to_string(),
            ".BTF has version 2; only version 1 exists"
        );
        let mut bad = good.clone();
        bad[20..24].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(
            Btf::parse(&bad).unwrap_err().to_string(),
            ".BTF string table at offset 72 with length 1000 does not fit in the section (86 bytes)"
        );
        let mut bad = good.clone();
        bad[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Btf::parse(&bad),
            Err(BtfError::CheckBounds { part: "header", .. })
        ));
    }

    #[test]
    fn refuses_bad_types() {
        let mut types = setup_types();
        types[7] = 25; // kind 25
        let err = Btf::parse(&setup_btf(&types, STRINGS)).unwrap_err();
        assert_eq!(err.to_string(), "BTF type 1 has unknown kind 25");
        let mut types = setup_types();
        types[20..24].copy_from_slice(&((13u32 << 24) | 500).to_le_bytes());
        let err = Btf::parse(&setup_btf(&types, STRINGS)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "BTF type 2 (FUNC_PROTO) with 500 members runs past the end of the type section"
        );
        let mut types = setup_types();
        types[0..4].copy_from_slice(&77u32.to_le_bytes());
        let err = Btf::parse(&setup_btf(&types, STRINGS)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "BTF type 1 (INT) names string offset 77, outside the string table (14 bytes)"
        );
        let err = Btf::parse(&setup_btf(&setup_types(), b"\0int")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "BTF string table is malformed: its last string has no NUL"
        );
    }
}
