//! Map keys and values read through their BTF types, as `bpftool map
//! dump` shows them when the map has BTF: integers as numbers, enums by
//! enumerator, char arrays holding text as strings, structs as fields.
//!
//! ```text
//!  struct word { char s[16]; }   74 68 65 00 .. 00   ─►  {s: "the"}
//!  __u64                         03 00 .. 00         ─►  3
//!  DATASEC .rodata               05 00 00 00 ..      ─►  {multiplier: 5, bias: -3, negate: 0}
//!    (offsets from the ELF symbols)
//! ```
//!
//! Both the types and the bytes are untrusted: the types come from the
//! object, the bytes from memory the guest writes. So every read is
//! checked against the slice it reads from (a type whose size is not the
//! slice's length is shown as the bytes, `hex:...`), nesting stops at
//! [`MAX_FORMAT_DEPTH`], and one value makes at most [`MAX_FORMAT_NODES`]
//! nodes, fewer for small values (Note [Format budget]): a hostile type
//! can nest unions of unions or arrays of empty structs, whose output is
//! exponential or unbounded in the value's size. A value over its budget
//! is shown whole as its bytes.

use std::collections::HashMap;
use std::fmt;

use super::{Btf, BtfKind, BtfType, le32};

/// Deepest nesting of structs, unions and arrays read; deeper values are
/// shown as their bytes. Legitimate types nest a few levels; a cycle
/// (`struct a { struct a x; }`, which only a hostile file can write) ends
/// here.
pub const MAX_FORMAT_DEPTH: usize = 32;

/// Most nodes (numbers, strings, fields, elements) one value makes.
pub const MAX_FORMAT_NODES: usize = 1 << 20;

// Note [Format budget]
// ~~~~~~~~~~~~~~~~~~~~
// A value of n bytes may make FORMAT_NODES_BASE + FORMAT_NODES_PER_BYTE * n
// nodes, at most MAX_FORMAT_NODES. A byte array makes one node a byte, an
// array of one-byte structs two; a struct of eight one-bit fields makes
// nine nodes of one byte, which the base covers for small values. Only
// overlapping members (unions) or empty structs make more, and a hostile
// file can make them make 2^depth or 4 billion: so a value over budget is
// shown as its bytes. Strings and bytes also count a node per 8 bytes, as
// their output grows with their length; bytes at least one, so that
// members of no size (which read as no bytes) still pay for themselves.

/// Nodes any value may make.
const FORMAT_NODES_BASE: usize = 4096;
/// Further nodes per byte of the value.
const FORMAT_NODES_PER_BYTE: usize = 2;

/// `BTF_INT_SIGNED`, `BTF_INT_CHAR`, `BTF_INT_BOOL`: the encoding bits of
/// an `INT`.
const INT_SIGNED: u32 = 1;
const INT_CHAR: u32 = 2;
const INT_BOOL: u32 = 4;

/// A value read through its type. Names borrow from the BTF.
#[derive(Clone, Debug, PartialEq)]
pub enum TypedValue<'a> {
    /// An unsigned integer (or a bitfield of one), up to 128 bits.
    Unsigned(u128),
    /// A signed integer, up to 128 bits.
    Signed(i128),
    /// A `bool` (`BTF_INT_BOOL`): any nonzero byte is true.
    Bool(bool),
    /// A `float` or `double`.
    Float(f64),
    /// An enum value that names an enumerator.
    Enumerator(&'a str),
    /// A char array holding text: printable characters, then only NULs.
    Text(String),
    /// A pointer: an address, meaningless outside the guest.
    Pointer(u64),
    /// Bytes with no type that reads them: a type that does not fit them,
    /// nesting too deep, a value over its budget, or a kind with no value
    /// (`void`, functions, forward declarations).
    Bytes(Vec<u8>),
    /// The elements of an array, in order.
    List(Vec<TypedValue<'a>>),
    /// Named members of a struct or union (anonymous struct and union
    /// members flattened into their parent, as C names them), or the
    /// variables of a data section, in order.
    Fields(Vec<(&'a str, TypedValue<'a>)>),
}

/// A variable of a global data section: where it is in the section and
/// its `VAR` type, which names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SectionVar {
    /// Byte offset in the section.
    pub offset: u64,
    /// The `VAR`'s type id.
    pub var_type_id: u32,
}

impl Btf {
    /// Reads `bytes` as a value of type `type_id`; bytes that type does
    /// not fit (or past the limits, see the module documentation) come
    /// back as [`TypedValue::Bytes`]. Never panics. To read many values,
    /// a [`ValueFormatter`] keeps what it learns of the types.
    pub fn format_value(&self, type_id: u32, bytes: &[u8]) -> TypedValue<'_> {
        ValueFormatter::new(self).format_value(type_id, bytes)
    }

    /// Reads `bytes`, a whole global data section, as its variables
    /// `vars`; see [`ValueFormatter::format_section`].
    pub fn format_section(&self, vars: &[SectionVar], bytes: &[u8]) -> TypedValue<'_> {
        ValueFormatter::new(self).format_section(vars, bytes)
    }
}

/// The value's budget of nodes ran out (Note [Format budget]).
#[derive(Debug)]
struct OverBudget;

/// Reads values of one object's types, keeping what it learns of them
/// (sizes, enumerators) from one value to the next: a map dump reads
/// millions of values of the same few types.
#[derive(Debug)]
pub struct ValueFormatter<'a> {
    btf: &'a Btf,
    /// Nodes the value being read may still make.
    nodes_left: usize,
    /// Enumerators of each enum type read, by value: an enum may have
    /// 65535 of them and an array millions of elements.
    enums: HashMap<u32, HashMap<i128, &'a str>>,
    /// Sizes of the types read so far, by id (`SIZE_UNKNOWN`: not yet
    /// computed; `SIZE_NONE`: no size): a hostile type can make each size
    /// a walk of MAX_TYPE_CHAIN^2 steps. Empty until a value is read.
    sizes: Vec<u64>,
}

