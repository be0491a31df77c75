//! The run ledger: one line per handler start and end, appended with a single
//! `write(2)` to a file opened `O_APPEND`. The kernel keeps what was written even if
//! the process is killed the next instant, and concurrent appends never interleave.
//!
//! Line format: `<job id> <attempt> <pid> <start|end> <epoch ms>`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use uuid::Uuid;

/// Where a run is in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Start,
    End,
}

/// One ledger line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub job: Uuid,
    pub attempt: u32,
    pub pid: u32,
    pub phase: Phase,
    pub at_ms: i64,
}

/// An append-only ledger file.
#[derive(Debug)]
pub struct Ledger {
    file: File,
    path: PathBuf,
}

impl Ledger {
    pub fn open(path: impl AsRef<Path>) -> std::io::Result<Ledger> {
        let path = path.as_ref().to_owned();
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Ledger { file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line in one write.
    pub fn record(&self, job: Uuid, attempt: u32, phase: Phase) -> std::io::Result<()> {
        let phase = match phase {
            Phase::Start => "start",
            Phase::End => "end",
        };
        let line = format!(
            "{job} {attempt} {} {phase} {}\n",
            std::process::id(),
            chrono::Utc::now().timestamp_millis()
        );
        (&self.file).write_all(line.as_bytes())
    }

    /// Reads every complete line of the ledger at `path`.
    pub fn read(path: impl AsRef<Path>) -> std::io::Result<Vec<Entry>> {
        let text = std::fs::read_to_string(path)?;
        Ok(text.lines().filter_map(parse_line).collect())
    }
}

fn parse_line(line: &str) -> Option<Entry> {
    let mut it = line.split_ascii_whitespace();
    let job = Uuid::parse_str(it.next()?).ok()?;
    let attempt = it.next()?.parse().ok()?;
    let pid = it.next()?.parse().ok()?;
    let phase = match it.next()? {
        "start" => Phase::Start,
        "end" => Phase::End,
        _ => return None,
    };
    let at_ms = it.next()?.parse().ok()?;
    Some(Entry {
        job,
        attempt,
        pid,
        phase,
        at_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let path = std::env::temp_dir().join(format!("ledger-{}.log", Uuid::now_v7()));
        let l = Ledger::open(&path).unwrap();
        let id = Uuid::now_v7();
        l.record(id, 1, Phase::Start).unwrap();
        l.record(id, 1, Phase::End).unwrap();
        let e = Ledger::read(&path).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].job, e[0].attempt, e[0].phase), (id, 1, Phase::Start));
        assert_eq!(e[1].phase, Phase::End);
        assert_eq!(e[1].pid, std::process::id());
        let _ = std::fs::remove_file(path);
    }
}
