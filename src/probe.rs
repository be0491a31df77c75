//! CPU and memory as the autoscaler sees them, read with sysinfo.
//!
//! CPU usage is a difference between two refreshes at least
//! `MINIMUM_CPU_UPDATE_INTERVAL` apart, so one long-lived `System` is kept and
//! refreshed on each sample; the first sample primes it and reads as 0 % CPU.

use std::sync::Mutex;

use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};

/// One reading, in percent of the machine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub cpu_percent: f64,
    pub memory_percent: f64,
}

/// The machine's CPU and memory.
pub struct SystemProbe {
    sys: Mutex<System>,
}

impl std::fmt::Debug for SystemProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SystemProbe")
    }
}

impl SystemProbe {
    /// Fails only where sysinfo cannot read the system at all.
    pub fn new() -> Result<SystemProbe, sysinfo::Error> {
        let sys = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing().with_usage())
                .with_memory(MemoryRefreshKind::nothing().with_ram()),
        )?;
        Ok(SystemProbe {
            sys: Mutex::new(sys),
        })
    }

    /// Refreshes and reads. Call no more often than every 200 ms.
    pub fn read(&self) -> Reading {
        let mut sys = self.sys.lock().unwrap_or_else(|e| e.into_inner());
        sys.refresh_cpu_usage();
        sys.refresh_memory();
        let total = sys.total_memory().max(1) as f64;
        Reading {
            cpu_percent: f64::from(sys.global_cpu_usage()).clamp(0.0, 100.0),
            memory_percent: (sys.used_memory() as f64 / total * 100.0).clamp(0.0, 100.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plausible_values() {
        let p = SystemProbe::new().unwrap();
        let _ = p.read();
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        let r = p.read();
        assert!((0.0..=100.0).contains(&r.cpu_percent));
        assert!(r.memory_percent > 0.0 && r.memory_percent <= 100.0, "{r:?}");
    }
}
