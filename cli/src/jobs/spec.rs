//! A line of a jobs file: one JSON object naming the program to run and
//! how (docs/cli.md, `bpfvisor jobs`). Parsing is pure, so that every
//! malformed line has a tested message.

use serde_json::{Map, Value, json};
use std::path::PathBuf;
use std::time::Duration;

/// Wall-clock budget of a job without `timeout_ms`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Most vCPUs a job can ask for (the sandbox's limit).
pub const MAX_CPUS: u64 = 64;

/// The fields a job may have.
const FIELDS: &str = "id, object, program, data, cpus, timeout_ms, repeat";

/// One job, as its line asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// The object file.
    pub object: PathBuf,
    /// Program by function or section name; `None`: the object's only one.
    pub program: Option<String>,
    /// The context bytes.
    pub data: Vec<u8>,
    /// vCPUs of the sandbox, all running the program at once.
    pub cpus: usize,
    /// Wall-clock budget of all the runs.
    pub timeout: Duration,
    /// Runs inside the guest without leaving it.
    pub repeat: u64,
}

/// Why a line is not a job.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The line is not text.
    #[error("Line {0} is not UTF-8")]
    NotUtf8(u64),
    /// The line is not JSON.
    #[error("Line {0} is not valid JSON")]
    ParseJson(u64, #[source] serde_json::Error),
    /// The line is JSON but not an object.
    #[error("Line {line} is a JSON {found}, not an object")]
    NotObject {
        /// 1-based line number.
        line: u64,
        /// What it is instead.
        found: &'static str,
    },
    /// A required field is absent.
    #[error("Missing field `{0}`")]
    MissingField(&'static str),
    /// A field has the wrong type or range.
    #[error("Field `{field}` must be {expected}, not {found}")]
    BadField {
        /// The field.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
        /// The value given, as JSON.
        found: String,
    },
    /// `data` is not hex.
    #[error("Field `data` is not a hex string")]
    ParseData(#[source] hex::FromHexError),
    /// A field no job has: a typo, most likely.
    #[error("Unknown field `{0}` (a job has {FIELDS})")]
    UnknownField(String),
}

/// Parses line `line` (1-based) of a jobs file: the job's id (the line
/// number when the line has no usable one) and the job, or why the line
/// is not one.
pub fn parse(line: u64, bytes: &[u8]) -> (Value, Result<JobSpec, SpecError>) {
    let fallback = json!(line);
    let Ok(text) = std::str::from_utf8(bytes) else {
        return (fallback, Err(SpecError::NotUtf8(line)));
    };
    let fields = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(fields)) => fields,
        Ok(other) => {
            let found = type_name(&other);
            return (fallback, Err(SpecError::NotObject { line, found }));
        }
        Err(e) => return (fallback, Err(SpecError::ParseJson(line, e))),
    };
    match id(&fields) {
        Ok(id) => (id, job(&fields)),
        Err(e) => (fallback, Err(e)),
    }
}

fn id(fields: &Map<String, Value>) -> Result<Value, SpecError> {
    match fields.get("id") {
        None => Err(SpecError::MissingField("id")),
        Some(id @ (Value::String(_) | Value::Number(_))) => Ok(id.clone()),
        Some(other) => Err(bad("id", "a string or a number", other)),
    }
}

fn job(fields: &Map<String, Value>) -> Result<JobSpec, SpecError> {
    if let Some(unknown) = fields.keys().find(|k| !FIELDS.split(", ").any(|f| f == *k)) {
        return Err(SpecError::UnknownField(unknown.clone()));
    }
    let object = match fields.get("object") {
        None | Some(Value::Null) => return Err(SpecError::MissingField("object")),
        Some(Value::String(path)) if !path.is_empty() => PathBuf::from(path),
        Some(other) => return Err(bad("object", "a path", other)),
    };
    let program = match fields.get("program") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name.clone()),
        Some(other) => return Err(bad("program", "a string", other)),
    };
    let data = match fields.get("data") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(text)) => crate::run::parse_hex(text).map_err(SpecError::ParseData)?,
        Some(other) => return Err(bad("data", "a hex string", other)),
    };
    let cpus = integer(fields, "cpus", 1, MAX_CPUS, "an integer from 1 to 64")?.unwrap_or(1);
    let timeout = integer(fields, "timeout_ms", 1, u64::MAX, "a positive integer")?
        .map_or(DEFAULT_TIMEOUT, Duration::from_millis);
    let repeat = integer(fields, "repeat", 1, u64::MAX, "a positive integer")?.unwrap_or(1);
    Ok(JobSpec {
        object,
        program,
        data,
        cpus: usize::try_from(cpus).unwrap_or(1),
        timeout,
        repeat,
    })
}

