//! `bstr_printf` (lib/vsprintf.c): the second step of `bpf_trace_printk`,
//! formatting the line from the arguments `prepare` packed.
//!
//! It decodes the whole of `format_decode`'s syntax (precision, `*`, `#`,
//! `h`, `z`, `%o`), not only what `prepare` accepts: `prepare` skips some
//! bytes unseen (the suffix after `%pB` or `%pI4`), and another vCPU may
//! rewrite the format between the two passes. Either way the line comes
//! out as the kernel's would, and nothing panics.

use super::{
    BIN_ARGS_SIZE, BinArgs, Format, HEX_DIGITS, Output, ProbeRead, Text, decimal_digits, is_alnum,
};

// printf_spec flags (lib/vsprintf.c).
const SIGN: u8 = 1;
const LEFT: u8 = 2;
const PLUS: u8 = 4;
const SPACE: u8 = 8;
const ZEROPAD: u8 = 16;
const SMALL: u8 = 32;
const SPECIAL: u8 = 64;

/// Largest field width and precision `printf_spec`'s bit-fields hold.
const FIELD_WIDTH_MAX: i32 = (1 << 23) - 1;
const PRECISION_MAX: i32 = (1 << 15) - 1;

/// One conversion as `format_decode` fills `struct printf_spec`.
#[derive(Clone, Copy)]
struct Spec {
    flags: u8,
    /// A 24-bit signed field in the kernel; -1 for none.
    field_width: i32,
    base: u8,
    /// A 16-bit signed field in the kernel; -1 for none.
    precision: i32,
}

/// What `format_decode` found (`enum format_state`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    None,
    /// An integer of `size` bytes.
    Num(u8),
    Width,
    Precision,
    Char,
    Str,
    Ptr,
    PercentChar,
    Invalid,
}

/// The kernel's assignment of an int to a signed bit-field of `bits`.
fn truncate_signed(value: i32, bits: u32) -> i32 {
    (value << (32 - bits)) >> (32 - bits)
}

/// `skip_atoi`: wrapping decimal, as the kernel (built with wrapping
/// signed arithmetic) computes it.
fn skip_atoi<M: ProbeRead>(fmt: &mut Format<'_, M>, i: &mut usize) -> i32 {
    let mut value: i32 = 0;
    loop {
        value = value
            .wrapping_mul(10)
            .wrapping_add(i32::from(fmt.at(*i)) - i32::from(b'0'));
        *i += 1;
        if !fmt.at(*i).is_ascii_digit() {
            return value;
        }
    }
}

/// `spec_flag`.
fn spec_flag(c: u8) -> u8 {
    match c {
        b' ' => SPACE,
        b'#' => SPECIAL,
        b'+' => PLUS,
        b'-' => LEFT,
        b'0' => ZEROPAD,
        _ => 0,
    }
}

/// `format_decode`: the token at `*i`, advancing past it. `prev` is the
/// state the previous token left (a `*` width or precision continues).
fn format_decode<M: ProbeRead>(
    fmt: &mut Format<'_, M>,
    i: &mut usize,
    prev: State,
    spec: &mut Spec,
) -> State {
    match prev {
        State::Width => {
            if spec.field_width < 0 {
                spec.field_width = -spec.field_width;
                spec.flags |= LEFT;
            }
            return decode_precision(fmt, i, spec);
        }
        State::Precision => {
            spec.precision = spec.precision.max(0);
            return decode_qualifier(fmt, i, spec);
        }
        _ => {}
    }
    let start = *i;
    while !matches!(fmt.at(*i), 0 | b'%') {
        *i += 1;
    }
    if *i != start || fmt.at(*i) == 0 {
        return State::None;
    }
    spec.flags = 0;
    loop {
        *i += 1;
        let flag = spec_flag(fmt.at(*i));
        spec.flags |= flag;
        if flag == 0 {
            break;
        }
    }
    spec.field_width = -1;
    if fmt.at(*i).is_ascii_digit() {
        spec.field_width = truncate_signed(skip_atoi(fmt, i), 24);
    } else if fmt.at(*i) == b'*' {
        *i += 1;
        return State::Width;
    }
    decode_precision(fmt, i, spec)
}

fn decode_precision<M: ProbeRead>(
    fmt: &mut Format<'_, M>,
    i: &mut usize,
    spec: &mut Spec,
) -> State {
    spec.precision = -1;
    if fmt.at(*i) == b'.' {
        *i += 1;
        if fmt.at(*i).is_ascii_digit() {
            spec.precision = truncate_signed(skip_atoi(fmt, i), 16).max(0);
        } else if fmt.at(*i) == b'*' {
            *i += 1;
            return State::Precision;
        }
    }
    decode_qualifier(fmt, i, spec)
}

