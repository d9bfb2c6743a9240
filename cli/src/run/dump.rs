//! `bpfvisor run --dump-maps`: every map of the sandbox with its contents,
//! read through the host map API once the last call has returned, as text
//! or JSON (docs/cli.md).
//!
//! Keys and values are shown as their BTF types read them, as `bpftool map
//! dump` shows them (`guest_jit::btf::format`): a map's `__type(key, T)`
//! and `__type(value, T)`, a global data section's variables by name. The
//! JSON keeps the bytes in hex beside them; maps without BTF (legacy
//! definitions) are hex only.
//!
//! A map whose contents cannot be read (a program scribbled over its
//! bookkeeping, a lock stayed taken) gets its error in place of its
//! contents; the other maps are dumped as usual.

use guest_jit::btf::{Btf, SectionVar, TypedValue, ValueFormatter};
use guest_jit::elf::Object;
use serde_json::{Value, json};
use shm::layout::PAGE_SIZE;
use shm::maps::{MapError, MapType};
use vmm::{MapHandle, Sandbox, Slot};

/// A map and what it held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapDump<'a> {
    /// C variable or data section name.
    pub name: String,
    /// Kernel type name without the prefix (`HASH`).
    pub type_name: &'static str,
    /// Key size in bytes.
    pub key_size: usize,
    /// Value size in bytes (4 for slot maps: the kernel's file descriptor).
    pub value_size: u32,
    /// Capacity.
    pub max_entries: u32,
    /// Whether it stands for a global data section (`.bss`, `.rodata`...).
    pub global_data: bool,
    /// Its contents, or why they could not be read.
    pub contents: Result<Contents, String>,
    /// How its keys and values read, when the object's BTF says.
    pub types: Option<MapTypes<'a>>,
}

/// The BTF types of a map's keys and values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapTypes<'a> {
    /// The object's types.
    pub btf: &'a Btf,
    /// What a key is, if known.
    pub key: Option<KeyType>,
    /// What a value is, if known.
    pub value: Option<ValueType>,
}

/// What a key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyType {
    /// A value of this BTF type.
    Type(u32),
    /// An array index (a `u32`): the key of a global data section's map,
    /// or of an array whose definition gives only `key_size`.
    Index,
}

/// What a value is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueType {
    /// A value of this BTF type.
    Type(u32),
    /// A global data section: these variables.
    Section(Vec<SectionVar>),
}

/// Reads one map's keys and values through its types, if it has them,
/// with one formatter for all (it keeps what it learns of the types).
struct Reader<'t, 'a> {
    types: Option<(&'t MapTypes<'a>, ValueFormatter<'a>)>,
}

impl<'t, 'a> Reader<'t, 'a> {
    fn new(types: Option<&'t MapTypes<'a>>) -> Self {
        Reader {
            types: types.map(|t| (t, ValueFormatter::new(t.btf))),
        }
    }

    /// Whether values have a type.
    fn types_values(&self) -> bool {
        self.types.as_ref().is_some_and(|(t, _)| t.value.is_some())
    }

    /// A key as its type reads, if it has one.
    fn key(&mut self, key: &[u8]) -> Option<TypedValue<'a>> {
        let (types, formatter) = self.types.as_mut()?;
        match types.key.as_ref()? {
            KeyType::Type(id) => Some(formatter.format_value(*id, key)),
            KeyType::Index => {
                let index = <[u8; 4]>::try_from(key).ok().map(u32::from_le_bytes);
                Some(index.map_or_else(
                    || TypedValue::Bytes(key.to_vec()),
                    |i| TypedValue::Unsigned(i.into()),
                ))
            }
        }
    }

    /// A value as its type reads, if it has one.
    fn value(&mut self, value: &[u8]) -> Option<TypedValue<'a>> {
        let (types, formatter) = self.types.as_mut()?;
        Some(match types.value.as_ref()? {
            ValueType::Type(id) => formatter.format_value(*id, value),
            ValueType::Section(vars) => formatter.format_section(vars, value),
        })
    }

    /// A key as text: as its type reads, or its bytes in hex.
    fn key_text(&mut self, key: &[u8]) -> String {
        text(self.key(key), key)
    }

    /// A value as text: as its type reads, or its bytes in hex.
    fn value_text(&mut self, value: &[u8]) -> String {
        text(self.value(value), value)
    }
}