/// Optional integer field `field`, within `min..=max`.
fn integer(
    fields: &Map<String, Value>,
    field: &'static str,
    min: u64,
    max: u64,
    expected: &'static str,
) -> Result<Option<u64>, SpecError> {
    match fields.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => match value.as_u64() {
            Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(bad(field, expected, value)),
        },
    }
}

fn bad(field: &'static str, expected: &'static str, found: &Value) -> SpecError {
    let mut found = found.to_string();
    // A whole object pasted into the wrong field need not be repeated.
    if found.len() > 40 {
        let cut = (0..=40)
            .rev()
            .find(|&i| found.is_char_boundary(i))
            .unwrap_or(0);
        found.truncate(cut);
        found.push_str("...");
    }
    SpecError::BadField {
        field,
        expected,
        found,
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(line: &str) -> (Value, String) {
        let (id, job) = parse(7, line.as_bytes());
        let e = job.expect_err(line);
        (id, crate::failure::render_chain(&e))
    }

    #[test]
    fn a_full_job_and_the_defaults() {
        let line = r#"{"id": "a", "object": "x.o", "program": "p", "data": "01 02ff",
                       "cpus": 4, "timeout_ms": 250, "repeat": 3}"#;
        let (id, job) = parse(1, line.as_bytes());
        assert_eq!(id, json!("a"));
        assert_eq!(
            job.ok(),
            Some(JobSpec {
                object: "x.o".into(),
                program: Some("p".into()),
                data: vec![1, 2, 0xff],
                cpus: 4,
                timeout: Duration::from_millis(250),
                repeat: 3,
            })
        );
        let (id, job) = parse(1, br#"{"id": 17, "object": "x.o", "program": null}"#);
        assert_eq!(id, json!(17));
        assert_eq!(
            job.ok(),
            Some(JobSpec {
                object: "x.o".into(),
                program: None,
                data: Vec::new(),
                cpus: 1,
                timeout: DEFAULT_TIMEOUT,
                repeat: 1,
            })
        );
    }

    #[test]
    fn malformed_lines_say_why_and_keep_the_id_they_have() {
        assert_eq!(
            error("{\"id\": 1,"),
            (
                json!(7),
                "Line 7 is not valid JSON: EOF while parsing a value at line 1 column 9".into()
            )
        );
        assert_eq!(
            error("[1]"),
            (json!(7), "Line 7 is a JSON array, not an object".into())
        );
        assert_eq!(
            error(r#"{"object": "x.o"}"#),
            (json!(7), "Missing field `id`".into())
        );
        assert_eq!(
            error(r#"{"id": [1], "object": "x.o"}"#),
            (
                json!(7),
                "Field `id` must be a string or a number, not [1]".into()
            )
        );
        assert_eq!(
            error(r#"{"id": "j"}"#),
            (json!("j"), "Missing field `object`".into())
        );
        assert_eq!(
            error(r#"{"id": "j", "object": 3}"#),
            (json!("j"), "Field `object` must be a path, not 3".into())
        );
        assert_eq!(
            error(r#"{"id": "j", "object": "x.o", "data": "0g"}"#).1,
            "Field `data` is not a hex string: Invalid character 'g' at position 1"
        );
        assert_eq!(
            error(r#"{"id": "j", "object": "x.o", "data": "012"}"#).1,
            "Field `data` is not a hex string: Odd number of digits"
        );
        assert_eq!(
            error(r#"{"id": "j", "object": "x.o", "cpus": 65}"#).1,
            "Field `cpus` must be an integer from 1 to 64, not 65"
        );
        assert_eq!(
            error(r#"{"id": "j", "object": "x.o", "timeout_ms": 0}"#).1,
            "Field `timeout_ms` must be a positive integer, not 0"
        );
        assert_eq!(
            error(r#"{"id": "j", "object": "x.o", "repeat": "2"}"#).1,
            "Field `repeat` must be a positive integer, not \"2\""
        );
        assert_eq!(
            error(r#"{"id": "j", "object": "x.o", "timeout": 5}"#).1,
            "Unknown field `timeout` (a job has id, object, program, data, cpus, timeout_ms, repeat)"
        );
        let (id, job) = parse(3, b"{\"id\": \"\xff\"}");
        assert_eq!(id, json!(3));
        assert_eq!(
            job.err().map(|e| e.to_string()),
            Some("Line 3 is not UTF-8".into())
        );
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let line = format!(
            r#"{{"id": "j", "object": "x.o", "program": [{}]}}"#,
            "1,".repeat(40) + "1"
        );
        let message = error(&line).1;
        assert!(message.ends_with("..."), "{message}");
        assert!(message.len() < 120, "{message}");
    }
}