/// `ValueFormatter::sizes` of a type whose size is not computed yet.
const SIZE_UNKNOWN: u64 = u64::MAX;
/// `ValueFormatter::sizes` of a type that has no size.
const SIZE_NONE: u64 = u64::MAX - 1;

impl<'a> ValueFormatter<'a> {
    /// A formatter for the types of `btf`.
    pub fn new(btf: &'a Btf) -> Self {
        ValueFormatter {
            btf,
            nodes_left: 0,
            enums: HashMap::new(),
            sizes: Vec::new(),
        }
    }

    /// Reads `bytes` as a value of type `type_id`; bytes that type does
    /// not fit (or past the limits, see the module documentation) come
    /// back as [`TypedValue::Bytes`]. Never panics.
    pub fn format_value(&mut self, type_id: u32, bytes: &[u8]) -> TypedValue<'a> {
        self.start(bytes.len());
        self.value(type_id, bytes, 0)
            .unwrap_or_else(|OverBudget| TypedValue::Bytes(bytes.to_vec()))
    }

    /// Reads `bytes`, a whole global data section, as its variables
    /// `vars`: [`TypedValue::Fields`] of each variable's name and value. A
    /// variable that does not lie inside `bytes` is shown as the bytes it
    /// has there.
    pub fn format_section(&mut self, vars: &[SectionVar], bytes: &[u8]) -> TypedValue<'a> {
        self.start(bytes.len());
        let vars = vars.iter().map(|v| (v.var_type_id, v.offset, None));
        self.variables(vars, bytes, 0)
            .unwrap_or_else(|OverBudget| TypedValue::Bytes(bytes.to_vec()))
    }

    /// Sets the budget for a value of `len` bytes (Note [Format budget]).
    fn start(&mut self, len: usize) {
        self.nodes_left = len
            .saturating_mul(FORMAT_NODES_PER_BYTE)
            .saturating_add(FORMAT_NODES_BASE)
            .min(MAX_FORMAT_NODES);
    }
}

/// Where a bitfield lies and how wide it is.
#[derive(Clone, Copy)]
struct Bits {
    /// Offset from the start of the bytes, in bits.
    offset: u64,
    /// Width in bits.
    width: u32,
}

impl<'a> ValueFormatter<'a> {
    /// The size of type `id`, as [`Btf::type_size`].
    fn size(&mut self, id: u32) -> Option<u32> {
        let btf = self.btf;
        if self.sizes.is_empty() {
            // Ids 0 to the last: one slot each, 8 bytes a type of at
            // least 12 in the section.
            self.sizes = vec![SIZE_UNKNOWN; btf.types().len() + 1];
        }
        let slot = self.sizes.get_mut(usize::try_from(id).ok()?)?;
        if *slot == SIZE_UNKNOWN {
            *slot = btf.type_size(id).map_or(SIZE_NONE, u64::from);
        }
        u32::try_from(*slot).ok()
    }

    /// Takes `n` nodes of the budget.
    fn spend(&mut self, n: usize) -> Result<(), OverBudget> {
        self.nodes_left = self.nodes_left.checked_sub(n).ok_or(OverBudget)?;
        Ok(())
    }