/// What a map holds, by kind of map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contents {
    /// Key and value of each element.
    Values(Vec<(Vec<u8>, Vec<u8>)>),
    /// Key and each CPU's value, CPU 0 first.
    PerCpu(Vec<(Vec<u8>, Vec<Vec<u8>>)>),
    /// Key and what each filled slot of a `PROG_ARRAY` or map of maps
    /// holds.
    Slots(Vec<(Vec<u8>, SlotTarget)>),
    /// The values of a queue or stack, in the order they would be popped.
    Ring(Vec<Vec<u8>>),
    /// An arena: where it is and how much of it is allocated (its bytes
    /// are the program's own data structures, not elements).
    Arena {
        /// Address of its first page, the same in guest and host.
        base: u64,
        /// Bytes.
        len: u64,
        /// Pages allocated now.
        allocated_pages: u64,
    },
    /// A ring buffer: its records are not elements (`bpfvisor run`
    /// prints a `RINGBUF`'s before the maps, `ringbufs.rs`).
    RingBuffer {
        /// Data bytes.
        size: u64,
        /// Whether it is a `USER_RINGBUF` (the host's to fill).
        user: bool,
    },
}

/// What a slot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotTarget {
    /// The program of that name.
    Program(String),
    /// The map of that name.
    Map(String),
    /// An address that is neither.
    Address(u64),
}

/// Every map of `sandbox`, whose maps `object` defines, in creation order.
pub fn collect<'a>(sandbox: &Sandbox, object: &'a Object) -> Vec<MapDump<'a>> {
    sandbox
        .maps()
        .map(|map| dump_map(sandbox, object, &map))
        .collect()
}

fn dump_map<'a>(sandbox: &Sandbox, object: &'a Object, map: &MapHandle<'_>) -> MapDump<'a> {
    let def = map.def();
    let map_type = def.map_type();
    MapDump {
        name: map.name().to_owned(),
        type_name: map_type.name(),
        key_size: def.key_size(),
        value_size: def.value_size(),
        max_entries: def.max_entries(),
        global_data: map.info().is_global_data(),
        contents: contents(sandbox, map).map_err(|e| e.to_string()),
        types: map_types(object, map),
    }
}

/// The types of `map`'s keys and values from `object`'s BTF: its
/// definition's, or a data section's variables.
fn map_types<'a>(object: &'a Object, map: &MapHandle<'_>) -> Option<MapTypes<'a>> {
    let btf = object.btf()?;
    let (key, value) = if map.info().is_global_data() {
        let vars: Vec<SectionVar> = object
            .variables()
            .iter()
            .filter(|v| v.section == map.name())
            .map(|v| SectionVar {
                offset: v.offset,
                var_type_id: v.var_type_id,
            })
            .collect();
        if vars.is_empty() {
            // A section of string literals (`.rodata.str1.1`).
            return None;
        }
        (Some(KeyType::Index), Some(ValueType::Section(vars)))
    } else {
        let spec = &object.maps()[object.find_map(map.name())?];
        let value = spec.btf_value_type_id.map(ValueType::Type);
        // An array's key is an index whatever the definition says; with
        // `__uint(key_size, 4)`, index it when something else is typed
        // (its value, or slots shown by what they hold).
        let map_type = map.def().map_type();
        let key = match spec.btf_key_type_id {
            Some(id) => Some(KeyType::Type(id)),
            None if map_type.is_array() && (value.is_some() || map_type.has_slots()) => {
                Some(KeyType::Index)
            }
            None => None,
        };
        (key, value)
    };
    (key.is_some() || value.is_some()).then_some(MapTypes { btf, key, value })
}

