//! `bpfvisor run --dump-maps`: every map of the sandbox with its contents,
//! read through the host map API once the last call has returned, as text
//! or JSON (docs/cli.md).
//!
//! A map whose contents cannot be read (a program scribbled over its
//! bookkeeping, a lock stayed taken) gets its error in place of its
//! contents; the other maps are dumped as usual.

use serde_json::{Value, json};
use shm::maps::{MapError, MapType};
use vmm::{MapHandle, Sandbox, Slot};

/// A map and what it held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapDump {
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

/// Every map of `sandbox`, in creation order.
pub fn collect(sandbox: &Sandbox) -> Vec<MapDump> {
    sandbox.maps().map(|map| dump_map(sandbox, &map)).collect()
}

fn dump_map(sandbox: &Sandbox, map: &MapHandle<'_>) -> MapDump {
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
    }
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

/// The dump as text: a line per map, then a line per element.
pub fn to_text(maps: &[MapDump]) -> String {
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
        let lines = match &map.contents {
            Err(error) => vec![format!("error: {error}")],
            Ok(Contents::Values(entries)) => entries
                .iter()
                .map(|(k, v)| format!("{}: {}", hex::encode(k), hex::encode(v)))
                .collect(),
            Ok(Contents::PerCpu(entries)) => entries
                .iter()
                .map(|(k, values)| {
                    let per_cpu: Vec<String> = values
                        .iter()
                        .enumerate()
                        .map(|(cpu, v)| format!("cpu{cpu}={}", hex::encode(v)))
                        .collect();
                    format!("{}: {}", hex::encode(k), per_cpu.join(" "))
                })
                .collect(),
            Ok(Contents::Slots(slots)) => slots
                .iter()
                .map(|(k, target)| format!("{}: {}", hex::encode(k), slot_text(target)))
                .collect(),
            Ok(Contents::Ring(values)) => values.iter().map(hex::encode).collect(),
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

fn slot_text(target: &SlotTarget) -> String {
    match target {
        SlotTarget::Program(name) => format!("program {name}"),
        SlotTarget::Map(name) => format!("map {name}"),
        SlotTarget::Address(addr) => format!("address {addr:#x}"),
    }
}

/// The dump as the `"maps"` array of `--json` (docs/cli.md).
pub fn to_json(maps: &[MapDump]) -> Value {
    maps.iter()
        .map(|map| {
            let (entries, error) = match &map.contents {
                Ok(contents) => (entries_json(contents), Value::Null),
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

fn entries_json(contents: &Contents) -> Vec<Value> {
    match contents {
        Contents::Values(entries) => entries
            .iter()
            .map(|(k, v)| json!({ "key": hex::encode(k), "value": hex::encode(v) }))
            .collect(),
        Contents::PerCpu(entries) => entries
            .iter()
            .map(|(k, values)| {
                let values: Vec<String> = values.iter().map(hex::encode).collect();
                json!({ "key": hex::encode(k), "values": values })
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
                json!({ "key": hex::encode(k), "slot": slot })
            })
            .collect(),
        Contents::Ring(values) => values
            .iter()
            .map(|v| json!({ "value": hex::encode(v) }))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup_dump(
        name: &str,
        type_name: &'static str,
        contents: Result<Contents, String>,
    ) -> MapDump {
        MapDump {
            name: name.to_owned(),
            type_name,
            key_size: 4,
            value_size: 8,
            max_entries: 2,
            global_data: false,
            contents,
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
             error: Map storage is corrupt\n"
        );
        let json = to_json(&maps);
        assert_eq!(
            json[0]["entries"],
            json!([{ "key": "01000000", "value": "0707070707070707" }])
        );
        assert_eq!(
            json[1]["entries"][0]["values"],
            json!(["0101010101010101", "0202020202020202"])
        );
        assert_eq!(
            json[2]["entries"],
            json!([
                { "key": "00000000", "slot": { "program": "second" } },
                { "key": "01000000", "slot": { "map": "inner" } },
                { "key": "02000000", "slot": { "address": "0x1000" } },
            ])
        );
        assert_eq!(
            json[3]["entries"][1],
            json!({ "value": "0303030303030303" })
        );
        assert_eq!(json[4]["error"], Value::Null);
        // A map that cannot be read says why, and the others are intact.
        assert_eq!(json[5]["error"], "Map storage is corrupt");
        assert_eq!(json[5]["entries"], json!([]));
        assert_eq!(json[5]["type"], "LRU_HASH");
        assert_eq!(json[5]["max_entries"], 2);
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
            let maps = collect(&sandbox);
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
        let maps = collect(&sandbox);
        assert_eq!(maps[0].contents, Err("Map storage is corrupt".to_owned()));
        assert_eq!(maps[1].contents, ring(&[2, 1]));
    }
}