    /// Bytes as themselves, paid for by their length (and one node even
    /// when empty: a struct of 65535 members of no size is not free).
    fn bytes(&mut self, bytes: &[u8]) -> Result<TypedValue<'a>, OverBudget> {
        self.spend(1 + bytes.len() / 8)?;
        Ok(TypedValue::Bytes(bytes.to_vec()))
    }

    /// `bytes` as a value of type `id`, `depth` levels down.
    fn value(&mut self, id: u32, bytes: &[u8], depth: usize) -> Result<TypedValue<'a>, OverBudget> {
        self.spend(1)?;
        let btf = self.btf;
        if depth > MAX_FORMAT_DEPTH {
            return self.bytes(bytes);
        }
        let Ok((id, Some(ty))) = btf.skip_modifiers(id) else {
            return self.bytes(bytes);
        };
        let fits = self
            .size(id)
            .is_some_and(|size| usize::try_from(size).is_ok_and(|size| size == bytes.len()));
        if !fits {
            return self.bytes(bytes);
        }
        match ty.kind {
            BtfKind::Int => match int_bits(btf, ty) {
                Some((encoding, bits)) => Ok(int_value(encoding, read_bits(bytes, bits))),
                None => self.bytes(bytes),
            },
            BtfKind::Enum | BtfKind::Enum64 => {
                let bits = Bits {
                    offset: 0,
                    width: u32::try_from(bytes.len().saturating_mul(8)).unwrap_or(u32::MAX),
                };
                match read_bits(bytes, bits) {
                    Some((raw, width)) => Ok(self.enum_value(id, ty, raw, width)),
                    None => self.bytes(bytes),
                }
            }
            BtfKind::Ptr => match <[u8; 8]>::try_from(bytes) {
                Ok(b) => Ok(TypedValue::Pointer(u64::from_le_bytes(b))),
                Err(_) => self.bytes(bytes),
            },
            BtfKind::Float => match bytes.len() {
                4 => Ok(TypedValue::Float(f64::from(f32::from_le_bytes(
                    bytes.try_into().unwrap_or_default(),
                )))),
                8 => Ok(TypedValue::Float(f64::from_le_bytes(
                    bytes.try_into().unwrap_or_default(),
                ))),
                _ => self.bytes(bytes),
            },
            BtfKind::Array => self.array(ty, bytes, depth),
            BtfKind::Struct | BtfKind::Union => self.members(ty, bytes, depth),
            BtfKind::Var => self.value(ty.size_or_type, bytes, depth + 1),
            BtfKind::Datasec => {
                // Offsets as the DATASEC has them: 0 in objects, which
                // `format_section` is for; set in BTF libbpf has fixed.
                let vars = btf
                    .datasec_entries(ty)
                    .into_iter()
                    .map(|e| (e.type_id, u64::from(e.offset), Some(e.size)));
                self.variables(vars, bytes, depth)
            }
            _ => self.bytes(bytes),
        }
    }

    /// The variables `(VAR id, offset, size)` of a data section (a size
    /// of `None` or 0: the type's).
    fn variables(
        &mut self,
        vars: impl Iterator<Item = (u32, u64, Option<u32>)>,
        bytes: &[u8],
        depth: usize,
    ) -> Result<TypedValue<'a>, OverBudget> {
        self.spend(1)?;
        let btf = self.btf;
        let mut fields = Vec::new();
        for (var_id, offset, size) in vars {
            self.spend(1)?;
            let Some(var) = btf.type_by_id(var_id).filter(|t| t.kind == BtfKind::Var) else {
                continue;
            };
            let name = btf.type_name(var).unwrap_or_default();
            let size = match size {
                Some(size) if size != 0 => Some(size),
                _ => self.size(var.size_or_type),
            };
            let value = match slice(bytes, offset, size) {
                Some(b) => self.value(var.size_or_type, b, depth + 1)?,
                None => self.bytes(rest(bytes, offset))?,
            };
            fields.push((name, value));
        }
        Ok(TypedValue::Fields(fields))
    }

    fn array(
        &mut self,
        ty: &BtfType,
        bytes: &[u8],
        depth: usize,
    ) -> Result<TypedValue<'a>, OverBudget> {
        let btf = self.btf;
        let Some(info) = btf.array(ty) else {
            return self.bytes(bytes);
        };
        if is_char(btf, info.elem_type)
            && info.nelems > 0
            && let Some(text) = text(bytes)
        {
            self.spend(text.len() / 8)?;
            return Ok(TypedValue::Text(text));
        }
        let Some(elem_size) = self.size(info.elem_type) else {
            return self.bytes(bytes);
        };
        let mut elems = Vec::new();
        for i in 0..u64::from(info.nelems) {
            // The array's size is the slice's: every element is inside.
            let at = i * u64::from(elem_size);
            let elem = slice(bytes, at, Some(elem_size)).unwrap_or_default();
            elems.push(self.value(info.elem_type, elem, depth + 1)?);
        }
        Ok(TypedValue::List(elems))
    }

    fn members(
        &mut self,
        ty: &BtfType,
        bytes: &[u8],
        depth: usize,
    ) -> Result<TypedValue<'a>, OverBudget> {
        let btf = self.btf;
        let kind_flag = ty.info >> 31 == 1;
        let mut fields = Vec::new();
        for m in btf.members(ty) {
            let member_ty = btf.skip_modifiers(m.type_id).ok().and_then(|(_, t)| t);
            // A bitfield: its width from the member (kind_flag), or, in
            // the older encoding, from an INT member that does not start
            // on a byte.
            let bits = match member_ty {
                _ if kind_flag && m.bitfield_size > 0 => Some(Bits {
                    offset: m.bit_offset.into(),
                    width: m.bitfield_size,
                }),
                Some(t) if m.bit_offset % 8 != 0 && t.kind == BtfKind::Int => {
                    int_bits(btf, t).map(|(_, bits)| Bits {
                        offset: u64::from(m.bit_offset) + bits.offset,
                        width: bits.width,
                    })
                }
                _ => None,
            };
            let value = match (bits, member_ty) {
                (Some(bits), Some(t)) => self.bitfield(m.type_id, t, bytes, bits)?,
                (Some(_), None) => self.bytes(&[])?,
                (None, _) => {
                    let offset = u64::from(m.bit_offset / 8);
                    let size = self.size(m.type_id);
                    match slice(bytes, offset, size) {
                        Some(b) if m.bit_offset % 8 == 0 => self.value(m.type_id, b, depth + 1)?,
                        _ => self.bytes(rest(bytes, offset))?,
                    }
                }
            };
            let anonymous_aggregate =
                member_ty.is_some_and(|t| matches!(t.kind, BtfKind::Struct | BtfKind::Union));
            match (m.name, value) {
                ("", TypedValue::Fields(inner)) if anonymous_aggregate => fields.extend(inner),
                // Unnamed bitfields are padding.
                ("", _) => {}
                (name, value) => fields.push((name, value)),
            }
        }
        Ok(TypedValue::Fields(fields))
    }

    /// A bitfield of a struct whose bytes are `bytes`; `ty` is its type
    /// (id `id`) after modifiers.
    fn bitfield(
        &mut self,
        id: u32,
        ty: &BtfType,
        bytes: &[u8],
        bits: Bits,
    ) -> Result<TypedValue<'a>, OverBudget> {
        self.spend(1)?;
        let raw = read_bits(bytes, bits);
        match (ty.kind, raw) {
            (BtfKind::Int, Some(_)) => {
                let encoding = int_bits(self.btf, ty).map_or(0, |(encoding, _)| encoding);
                Ok(int_value(encoding, raw))
            }
            (BtfKind::Enum | BtfKind::Enum64, Some((raw, width))) => {
                let id = self.btf.skip_modifiers(id).map_or(0, |(id, _)| id);
                Ok(self.enum_value(id, ty, raw, width))
            }
            _ => self.bytes(&[]),
        }
    }

    /// An enum of type `ty` (id `id`) whose `width` bits are `raw`: the
    /// enumerator's name, or the number when none has its value.
    fn enum_value(&mut self, id: u32, ty: &BtfType, raw: u128, width: u32) -> TypedValue<'a> {
        let signed = ty.info >> 31 == 1;
        let value = if signed {
            sign_extend(raw, width)
        } else {
            raw as i128
        };
        let btf = self.btf;
        let names = self.enums.entry(id).or_insert_with(|| {
            let data = btf.type_data(ty);
            let mut names = HashMap::new();
            let stride = if ty.kind == BtfKind::Enum { 8 } else { 12 };
            for e in data.chunks_exact(stride) {
                let v = if ty.kind == BtfKind::Enum {
                    let v = le32(e, 4);
                    if signed {
                        i128::from(v as i32)
                    } else {
                        i128::from(v)
                    }
                } else {
                    let v = u64::from(le32(e, 4)) | (u64::from(le32(e, 8)) << 32);
                    if signed {
                        i128::from(v as i64)
                    } else {
                        i128::from(v)
                    }
                };
                // Checked at parse: enumerator names resolve.
                let name = btf.string(le32(e, 0)).unwrap_or_default();
                names.entry(v).or_insert(name);
            }
            names
        });
        match names.get(&value) {
            Some(name) => TypedValue::Enumerator(name),
            None if signed => TypedValue::Signed(value),
            None => TypedValue::Unsigned(raw),
        }
    }
}