fn decode_qualifier<M: ProbeRead>(
    fmt: &mut Format<'_, M>,
    i: &mut usize,
    spec: &mut Spec,
) -> State {
    spec.base = 10;
    let mut size = 4;
    let length = match fmt.at(*i) {
        b'l' => Some((8, 8)),
        b'L' => Some((8, 0)),
        b'h' => Some((2, 1)),
        b'H' => Some((1, 0)),
        b'z' | b't' => Some((8, 0)),
        _ => None,
    };
    if let Some((single, double)) = length {
        size = single;
        if double != 0 && fmt.at(*i) == fmt.at(*i + 1) {
            size = double;
            *i += 1;
        }
        *i += 1;
    }
    let (state, flags, base) = match fmt.at(*i) {
        b'c' => (State::Char, 0, 0),
        b's' => (State::Str, 0, 0),
        b'p' => (State::Ptr, 0, 0),
        b'%' => (State::PercentChar, 0, 0),
        b'o' => (State::Num(size), 0, 8),
        b'x' => (State::Num(size), SMALL, 16),
        b'X' => (State::Num(size), 0, 16),
        b'd' | b'i' => (State::Num(size), SIGN, 10),
        b'u' => (State::Num(size), 0, 10),
        _ => return State::Invalid,
    };
    if base != 0 {
        spec.base = base;
    }
    spec.flags |= flags;
    *i += 1;
    state
}

/// Reads packed arguments back (`get_arg`); past the end reads zeros.
struct ArgReader<'b> {
    bin: &'b [u8; BIN_ARGS_SIZE],
    pos: usize,
}

impl<'b> ArgReader<'b> {
    fn bytes<const N: usize>(&mut self, align: usize) -> [u8; N] {
        self.pos = self.pos.next_multiple_of(align);
        let mut value = [0u8; N];
        for (k, byte) in value.iter_mut().enumerate() {
            *byte = self.bin.get(self.pos + k).copied().unwrap_or(0);
        }
        self.pos = self.pos.saturating_add(N);
        value
    }

    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.bytes::<8>(4))
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.bytes::<4>(4))
    }

    fn u8(&mut self) -> u8 {
        self.bytes::<1>(1)[0]
    }

    /// The NUL-terminated string at the current position (cut at the end
    /// of the buffer), without advancing.
    fn peek_str(&self) -> &'b [u8] {
        let rest = self.bin.get(self.pos..).unwrap_or(&[]);
        let len = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        &rest[..len]
    }
}

/// The text being formatted (`str`/`end` in `bstr_printf`): `pos` counts
/// every byte the text would have; only the first `size` are kept.
struct Out<'l, O: ?Sized> {
    line: &'l mut O,
    size: usize,
    pos: usize,
}

impl<O: Output + ?Sized> Out<'_, O> {
    fn push(&mut self, byte: u8) {
        if self.pos < self.size {
            self.line.put(self.pos, byte);
        }
        self.pos = self.pos.saturating_add(1);
    }

    /// `count` copies of `byte`; a negative count writes nothing.
    fn pad(&mut self, byte: u8, count: i32) {
        let Ok(count) = usize::try_from(count) else {
            return;
        };
        let end = self.pos.saturating_add(count);
        for pos in self.pos..end.min(self.size) {
            self.line.put(pos, byte);
        }
        self.pos = end;
    }

    fn extend(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.push(b);
        }
    }

    /// `number()`.
    fn number(&mut self, mut num: u64, spec: Spec) {
        let base = u64::from(spec.base);
        let need_prefix = spec.flags & SPECIAL != 0 && base != 10;
        let is_zero = num == 0;
        let mut field_width = spec.field_width;
        let mut precision = spec.precision;
        let locase = spec.flags & SMALL;
        let mut flags = spec.flags;
        if flags & LEFT != 0 {
            flags &= !ZEROPAD;
        }
        let mut sign = 0;
        if flags & SIGN != 0 {
            if (num as i64) < 0 {
                sign = b'-';
                num = (num as i64).wrapping_neg() as u64;
                field_width -= 1;
            } else if flags & PLUS != 0 {
                sign = b'+';
                field_width -= 1;
            } else if flags & SPACE != 0 {
                sign = b' ';
                field_width -= 1;
            }
        }
        if need_prefix {
            if base == 16 {
                field_width -= 2;
            } else if !is_zero {
                field_width -= 1;
            }
        }
        let mut digits = [0u8; 24];
        let count = if base == 10 {
            let mut decimal = [0u8; 20];
            let n = decimal_digits(num, &mut decimal);
            digits[..n].copy_from_slice(&decimal[..n]);
            n
        } else {
            let (mask, shift) = if base == 16 { (15, 4) } else { (7, 3) };
            let mut n = 0;
            loop {
                digits[n] = HEX_DIGITS[(num & mask) as usize] | locase;
                n += 1;
                num >>= shift;
                if num == 0 {
                    break n;
                }
            }
        };
        // At most 22 digits (octal u64).
        let count_i32 = count as i32;
        precision = precision.max(count_i32);
        field_width -= precision;
        if flags & (ZEROPAD | LEFT) == 0 {
            self.pad(b' ', field_width);
            field_width = -1;
        }
        if sign != 0 {
            self.push(sign);
        }
        if need_prefix {
            if base == 16 || !is_zero {
                self.push(b'0');
            }
            if base == 16 {
                self.push(b'X' | locase);
            }
        }
        if flags & LEFT == 0 {
            self.pad(if flags & ZEROPAD != 0 { b'0' } else { b' ' }, field_width);
            field_width = -1;
        }
        self.pad(b'0', precision - count_i32);
        for &d in digits[..count].iter().rev() {
            self.push(d);
        }
        self.pad(b' ', field_width);
    }

    /// `string_nocheck()` + `widen_string()`: at most `precision` bytes,
    /// padded with spaces to the field width.
    fn string(&mut self, s: &[u8], spec: Spec) {
        let len = match usize::try_from(spec.precision) {
            Ok(limit) => s.len().min(limit),
            Err(_) => s.len(),
        };
        let spaces = i32::try_from(len).map_or(0, |n| spec.field_width.saturating_sub(n));
        if spec.flags & LEFT == 0 {
            self.pad(b' ', spaces);
            self.extend(&s[..len]);
        } else {
            self.extend(&s[..len]);
            self.pad(b' ', spaces);
        }
    }

    /// `pointer_string()`: hex, 16 zero-padded digits unless a width is
    /// given.
    fn pointer_string(&mut self, value: u64, mut spec: Spec) {
        spec.base = 16;
        spec.flags |= SMALL;
        if spec.field_width == -1 {
            spec.field_width = 16;
            spec.flags |= ZEROPAD;
        }
        self.number(value, spec);
    }
}