fn contents(sandbox: &Sandbox, map: &MapHandle<'_>) -> Result<Contents, MapError> {
    let map_type = map.def().map_type();
    if map_type.has_slots() {
        let slots = map.slots()?.into_iter().map(|(key, slot)| {
            // Ids from the map API name loaded programs and maps.
            let target = match slot {
                Slot::Program(id) => {
                    SlotTarget::Program(sandbox.program(id).map_or("?", |p| p.name()).to_owned())
                }
                Slot::Map(id) => {
                    SlotTarget::Map(sandbox.map(id).map_or("?", |m| m.name()).to_owned())
                }
                Slot::Unknown(addr) => SlotTarget::Address(addr),
            };
            (key, target)
        });
        return Ok(Contents::Slots(slots.collect()));
    }
    if matches!(map_type, MapType::Queue | MapType::Stack) {
        return map.queue_values().map(Contents::Ring);
    }
    if matches!(map_type, MapType::RingBuf | MapType::UserRingBuf) {
        return Ok(Contents::RingBuffer {
            size: map.def().max_entries().into(),
            user: map_type == MapType::UserRingBuf,
        });
    }
    if map_type == MapType::Arena {
        let arena = sandbox.arena().ok_or(MapError::Unsupported)?;
        let allocated_pages = (0..arena.len() / PAGE_SIZE)
            .filter(|page| arena.is_allocated(arena.base() + page * PAGE_SIZE))
            .count() as u64;
        return Ok(Contents::Arena {
            base: arena.base(),
            len: arena.len(),
            allocated_pages,
        });
    }
    let entries = map.entries()?.into_iter();
    if map_type.is_percpu() {
        return Ok(Contents::PerCpu(
            entries.map(|e| (e.key, e.values)).collect(),
        ));
    }
    Ok(Contents::Values(
        entries
            .map(|mut e| (e.key, e.values.pop().unwrap_or_default()))
            .collect(),
    ))
}