/// An `INT`'s encoding and the bits of its value (`BTF_INT_OFFSET`,
/// `BTF_INT_BITS`), if they lie inside its size of at most 16 bytes.
fn int_bits(btf: &Btf, ty: &BtfType) -> Option<(u32, Bits)> {
    let data = le32(btf.type_data(ty), 0);
    let (encoding, offset, width) = ((data >> 24) & 0xf, (data >> 16) & 0xff, data & 0xff);
    let size_bits = u64::from(ty.size_or_type).checked_mul(8)?;
    let fits = ty.size_or_type <= 16
        && (1..=128).contains(&width)
        && u64::from(offset + width) <= size_bits;
    fits.then_some((
        encoding,
        Bits {
            offset: offset.into(),
            width,
        },
    ))
}

/// An integer of `INT` encoding `encoding` whose bits are `raw`; `None`
/// (the bits are not in the bytes) reads as no bytes.
fn int_value<'a>(encoding: u32, raw: Option<(u128, u32)>) -> TypedValue<'a> {
    let Some((raw, width)) = raw else {
        return TypedValue::Bytes(Vec::new());
    };
    if encoding & INT_BOOL != 0 {
        TypedValue::Bool(raw != 0)
    } else if encoding & INT_SIGNED != 0 {
        TypedValue::Signed(sign_extend(raw, width))
    } else {
        TypedValue::Unsigned(raw)
    }
}

/// The `bits.width` bits (at most 128) at bit `bits.offset` of `bytes`,
/// little-endian, and the width; `None` when they are not all inside.
fn read_bits(bytes: &[u8], bits: Bits) -> Option<(u128, u32)> {
    let Bits { offset, width } = bits;
    let end = offset.checked_add(width.into())?;
    if width == 0 || width > 128 || end > (bytes.len() as u64).saturating_mul(8) {
        return None;
    }
    if offset % 8 == 0 && width % 8 == 0 {
        // Whole bytes, the common case.
        let start = usize::try_from(offset / 8).ok()?;
        let whole = bytes.get(start..start + (width / 8) as usize)?;
        let mut buf = [0u8; 16];
        buf[..whole.len()].copy_from_slice(whole);
        return Some((u128::from_le_bytes(buf), width));
    }
    let mut value = 0u128;
    for i in 0..u64::from(width) {
        let bit = offset + i;
        let byte = bytes.get(usize::try_from(bit / 8).ok()?)?;
        if byte >> (bit % 8) & 1 == 1 {
            value |= 1 << i;
        }
    }
    Some((value, width))
}

/// `raw`'s low `width` bits as a two's complement number.
fn sign_extend(raw: u128, width: u32) -> i128 {
    match width {
        1..128 => {
            let shift = 128 - width;
            ((raw << shift) as i128) >> shift
        }
        _ => raw as i128,
    }
}

/// Whether type `id` is `char` (after modifiers): a one-byte `INT` named
/// `char` or encoded `BTF_INT_CHAR`. Clang encodes `char` as a signed
/// byte; `signed char` and `unsigned char` (`__s8`, `__u8`) are numbers.
fn is_char(btf: &Btf, id: u32) -> bool {
    let Ok((_, Some(ty))) = btf.skip_modifiers(id) else {
        return false;
    };
    let encoding = le32(btf.type_data(ty), 0) >> 24;
    ty.kind == BtfKind::Int
        && ty.size_or_type == 1
        && (encoding & INT_CHAR != 0 || btf.type_name(ty) == Some("char"))
}

/// The text a char array holds: UTF-8 without control characters, then
/// only NULs (none when the text fills the array).
fn text(bytes: &[u8]) -> Option<String> {
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let (text, padding) = bytes.split_at(len);
    if padding.iter().any(|&b| b != 0) {
        return None;
    }
    let text = std::str::from_utf8(text).ok()?;
    if text.chars().any(char::is_control) {
        return None;
    }
    Some(text.to_owned())
}

/// `bytes[offset..offset + size]`, if it is inside.
fn slice(bytes: &[u8], offset: u64, size: Option<u32>) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(size?).ok()?)?;
    bytes.get(start..end)
}

