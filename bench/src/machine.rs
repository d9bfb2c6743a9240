//! What the figures were measured on: they mean little without it.

use std::time::SystemTime;

/// The machine and the moment of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    /// `model name` of the first CPU in /proc/cpuinfo.
    pub cpu: String,
    /// CPUs this process may use.
    pub cpus: usize,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// Whether the CPU says it runs under a hypervisor (a nested VM here
    /// makes VM exits far dearer than on bare metal).
    pub hypervisor: bool,
    /// /proc/loadavg when the run started.
    pub load: String,
    /// When the run started, RFC 3339 UTC.
    pub date: String,
}

impl Machine {
    /// Reads this machine; what cannot be read is `unknown`.
    pub fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            cpuinfo.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == name).then(|| value.trim().to_owned())
            })
        };
        let hypervisor = field("flags").is_some_and(|f| f.split(' ').any(|x| x == "hypervisor"));
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "unknown".to_owned())
        };
        Machine {
            cpu: field("model name").unwrap_or_else(|| "unknown".to_owned()),
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            kernel: read("/proc/sys/kernel/osrelease"),
            hypervisor,
            load: read("/proc/loadavg"),
            date: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        }
    }
}