/// `bstr_printf`: formats from the packed arguments; returns the length
/// of the whole text, of which `line` keeps what fits, NUL-terminated
/// (cut one byte short if need be) unless it has no room at all.
pub(super) fn bstr_printf<M: ProbeRead, O: Output + ?Sized>(
    fmt: &mut Format<'_, M>,
    bin: &BinArgs,
    line: &mut O,
) -> usize {
    let size = line.capacity();
    let mut out = Out { line, size, pos: 0 };
    let mut args = ArgReader {
        bin: &bin.buf,
        pos: 0,
    };
    let mut spec = Spec {
        flags: 0,
        field_width: -1,
        base: 10,
        precision: -1,
    };
    let mut state = State::None;
    let mut i = 0;
    while fmt.at(i) != 0 {
        let start = i;
        state = format_decode(fmt, &mut i, state, &mut spec);
        match state {
            State::None => {
                for k in start..i {
                    let byte = fmt.at(k);
                    out.push(byte);
                }
            }
            State::Num(size) => {
                let num = if size > 4 {
                    args.u64()
                } else {
                    let shift = 32 - u32::from(size) * 8;
                    let value = args.u32() << shift;
                    if spec.flags & SIGN == 0 {
                        u64::from(value >> shift)
                    } else {
                        ((value as i32) >> shift) as i64 as u64
                    }
                };
                out.number(num, spec);
            }
            State::Width => {
                let width = args.u32() as i32;
                spec.field_width = if truncate_signed(width, 24) == width {
                    width
                } else {
                    width.clamp(-FIELD_WIDTH_MAX, FIELD_WIDTH_MAX)
                };
            }
            State::Precision => {
                let precision = args.u32() as i32;
                spec.precision = if truncate_signed(precision, 16) == precision {
                    precision
                } else {
                    precision.clamp(0, PRECISION_MAX)
                };
            }
            State::Char => {
                let pad = spec.field_width.saturating_sub(1);
                if spec.flags & LEFT == 0 {
                    out.pad(b' ', pad);
                }
                out.push(args.u8());
                if spec.flags & LEFT != 0 {
                    out.pad(b' ', pad);
                }
            }
            State::Str => {
                let s = args.peek_str();
                args.pos = args.pos.saturating_add(s.len() + 1);
                out.string(s, spec);
            }
            State::Ptr => {
                let kind = fmt.at(i);
                let process = matches!(kind, b'S' | b's' | b'x' | b'K' | b'e') || !is_alnum(kind);
                if process {
                    let value = args.u64();
                    if matches!(kind, b'S' | b's') {
                        out.string(Text::symbol(value).as_bytes(), spec);
                    } else {
                        out.pointer_string(value, spec);
                    }
                } else if out.pos < out.size {
                    // Strings prepare() already formatted: copied without
                    // width, and (as in the kernel) only while the line
                    // has room.
                    let s = args.peek_str();
                    let len = s.len();
                    out.extend(s);
                    args.pos = args.pos.saturating_add(len + 1);
                }
                while is_alnum(fmt.at(i)) {
                    i += 1;
                }
            }
            State::PercentChar => out.push(b'%'),
            State::Invalid => break,
        }
    }
    if size > 0 {
        out.line.put(out.pos.min(size - 1), 0);
    }
    out.pos
}