/// `bytes[offset..]`, empty past the end.
fn rest(bytes: &[u8], offset: u64) -> &[u8] {
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    bytes.get(start..).unwrap_or_default()
}

/// As `bpfvisor run --dump-maps` prints values: C-like, on one line.
impl fmt::Display for TypedValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TypedValue::Unsigned(v) => write!(f, "{v}"),
            TypedValue::Signed(v) => write!(f, "{v}"),
            TypedValue::Bool(v) => write!(f, "{v}"),
            TypedValue::Float(v) => write!(f, "{v}"),
            TypedValue::Enumerator(name) => f.write_str(name),
            TypedValue::Text(text) => write!(f, "{text:?}"),
            TypedValue::Pointer(addr) => write!(f, "{addr:#x}"),
            TypedValue::Bytes(bytes) => {
                f.write_str("hex:")?;
                bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
            TypedValue::List(elems) => {
                f.write_str("[")?;
                for (i, e) in elems.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}{e}")?;
                }
                f.write_str("]")
            }
            TypedValue::Fields(fields) => {
                f.write_str("{")?;
                for (i, (name, value)) in fields.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}{name}: {value}")?;
                }
                f.write_str("}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::setup_btf;
    use super::*;

    const STRUCT: u32 = 4;
    const UNION: u32 = 5;
    const TYPEDEF: u32 = 8;
    const VOLATILE: u32 = 9;
    const CONST: u32 = 10;

    /// Builds a `.BTF` a type at a time; each method returns the new id.
    struct Types {
        types: Vec<u8>,
        strings: Vec<u8>,
        count: u32,
    }

    impl Types {
        fn new() -> Self {
            Types {
                types: Vec::new(),
                strings: vec![0],
                count: 0,
            }
        }

        fn name(&mut self, name: &str) -> u32 {
            if name.is_empty() {
                return 0;
            }
            let at = self.strings.len() as u32;
            self.strings.extend(name.as_bytes());
            self.strings.push(0);
            at
        }

        fn add(&mut self, name: &str, kind: u32, flag: bool, vlen: usize, st: u32) -> u32 {
            let name = self.name(name);
            let info = (u32::from(flag) << 31) | (kind << 24) | vlen as u32;
            for w in [name, info, st] {
                self.types.extend(w.to_le_bytes());
            }
            self.count += 1;
            self.count
        }

        fn words(&mut self, words: &[u32]) {
            for w in words {
                self.types.extend(w.to_le_bytes());
            }
        }

        /// `INT` of `size` bytes, `bits` wide at bit `offset`, encoded
        /// `encoding` (`INT_SIGNED`...).
        fn int_at(&mut self, name: &str, size: u32, encoding: u32, offset: u32, bits: u32) -> u32 {
            let id = self.add(name, 1, false, 0, size);
            self.words(&[(encoding << 24) | (offset << 16) | bits]);
            id
        }

        fn int(&mut self, name: &str, size: u32, encoding: u32) -> u32 {
            self.int_at(name, size, encoding, 0, size * 8)
        }

        fn modifier(&mut self, kind: u32, name: &str, target: u32) -> u32 {
            self.add(name, kind, false, 0, target)
        }

        fn ptr(&mut self, target: u32) -> u32 {
            self.add("", 2, false, 0, target)
        }

        fn array(&mut self, elem: u32, nelems: u32) -> u32 {
            let id = self.add("", 3, false, 0, 0);
            self.words(&[elem, elem, nelems]);
            id
        }

        /// A struct or union; members `(name, type, offset word)` (bits,
        /// with the bitfield size in the top 8 bits when `flag`).
        fn aggregate(
            &mut self,
            kind: u32,
            name: &str,
            size: u32,
            flag: bool,
            members: &[(&str, u32, u32)],
        ) -> u32 {
            let id = self.add(name, kind, flag, members.len(), size);
            for &(name, ty, offset) in members {
                let name = self.name(name);
                self.words(&[name, ty, offset]);
            }
            id
        }

        fn enum32(&mut self, name: &str, size: u32, signed: bool, values: &[(&str, i32)]) -> u32 {
            let id = self.add(name, 6, signed, values.len(), size);
            for &(name, v) in values {
                let name = self.name(name);
                self.words(&[name, v as u32]);
            }
            id
        }

        fn enum64(&mut self, name: &str, signed: bool, values: &[(&str, u64)]) -> u32 {
            let id = self.add(name, 19, signed, values.len(), 8);
            for &(name, v) in values {
                let name = self.name(name);
                self.words(&[name, v as u32, (v >> 32) as u32]);
            }
            id
        }

        fn var(&mut self, name: &str, ty: u32) -> u32 {
            let id = self.add(name, 14, false, 0, ty);
            self.words(&[1]);
            id
        }

        fn build(&self) -> Btf {
            Btf::parse(&setup_btf(&self.types, &self.strings)).unwrap()
        }
    }

    use TypedValue::{Bool, Bytes, Enumerator, Fields, List, Pointer, Signed, Text, Unsigned};

    fn fields<'a>(fields: &[(&'a str, TypedValue<'a>)]) -> TypedValue<'a> {
        Fields(fields.to_vec())
    }

    #[test]
    fn integers_of_every_size_and_sign() {
        let mut t = Types::new();
        let sizes = [1u32, 2, 4, 8, 16];
        let unsigned: Vec<u32> = sizes.iter().map(|&s| t.int("u", s, 0)).collect();
        let signed: Vec<u32> = sizes.iter().map(|&s| t.int("s", s, INT_SIGNED)).collect();
        let boolean = t.int("_Bool", 1, INT_BOOL);
        let char_ = t.int("char", 1, INT_SIGNED);
        let float = t.add("double", 16, false, 0, 8);
        let btf = t.build();
        for (i, &size) in sizes.iter().enumerate() {
            let size = size as usize;
            let ones = vec![0xff; size];
            let max = u128::MAX >> (128 - 8 * size);
            assert_eq!(
                btf.format_value(unsigned[i], &ones),
                Unsigned(max),
                "u{size}"
            );
            assert_eq!(btf.format_value(signed[i], &ones), Signed(-1), "s{size}");
            // The lowest number: only the top bit set.
            let mut min = vec![0; size];
            min[size - 1] = 0x80;
            let expect = i128::MIN >> (128 - 8 * size);
            assert_eq!(btf.format_value(signed[i], &min), Signed(expect), "s{size}");
            assert_eq!(
                btf.format_value(unsigned[i], &min),
                Unsigned(1 << (8 * size - 1))
            );
        }
        assert_eq!(
            btf.format_value(signed[2], &(-3i32).to_le_bytes()),
            Signed(-3)
        );
        assert_eq!(
            btf.format_value(unsigned[3], &1234u64.to_le_bytes()),
            Unsigned(1234)
        );
        assert_eq!(btf.format_value(boolean, &[0]), Bool(false));
        assert_eq!(btf.format_value(boolean, &[2]), Bool(true));
        // A lone char is a number, as bpftool shows it.
        assert_eq!(btf.format_value(char_, b"A"), Signed(65));
        assert_eq!(
            btf.format_value(float, &1.5f64.to_le_bytes()),
            TypedValue::Float(1.5)
        );
        assert_eq!(
            btf.format_value(signed[4], &[0xff; 16]).to_string(),
            "-1",
            "128-bit"
        );
    }

    #[test]
    fn integers_with_bit_offsets_and_bad_encodings() {
        let mut t = Types::new();
        // 3 bits at bit 2 of a byte, signed.
        let narrow = t.int_at("n", 1, INT_SIGNED, 2, 3);
        // Bits past the size; an INT wider than 16 bytes.
        let past = t.int_at("p", 1, 0, 4, 8);
        let huge = t.int("h", 32, 0);
        let btf = t.build();
        assert_eq!(btf.format_value(narrow, &[0b1000_1100]), Signed(3));
        assert_eq!(btf.format_value(narrow, &[0b0001_0000]), Signed(-4));
        assert_eq!(btf.format_value(past, &[7]), Bytes(vec![7]));
        assert_eq!(btf.format_value(huge, &[1; 32]), Bytes(vec![1; 32]));
    }

    #[test]
    fn enums_name_their_enumerator_or_show_the_number() {
        let mut t = Types::new();
        let color = t.enum32("color", 4, false, &[("RED", 0), ("GREEN", 1), ("BIG", -1)]);
        let sign = t.enum32("sign", 4, true, &[("NEG", -1), ("POS", 1)]);
        let small = t.enum32("small", 1, true, &[("MINUS_TWO", -2)]);
        let wide = t.enum64("wide", false, &[("HIGH", 1 << 40)]);
        let btf = t.build();
        assert_eq!(
            btf.format_value(color, &1u32.to_le_bytes()),
            Enumerator("GREEN")
        );
        assert_eq!(
            btf.format_value(color, &u32::MAX.to_le_bytes()),
            Enumerator("BIG")
        );
        assert_eq!(btf.format_value(color, &7u32.to_le_bytes()), Unsigned(7));
        assert_eq!(
            btf.format_value(sign, &(-1i32).to_le_bytes()),
            Enumerator("NEG")
        );
        assert_eq!(btf.format_value(sign, &(-5i32).to_le_bytes()), Signed(-5));
        assert_eq!(btf.format_value(small, &[0xfe]), Enumerator("MINUS_TWO"));
        assert_eq!(
            btf.format_value(wide, &(1u64 << 40).to_le_bytes()),
            Enumerator("HIGH")
        );
        assert_eq!(btf.format_value(wide, &[0; 8]), Unsigned(0));
        assert_eq!(btf.format_value(color, &[1, 0]), Bytes(vec![1, 0]));
    }

    #[test]
    fn typedefs_and_qualifiers_are_followed_and_pointers_are_addresses() {
        let mut t = Types::new();
        let int = t.int("int", 4, INT_SIGNED);
        let typedef = t.modifier(TYPEDEF, "myint", int);
        let volatile = t.modifier(VOLATILE, "", typedef);
        let konst = t.modifier(CONST, "", volatile);
        let ptr = t.ptr(konst);
        let void_ptr = t.ptr(0);
        let btf = t.build();
        assert_eq!(btf.format_value(konst, &(-9i32).to_le_bytes()), Signed(-9));
        let addr = 0xffff_8000_1234_5678u64;
        assert_eq!(btf.format_value(ptr, &addr.to_le_bytes()), Pointer(addr));
        assert_eq!(
            btf.format_value(void_ptr, &addr.to_le_bytes()).to_string(),
            "0xffff800012345678"
        );
        // `void` has no value.
        assert_eq!(btf.format_value(0, &[1]), Bytes(vec![1]));
    }

    #[test]
    fn char_arrays_are_strings_when_they_hold_text() {
        let mut t = Types::new();
        let char_ = t.int("char", 1, INT_SIGNED);
        let konst = t.modifier(CONST, "", char_);
        let name = t.array(konst, 8);
        let uchar = t.int("unsigned char", 1, 0);
        let bytes = t.array(uchar, 4);
        let empty = t.array(char_, 0);
        let btf = t.build();
        let text = |s: &str| Text(s.to_owned());
        assert_eq!(btf.format_value(name, b"the\0\0\0\0\0"), text("the"));
        assert_eq!(btf.format_value(name, b"12345678"), text("12345678"));
        assert_eq!(btf.format_value(name, &[0; 8]), text(""));
        assert_eq!(
            btf.format_value(name, "hé\0\0\0\0\0".as_bytes()),
            text("hé")
        );
        // Not text: bytes after the NUL, a control character, bad UTF-8.
        let numbers = |b: &[u8]| List(b.iter().map(|&c| Signed(i128::from(c as i8))).collect());
        for not_text in [b"ab\0c\0\0\0\0", b"a\nb\0\0\0\0\0", b"\xff\xfe\0\0\0\0\0\0"] {
            assert_eq!(btf.format_value(name, not_text), numbers(not_text));
        }
        // unsigned char arrays (__u8) are numbers, text or not.
        assert_eq!(
            btf.format_value(bytes, b"abc\0"),
            List(b"abc\0".iter().map(|&b| Unsigned(b.into())).collect())
        );
        assert_eq!(btf.format_value(empty, &[]), List(Vec::new()));
        assert_eq!(
            btf.format_value(name, b"a\"b\0\0\0\0\0").to_string(),
            r#""a\"b""#
        );
        // Eight bytes for a char[8], not seven.
        assert_eq!(
            btf.format_value(name, b"abcdefg"),
            Bytes(b"abcdefg".to_vec())
        );
    }

    #[test]
    fn nested_structs_arrays_and_anonymous_unions() {
        let mut t = Types::new();
        let u16_ = t.int("unsigned short", 2, 0);
        let u32_ = t.int("unsigned int", 4, 0);
        let char_ = t.int("char", 1, INT_SIGNED);
        let name = t.array(char_, 6);
        let inner = t.aggregate(
            STRUCT,
            "inner",
            8,
            false,
            &[("a", u16_, 0), ("name", name, 16)],
        );
        let pair = t.array(u32_, 2);
        let anon = t.aggregate(UNION, "", 4, false, &[("x", u32_, 0), ("lo", u16_, 0)]);
        let outer = t.aggregate(
            STRUCT,
            "outer",
            24,
            false,
            &[
                ("in", inner, 0),
                ("arr", pair, 64),
                ("", anon, 128),
                ("last", u32_, 160),
            ],
        );
        let inners = t.array(inner, 2);
        let btf = t.build();
        let mut bytes = Vec::new();
        bytes.extend(7u16.to_le_bytes());
        bytes.extend(b"cat\0\0\0");
        bytes.extend(1u32.to_le_bytes());
        bytes.extend(2u32.to_le_bytes());
        bytes.extend(0x0001_0002u32.to_le_bytes());
        bytes.extend(9u32.to_le_bytes());
        let value = btf.format_value(outer, &bytes);
        let inner_cat = fields(&[("a", Unsigned(7)), ("name", Text("cat".into()))]);
        assert_eq!(
            value,
            fields(&[
                ("in", inner_cat.clone()),
                ("arr", List(vec![Unsigned(1), Unsigned(2)])),
                ("x", Unsigned(0x0001_0002)),
                ("lo", Unsigned(2)),
                ("last", Unsigned(9)),
            ])
        );
        assert_eq!(
            value.to_string(),
            r#"{in: {a: 7, name: "cat"}, arr: [1, 2], x: 65538, lo: 2, last: 9}"#
        );
        assert_eq!(
            btf.format_value(inners, &[&bytes[..8], &bytes[..8]].concat()),
            List(vec![inner_cat.clone(), inner_cat])
        );
    }

    #[test]
    fn bitfields_in_both_encodings() {
        let mut t = Types::new();
        let u32_ = t.int("unsigned int", 4, 0);
        let s32 = t.int("int", 4, INT_SIGNED);
        let boolean = t.int("_Bool", 1, INT_BOOL);
        let mode = t.enum32("mode", 4, false, &[("OFF", 0), ("ON", 1), ("AUTO", 2)]);
        let typedef = t.modifier(TYPEDEF, "mode_t", mode);
        let bf = |size: u32, offset: u32| (size << 24) | offset;
        // struct { u32 a:3; int b:5; mode_t m:2; bool c:1; u32 :3; u32 d:18; }
        let flags = t.aggregate(
            STRUCT,
            "flags",
            4,
            true,
            &[
                ("a", u32_, bf(3, 0)),
                ("b", s32, bf(5, 3)),
                ("m", typedef, bf(2, 8)),
                ("c", boolean, bf(1, 10)),
                ("", u32_, bf(3, 11)),
                ("d", u32_, bf(18, 14)),
            ],
        );
        // The older encoding: INTs that say their width, at bit offsets.
        let three = t.int_at("unsigned int", 4, 0, 0, 3);
        let five = t.int_at("int", 4, INT_SIGNED, 0, 5);
        let legacy = t.aggregate(STRUCT, "old", 4, false, &[("x", three, 0), ("y", five, 3)]);
        let btf = t.build();
        // a = 5, b = -2 (0b11110), m = AUTO, c = 1, padding 0b111, d = 0x2abcd.
        let word = 5 | (0b11110 << 3) | (2 << 8) | (1 << 10) | (0b111 << 11) | (0x2abcd << 14);
        assert_eq!(
            btf.format_value(flags, &u32::to_le_bytes(word)),
            fields(&[
                ("a", Unsigned(5)),
                ("b", Signed(-2)),
                ("m", Enumerator("AUTO")),
                ("c", Bool(true)),
                ("d", Unsigned(0x2abcd)),
            ])
        );
        assert_eq!(
            btf.format_value(legacy, &u32::to_le_bytes(6 | (0b10001 << 3))),
            fields(&[("x", Unsigned(6)), ("y", Signed(-15))])
        );
    }

    #[test]
    fn cycles_stop_at_the_depth_limit_and_blowups_at_the_budget() {
        let mut t = Types::new();
        let u32_ = t.int("unsigned int", 4, 0);
        // struct cyc { struct cyc self; } (id 2), of size 4.
        let cyc = t.aggregate(STRUCT, "cyc", 4, false, &[("self", 2, 0)]);
        // struct wide { struct wide l, r; }, both at 0: 2^depth members.
        let wide = t.aggregate(STRUCT, "wide", 4, false, &[("l", 3, 0), ("r", 3, 0)]);
        // Four billion empty structs in zero bytes.
        let empty = t.aggregate(STRUCT, "empty", 0, false, &[]);
        let many = t.array(empty, u32::MAX);
        // A typedef of itself.
        let loop_ = t.modifier(TYPEDEF, "loop", 6);
        // A member past the end of its struct, and one of no size.
        let past = t.aggregate(
            STRUCT,
            "past",
            4,
            false,
            &[("ok", u32_, 0), ("out", u32_, 64), ("fn", 0, 0)],
        );
        // Four billion empty structs of 65535 members without a size.
        let members = vec![("v", 0, 0); 0xffff];
        let no_sizes = t.aggregate(STRUCT, "no_sizes", 0, false, &members);
        let voids = t.array(no_sizes, u32::MAX);
        let btf = t.build();
        assert_eq!((cyc, wide, many, loop_), (2, 3, 5, 6), "ids the types name");
        let mut value = btf.format_value(cyc, &[1, 2, 3, 4]);
        let mut depth = 0;
        while let Fields(mut f) = value {
            assert_eq!(f.len(), 1);
            value = f.remove(0).1;
            depth += 1;
        }
        assert_eq!(
            (depth, value),
            (MAX_FORMAT_DEPTH + 1, Bytes(vec![1, 2, 3, 4]))
        );
        assert_eq!(btf.format_value(wide, &[5; 4]), Bytes(vec![5; 4]));
        assert_eq!(btf.format_value(many, &[]), Bytes(Vec::new()));
        assert_eq!(btf.format_value(voids, &[]), Bytes(Vec::new()));
        assert_eq!(btf.format_value(loop_, &[1]), Bytes(vec![1]));
        assert_eq!(
            btf.format_value(past, &[1, 0, 0, 0]),
            fields(&[
                ("ok", Unsigned(1)),
                ("out", Bytes(Vec::new())),
                ("fn", Bytes(vec![1, 0, 0, 0]))
            ])
        );
    }

    #[test]
    fn a_formatter_reads_many_values_each_with_its_own_budget() {
        let mut t = Types::new();
        let u32_ = t.int("unsigned int", 4, 0);
        let wide = t.aggregate(STRUCT, "wide", 4, false, &[("l", 2, 0), ("r", 2, 0)]);
        let mode = t.enum32("mode", 4, false, &[("ON", 1)]);
        let btf = t.build();
        let mut f = ValueFormatter::new(&btf);
        for n in 0..3u32 {
            // Over budget, then a value as usual: the budget is per value.
            assert_eq!(f.format_value(wide, &[n as u8; 4]), Bytes(vec![n as u8; 4]));
            assert_eq!(f.format_value(u32_, &n.to_le_bytes()), Unsigned(n.into()));
            let expect = if n == 1 {
                Enumerator("ON")
            } else {
                Unsigned(n.into())
            };
            assert_eq!(f.format_value(mode, &n.to_le_bytes()), expect);
        }
        assert_eq!(f.format_value(u32::MAX, &[0; 4]), Bytes(vec![0; 4]));
    }

    #[test]
    fn bytes_that_do_not_fit_the_type_stay_bytes() {
        let mut t = Types::new();
        let u64_ = t.int("unsigned long long", 8, 0);
        let s = t.aggregate(STRUCT, "s", 16, false, &[("a", u64_, 0), ("b", u64_, 64)]);
        let btf = t.build();
        for len in [0, 1, 7, 9] {
            let bytes = vec![3; len];
            assert_eq!(btf.format_value(u64_, &bytes), Bytes(bytes.clone()));
        }
        assert_eq!(btf.format_value(s, &[3; 15]), Bytes(vec![3; 15]));
        assert_eq!(
            btf.format_value(s, &[3; 17]).to_string(),
            format!("hex:{}", "03".repeat(17))
        );
        assert_eq!(btf.format_value(99, &[1]), Bytes(vec![1]), "no such type");
    }

    #[test]
    fn data_sections_show_their_variables() {
        let mut t = Types::new();
        let u32_ = t.int("unsigned int", 4, 0);
        let s64 = t.int("long long", 8, INT_SIGNED);
        let konst = t.modifier(CONST, "", u32_);
        let multiplier = t.var("multiplier", konst);
        let bias = t.var("bias", s64);
        let not_var = u32_;
        let btf = t.build();
        let mut bytes = 5u32.to_le_bytes().to_vec();
        bytes.extend([0; 4]);
        bytes.extend((-3i64).to_le_bytes());
        let var = |offset, var_type_id| SectionVar {
            offset,
            var_type_id,
        };
        let value =
            btf.format_section(&[var(0, multiplier), var(8, bias), var(0, not_var)], &bytes);
        assert_eq!(value.to_string(), "{multiplier: 5, bias: -3}");
        // A variable past the section's end is its bytes there.
        let value = btf.format_section(&[var(12, bias), var(99, bias)], &bytes);
        assert_eq!(
            value,
            fields(&[("bias", Bytes(vec![0xff; 4])), ("bias", Bytes(Vec::new()))])
        );
    }
}