/// The dump as text: a line per map, then a line per element, keys and
/// values as their types read, in hex without types.
pub fn to_text(maps: &[MapDump<'_>]) -> String {
    let mut out = String::new();
    for map in maps {
        let kind = if map.global_data {
            format!("{}, global data", map.type_name)
        } else {
            map.type_name.to_owned()
        };
        out.push_str(&format!(
            "map {} ({kind}): key {} bytes, value {} bytes, max_entries {}\n",
            map.name, map.key_size, map.value_size, map.max_entries
        ));
        let mut r = Reader::new(map.types.as_ref());
        let lines = match &map.contents {
            Err(error) => vec![format!("error: {error}")],
            Ok(Contents::Values(entries)) => entries
                .iter()
                .map(|(k, v)| format!("{}: {}", r.key_text(k), r.value_text(v)))
                .collect(),
            Ok(Contents::PerCpu(entries)) => entries
                .iter()
                .map(|(k, values)| {
                    let per_cpu: Vec<String> = values
                        .iter()
                        .enumerate()
                        .map(|(cpu, v)| format!("cpu{cpu}={}", r.value_text(v)))
                        .collect();
                    format!("{}: {}", r.key_text(k), per_cpu.join(" "))
                })
                .collect(),
            Ok(Contents::Slots(slots)) => slots
                .iter()
                .map(|(k, target)| format!("{}: {}", r.key_text(k), slot_text(target)))
                .collect(),
            Ok(Contents::Ring(values)) => values.iter().map(|v| r.value_text(v)).collect(),
            Ok(Contents::Arena {
                base,
                len,
                allocated_pages,
            }) => vec![format!(
                "arena at {base:#x}, {len} bytes, {allocated_pages} pages allocated"
            )],
            Ok(Contents::RingBuffer { size, user: true }) => {
                vec![format!("user ring buffer of {size} bytes")]
            }
            Ok(Contents::RingBuffer { size, user: false }) => {
                vec![format!("ring buffer of {size} bytes (records above)")]
            }
        };
        if lines.is_empty() {
            out.push_str("  (empty)\n");
        }
        for line in lines {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out
}

/// A key or value as its type reads, or its bytes in hex.
fn text(typed: Option<TypedValue<'_>>, bytes: &[u8]) -> String {
    typed.map_or_else(|| hex::encode(bytes), |t| t.to_string())
}

fn slot_text(target: &SlotTarget) -> String {
    match target {
        SlotTarget::Program(name) => format!("program {name}"),
        SlotTarget::Map(name) => format!("map {name}"),
        SlotTarget::Address(addr) => format!("address {addr:#x}"),
    }
}

/// The dump as the `"maps"` array of `--json` (docs/cli.md).
pub fn to_json(maps: &[MapDump<'_>]) -> Value {
    maps.iter()
        .map(|map| {
            let (entries, error) = match &map.contents {
                Ok(contents) => (entries_json(contents, map.types.as_ref()), Value::Null),
                Err(error) => (Vec::new(), json!(error)),
            };
            json!({
                "name": map.name,
                "type": map.type_name,
                "key_size": map.key_size,
                "value_size": map.value_size,
                "max_entries": map.max_entries,
                "global_data": map.global_data,
                "entries": entries,
                "error": error,
            })
        })
        .collect()
}

fn entries_json(contents: &Contents, types: Option<&MapTypes<'_>>) -> Vec<Value> {
    let mut r = Reader::new(types);
    match contents {
        Contents::Values(entries) => entries
            .iter()
            .map(|(k, v)| {
                json!({
                    "key": hex::encode(k),
                    "value": hex::encode(v),
                    "key_fmt": typed_json(r.key(k)),
                    "value_fmt": typed_json(r.value(v)),
                })
            })
            .collect(),
        Contents::PerCpu(entries) => entries
            .iter()
            .map(|(k, values)| {
                let hex: Vec<String> = values.iter().map(hex::encode).collect();
                let fmt = if r.types_values() {
                    values.iter().map(|v| typed_json(r.value(v))).collect()
                } else {
                    Value::Null
                };
                json!({
                    "key": hex::encode(k),
                    "values": hex,
                    "key_fmt": typed_json(r.key(k)),
                    "values_fmt": fmt,
                })
            })
            .collect(),
        Contents::Slots(slots) => slots
            .iter()
            .map(|(k, target)| {
                let slot = match target {
                    SlotTarget::Program(name) => json!({ "program": name }),
                    SlotTarget::Map(name) => json!({ "map": name }),
                    SlotTarget::Address(addr) => json!({ "address": format!("{addr:#x}") }),
                };
                json!({ "key": hex::encode(k), "slot": slot, "key_fmt": typed_json(r.key(k)) })
            })
            .collect(),
        Contents::Ring(values) => values
            .iter()
            .map(|v| json!({ "value": hex::encode(v), "value_fmt": typed_json(r.value(v)) }))
            .collect(),
        Contents::Arena {
            base,
            len,
            allocated_pages,
        } => vec![json!({
            "arena": {
                "base": format!("{base:#x}"),
                "len": len,
                "allocated_pages": allocated_pages,
            }
        })],
        Contents::RingBuffer { size, user } => {
            vec![json!({ "ringbuf": { "size": size, "user": user } })]
        }
    }
}

/// A key or value as its type reads, as JSON: numbers (as decimal
/// strings past 64 bits), booleans, strings (enumerators, text,
/// `0x` pointers, `hex:` bytes), arrays and objects; `null` without a
/// type.
fn typed_json(typed: Option<TypedValue<'_>>) -> Value {
    typed.as_ref().map_or(Value::Null, value_json)
}

fn value_json(typed: &TypedValue<'_>) -> Value {
    match typed {
        TypedValue::Unsigned(n) => {
            u64::try_from(*n).map_or_else(|_| json!(n.to_string()), |n| json!(n))
        }
        TypedValue::Signed(n) => {
            i64::try_from(*n).map_or_else(|_| json!(n.to_string()), |n| json!(n))
        }
        TypedValue::Bool(b) => json!(b),
        // JSON has no NaN or infinity.
        TypedValue::Float(f) => {
            serde_json::Number::from_f64(*f).map_or_else(|| json!(f.to_string()), Value::Number)
        }
        TypedValue::Enumerator(name) => json!(name),
        TypedValue::Text(text) => json!(text),
        TypedValue::Pointer(_) | TypedValue::Bytes(_) => json!(typed.to_string()),
        TypedValue::List(elems) => elems.iter().map(value_json).collect(),
        TypedValue::Fields(fields) => Value::Object(
            fields
                .iter()
                .map(|(name, v)| ((*name).to_owned(), value_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup_dump(
        name: &str,
        type_name: &'static str,
        contents: Result<Contents, String>,
    ) -> MapDump<'static> {
        MapDump {
            name: name.to_owned(),
            type_name,
            key_size: 4,
            value_size: 8,
            max_entries: 2,
            global_data: false,
            contents,
            types: None,
        }
    }

    #[test]
    fn every_kind_of_contents_as_text_and_json() {
        let maps = [
            setup_dump(
                "plain",
                "HASH",
                Ok(Contents::Values(vec![(vec![1, 0, 0, 0], vec![7; 8])])),
            ),
            setup_dump(
                "each",
                "PERCPU_ARRAY",
                Ok(Contents::PerCpu(vec![(
                    vec![0; 4],
                    vec![vec![1; 8], vec![2; 8]],
                )])),
            ),
            setup_dump(
                "jump",
                "PROG_ARRAY",
                Ok(Contents::Slots(vec![
                    (vec![0; 4], SlotTarget::Program("second".into())),
                    (vec![1, 0, 0, 0], SlotTarget::Map("inner".into())),
                    (vec![2, 0, 0, 0], SlotTarget::Address(0x1000)),
                ])),
            ),
            setup_dump(
                "fifo",
                "QUEUE",
                Ok(Contents::Ring(vec![vec![2; 8], vec![3; 8]])),
            ),
            setup_dump("none", "ARRAY", Ok(Contents::Values(Vec::new()))),
            setup_dump("bad", "LRU_HASH", Err("Map storage is corrupt".into())),
            setup_dump(
                "events",
                "RINGBUF",
                Ok(Contents::RingBuffer {
                    size: 4096,
                    user: false,
                }),
            ),
            setup_dump(
                "feed",
                "USER_RINGBUF",
                Ok(Contents::RingBuffer {
                    size: 8192,
                    user: true,
                }),
            ),
        ];
        assert_eq!(
            to_text(&maps),
            "map plain (HASH): key 4 bytes, value 8 bytes, max_entries 2\n  \
             01000000: 0707070707070707\n\
             map each (PERCPU_ARRAY): key 4 bytes, value 8 bytes, max_entries 2\n  \
             00000000: cpu0=0101010101010101 cpu1=0202020202020202\n\
             map jump (PROG_ARRAY): key 4 bytes, value 8 bytes, max_entries 2\n  \
             00000000: program second\n  01000000: map inner\n  02000000: address 0x1000\n\
             map fifo (QUEUE): key 4 bytes, value 8 bytes, max_entries 2\n  \
             0202020202020202\n  0303030303030303\n\
             map none (ARRAY): key 4 bytes, value 8 bytes, max_entries 2\n  (empty)\n\
             map bad (LRU_HASH): key 4 bytes, value 8 bytes, max_entries 2\n  \
             error: Map storage is corrupt\n\
             map events (RINGBUF): key 4 bytes, value 8 bytes, max_entries 2\n  \
             ring buffer of 4096 bytes (records above)\n\
             map feed (USER_RINGBUF): key 4 bytes, value 8 bytes, max_entries 2\n  \
             user ring buffer of 8192 bytes\n"
        );
        let json = to_json(&maps);
        assert_eq!(
            json[0]["entries"],
            json!([{
                "key": "01000000",
                "value": "0707070707070707",
                "key_fmt": null,
                "value_fmt": null,
            }])
        );
        assert_eq!(
            json[1]["entries"][0],
            json!({
                "key": "00000000",
                "values": ["0101010101010101", "0202020202020202"],
                "key_fmt": null,
                "values_fmt": null,
            })
        );
        assert_eq!(
            json[2]["entries"],
            json!([
                { "key": "00000000", "slot": { "program": "second" }, "key_fmt": null },
                { "key": "01000000", "slot": { "map": "inner" }, "key_fmt": null },
                { "key": "02000000", "slot": { "address": "0x1000" }, "key_fmt": null },
            ])
        );
        assert_eq!(
            json[3]["entries"][1],
            json!({ "value": "0303030303030303", "value_fmt": null })
        );
        assert_eq!(json[4]["error"], Value::Null);
        // A map that cannot be read says why, and the others are intact.
        assert_eq!(json[5]["error"], "Map storage is corrupt");
        assert_eq!(json[5]["entries"], json!([]));
        assert_eq!(json[5]["type"], "LRU_HASH");
        assert_eq!(json[5]["max_entries"], 2);
        assert_eq!(
            json[7]["entries"],
            json!([{ "ringbuf": { "size": 8192, "user": true } }])
        );
    }

    /// `setup_dump` with the types of map `map` of `object`, or of data
    /// section `section`.
    fn setup_typed<'a>(
        object: &'a Object,
        map: &str,
        type_name: &'static str,
        contents: Contents,
    ) -> MapDump<'a> {
        let btf = object.btf().unwrap();
        let types = match object.find_map(map) {
            Some(i) => {
                let spec = &object.maps()[i];
                MapTypes {
                    btf,
                    key: spec.btf_key_type_id.map(KeyType::Type),
                    value: spec.btf_value_type_id.map(ValueType::Type),
                }
            }
            None => {
                let vars = object.variables().iter().filter(|v| v.section == map);
                let vars = vars.map(|v| SectionVar {
                    offset: v.offset,
                    var_type_id: v.var_type_id,
                });
                MapTypes {
                    btf,
                    key: Some(KeyType::Index),
                    value: Some(ValueType::Section(vars.collect())),
                }
            }
        };
        MapDump {
            types: Some(types),
            ..setup_dump(map, type_name, Ok(contents))
        }
    }

    fn sample(name: &str) -> Object {
        let path = format!("{}/../images/progs/{name}", env!("CARGO_MANIFEST_DIR"));
        Object::parse(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn typed_keys_and_values_as_text_and_json() {
        let (wordcount, percpu, knobs, mim) = (
            sample("wordcount.bpf.o"),
            sample("percpu.bpf.o"),
            sample("knobs.bpf.o"),
            sample("map_in_map.bpf.o"),
        );
        let word = |w: &str| {
            let mut bytes = w.as_bytes().to_vec();
            bytes.resize(16, 0);
            bytes
        };
        let u64s = |n: u64| n.to_le_bytes().to_vec();
        let mut rodata = 5u32.to_le_bytes().to_vec();
        rodata.extend([0; 4]);
        rodata.extend((-3i64).to_le_bytes());
        rodata.extend([1, 0, 0, 0, 0, 0, 0, 0]);
        let maps = [
            setup_typed(
                &wordcount,
                "counts",
                "HASH",
                Contents::Values(vec![
                    (word("the"), u64s(3)),
                    // Bytes the type does not fit stay bytes.
                    (word("\n\x01"), vec![1, 2, 3]),
                ]),
            ),
            setup_typed(
                &percpu,
                "per_key",
                "PERCPU_HASH",
                Contents::PerCpu(vec![(vec![3, 0, 0, 0], vec![u64s(1), u64s(2)])]),
            ),
            setup_typed(
                &knobs,
                ".rodata",
                "ARRAY",
                Contents::Values(vec![(vec![0; 4], rodata)]),
            ),
            setup_typed(
                &mim,
                "by_id",
                "HASH_OF_MAPS",
                Contents::Slots(vec![(vec![7, 0, 0, 0], SlotTarget::Map("second".into()))]),
            ),
        ];
        assert_eq!(
            to_text(&maps),
            "map counts (HASH): key 4 bytes, value 8 bytes, max_entries 2\n  \
             {s: \"the\"}: 3\n  \
             {s: [10, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]}: hex:010203\n\
             map per_key (PERCPU_HASH): key 4 bytes, value 8 bytes, max_entries 2\n  \
             3: cpu0=1 cpu1=2\n\
             map .rodata (ARRAY): key 4 bytes, value 8 bytes, max_entries 2\n  \
             0: {multiplier: 5, bias: -3, negate: 1}\n\
             map by_id (HASH_OF_MAPS): key 4 bytes, value 8 bytes, max_entries 2\n  \
             7: map second\n"
        );
        let json = to_json(&maps);
        let entries = |i: usize| json[i]["entries"].clone();
        assert_eq!(
            entries(0)[0],
            json!({
                "key": hex::encode(word("the")),
                "value": "0300000000000000",
                "key_fmt": { "s": "the" },
                "value_fmt": 3,
            })
        );
        assert_eq!(entries(0)[1]["value_fmt"], "hex:010203");
        assert_eq!(entries(0)[1]["key_fmt"]["s"][0], 10);
        assert_eq!(entries(1)[0]["key_fmt"], 3);
        assert_eq!(entries(1)[0]["values_fmt"], json!([1, 2]));
        assert_eq!(entries(1)[0]["values"][1], "0200000000000000");
        assert_eq!(entries(2)[0]["key_fmt"], 0);
        assert_eq!(
            entries(2)[0]["value_fmt"],
            json!({ "multiplier": 5, "bias": -3, "negate": 1 })
        );
        assert_eq!(entries(3)[0]["key_fmt"], 7);
        assert_eq!(entries(3)[0]["slot"], json!({ "map": "second" }));
    }

    #[test]
    fn json_numbers_past_64_bits_are_strings() {
        use TypedValue::*;
        assert_eq!(value_json(&Unsigned(u64::MAX.into())), json!(u64::MAX));
        assert_eq!(
            value_json(&Unsigned(u128::MAX)),
            json!(u128::MAX.to_string())
        );
        assert_eq!(value_json(&Signed(i64::MIN.into())), json!(i64::MIN));
        assert_eq!(value_json(&Signed(i128::MIN)), json!(i128::MIN.to_string()));
        assert_eq!(value_json(&Float(0.5)), json!(0.5));
        assert_eq!(value_json(&Float(f64::NAN)), json!("NaN"));
        assert_eq!(value_json(&Pointer(0x1000)), json!("0x1000"));
        assert_eq!(value_json(&Bool(true)), json!(true));
        assert_eq!(
            value_json(&List(vec![Enumerator("ON"), Text("a".into())])),
            json!(["ON", "a"])
        );
    }

    #[test]
    fn queues_are_dumped_in_pop_order_and_left_as_they_were() {
        if !integration_tests::kvm_available("queues_are_dumped_in_pop_order") {
            return;
        }
        let object = guest_jit::elf::Object::parse(include_bytes!(
            "../../../images/progs/queue_stack.bpf.o"
        ))
        .unwrap();
        let mut sandbox = Sandbox::new(vmm::SandboxConfig::default()).unwrap();
        sandbox
            .load_object(&object, vmm::HelperSet::Standard)
            .unwrap();
        for name in ["fifo", "lifo"] {
            let map = sandbox.find_map(name).unwrap();
            for v in 1u32..=3 {
                map.push(&v.to_le_bytes(), 0).unwrap();
            }
        }
        let ring = |v: &[u32]| {
            Ok(Contents::Ring(
                v.iter().map(|v| v.to_le_bytes().to_vec()).collect(),
            ))
        };
        for _ in 0..2 {
            let maps = collect(&sandbox, &object);
            assert_eq!(maps[0].contents, ring(&[1, 2, 3]));
            assert_eq!(maps[1].contents, ring(&[3, 2, 1]));
        }
        let pop = |name| sandbox.find_map(name).unwrap().pop().unwrap();
        assert_eq!(pop("fifo"), Some(1u32.to_le_bytes().to_vec()));
        assert_eq!(pop("lifo"), Some(3u32.to_le_bytes().to_vec()));

        // A ring index past the ring: that map reports it, the other is
        // dumped as usual.
        let fifo = sandbox.find_map("fifo").unwrap().info().data();
        sandbox.memory().write(fifo + 4, &[0xff; 4]).unwrap();
        let maps = collect(&sandbox, &object);
        assert_eq!(maps[0].contents, Err("Map storage is corrupt".to_owned()));
        assert_eq!(maps[1].contents, ring(&[2, 1]));
    }
}
