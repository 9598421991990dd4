//! The call record: one JSON line per call the simulator received, written when the call ends.
//! It is the independent witness of what was dialed; other crates' tests read it with [`read`]
//! and check limits with [`max_overlap`] and [`max_starts_per_second`].
//!
//! A line is written (and reaches the file) before the call's final status callback is sent and
//! before `GET …/Calls/{sid}.json` shows a final status, so whoever has seen a call end can read
//! its line.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};
use shared::domain::CallOutcome;

/// One call, as the record holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRecord {
    /// The carrier's call id (`CA` + 32 hex digits).
    pub call_sid: String,
    /// The called number.
    pub to: String,
    /// The caller ID.
    pub from: String,
    /// When the create-call request arrived: the call's start, for rate and overlap checks.
    #[serde(serialize_with = "millis")]
    pub requested_at: DateTime<Utc>,
    /// When a person or machine picked up; `null` when nobody did.
    #[serde(serialize_with = "millis_opt")]
    pub answered_at: Option<DateTime<Utc>>,
    /// When the call ended.
    #[serde(serialize_with = "millis")]
    pub ended_at: DateTime<Utc>,
    /// `completed`, `busy`, `no-answer`, `failed`, `voicemail` or `cancelled` (our outcome
    /// vocabulary, `shared::domain::CallOutcome`; the callbacks keep Twilio's `canceled`).
    pub outcome: CallOutcome,
    /// The `MachineDetection` the create request asked for, exactly as sent (`Enable`,
    /// `DetectMessageEnd`); absent from the line when it asked for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_detection: Option<String>,
}

fn millis<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

fn millis_opt<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => millis(t, s),
        None => s.serialize_none(),
    }
}

/// The record file could not be opened, written or read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Opening, writing or reading the file failed.
    #[error("call record {path}: {source}")]
    Io {
        /// The record's path.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A line is not a call record (a corrupted or foreign file).
    #[error("call record {path}, line {line}: {source}")]
    Malformed {
        /// The record's path.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        source: serde_json::Error,
    },
}

/// Appends records to the file, one whole line per write.
///
/// Each line goes out in a single `write` on a file opened with `O_APPEND`, under a lock, with
/// no user-space buffer: lines never interleave, even with another process appending to the
/// same file, and each is in the file (page cache) when [`Recorder::append`] returns.
///
/// Someone may delete or replace the record while the simulator runs (to start a fresh witness
/// without restarting it): before each line the path is checked to still be the open file, and
/// reopened (recreated) if not, so no line goes to an unlinked file.
pub struct Recorder {
    path: PathBuf,
    file: Mutex<File>,
}

impl Recorder {
    /// Opens (creating it and its directory if needed) the record at `path`.
    pub fn open(path: &Path) -> Result<Self, RecordError> {
        Ok(Self {
            path: path.to_owned(),
            file: Mutex::new(open_append(path)?),
        })
    }

    /// The record's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record as one line.
    pub fn append(&self, record: &CallRecord) -> Result<(), RecordError> {
        let io = |source| RecordError::Io {
            path: self.path.clone(),
            source,
        };
        let mut line = serde_json::to_vec(record).map_err(|e| io(e.into()))?;
        line.push(b'\n');
        // A poisoned lock only means another append panicked; the file itself is still fine.
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if !still_at_path(&file, &self.path) {
            *file = open_append(&self.path)?;
        }
        file.write_all(&line)
            .and_then(|()| file.flush())
            .map_err(io)
    }

    /// Forces the record to disk (at shutdown).
    pub fn sync(&self) -> Result<(), RecordError> {
        let file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.sync_data().map_err(|source| RecordError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

fn open_append(path: &Path) -> Result<File, RecordError> {
    let io = |source| RecordError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)
}

/// Whether `path` still names the open `file` (same device and inode).
#[cfg(unix)]
fn still_at_path(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn still_at_path(_file: &File, path: &Path) -> bool {
    path.exists()
}

/// Every record in the file at `path`, in the order written; a missing file has none. A last
/// line without its newline is a line still being written, and is left for the next read.
pub fn try_read(path: impl AsRef<Path>) -> Result<Vec<CallRecord>, RecordError> {
    let path = path.as_ref();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(RecordError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    let mut records = Vec::new();
    for (i, line) in complete.split('\n').enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        records.push(
            serde_json::from_str(line).map_err(|source| RecordError::Malformed {
                path: path.to_owned(),
                line: i + 1,
                source,
            })?,
        );
    }
    Ok(records)
}

/// [`try_read`] for tests: every record at `path` (none if the file does not exist).
///
/// # Panics
/// When the file cannot be read or a line is not a call record: a corrupt witness must fail the
/// test that reads it, loudly.
pub fn read(path: impl AsRef<Path>) -> Vec<CallRecord> {
    match try_read(path) {
        Ok(records) => records,
        Err(e) => panic!("{e}"),
    }
}

/// The most calls in progress at one instant, a call spanning `[requestedAt, endedAt)`.
///
/// The interval is half-open so a slot freed and reused within the same millisecond is not
/// counted twice. Filter the records first to check one job's or one caller ID's limit.
pub fn max_overlap(records: &[CallRecord]) -> usize {
    shared::witness::max_overlap(records.iter().map(|r| (r.requested_at, Some(r.ended_at))))
}

/// The most calls started (`requestedAt`) within any one-second window `[t, t + 1 s)`, sliding,
/// not aligned to clock seconds: the strict reading of "starts in any second".
pub fn max_starts_per_second(records: &[CallRecord]) -> usize {
    shared::witness::max_starts_per_second(records.iter().map(|r| r.requested_at))
}

/// The most calls started within one clock second (aligned to whole seconds): the looser
/// reading, matching a limiter that refills once per second.
pub fn max_starts_per_clock_second(records: &[CallRecord]) -> usize {
    let mut counts = std::collections::HashMap::<i64, usize>::new();
    for r in records {
        *counts.entry(r.requested_at.timestamp()).or_default() += 1;
    }
    counts.values().copied().max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn at(ms: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(1_800_000_000_000 + ms).unwrap()
    }

    fn call(start: i64, end: i64) -> CallRecord {
        CallRecord {
            call_sid: format!("CA{start:032}"),
            to: "+12015550100".into(),
            from: "+12015550199".into(),
            requested_at: at(start),
            answered_at: None,
            ended_at: at(end),
            outcome: CallOutcome::Busy,
            machine_detection: None,
        }
    }

    #[test]
    fn line_shape_matches_the_contract() {
        let mut r = call(0, 2300);
        r.answered_at = Some(at(300));
        r.outcome = CallOutcome::Completed;
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(v["requestedAt"], "2027-01-15T08:00:00.000Z");
        assert_eq!(v["answeredAt"], "2027-01-15T08:00:00.300Z");
        assert_eq!(v["endedAt"], "2027-01-15T08:00:02.300Z");
        assert_eq!(v["outcome"], "completed");
        let busy = serde_json::to_value(call(0, 1)).unwrap();
        assert!(busy["answeredAt"].is_null());
        assert_eq!(busy["outcome"], "busy");
        assert!(
            busy.get("machineDetection").is_none(),
            "absent unless asked"
        );
        r.machine_detection = Some("DetectMessageEnd".into());
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(v["machineDetection"], "DetectMessageEnd");
    }

    #[test]
    fn write_then_read_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/calls.jsonl");
        assert!(read(&path).is_empty());
        let recorder = Recorder::open(&path).unwrap();
        let records = vec![call(0, 10), call(5, 20)];
        for r in &records {
            recorder.append(r).unwrap();
        }
        assert_eq!(read(&path), records);
    }

    #[test]
    fn concurrent_writers_never_tear_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("calls.jsonl");
        // Two recorders on one file stand for two processes appending to the same record.
        let recorders = [
            Recorder::open(&path).unwrap(),
            Recorder::open(&path).unwrap(),
        ];
        std::thread::scope(|scope| {
            for t in 0..8 {
                let recorder = &recorders[t % 2];
                scope.spawn(move || {
                    for i in 0..500 {
                        recorder.append(&call(t as i64 * 1000 + i, i)).unwrap();
                    }
                });
            }
        });
        let records = try_read(&path).unwrap();
        assert_eq!(records.len(), 4000);
        let sids: std::collections::HashSet<_> = records.iter().map(|r| &r.call_sid).collect();
        assert_eq!(sids.len(), 4000);
    }

    #[test]
    fn a_deleted_record_is_recreated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("calls.jsonl");
        let recorder = Recorder::open(&path).unwrap();
        recorder.append(&call(0, 1)).unwrap();
        std::fs::remove_file(&path).unwrap();
        recorder.append(&call(2, 3)).unwrap();
        assert_eq!(read(&path), vec![call(2, 3)]);
        // Truncated in place: appends continue at the new end.
        std::fs::write(&path, "").unwrap();
        recorder.append(&call(4, 5)).unwrap();
        assert_eq!(read(&path), vec![call(4, 5)]);
    }

    #[test]
    fn a_corrupt_line_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("calls.jsonl");
        std::fs::write(&path, "{\"callSid\":\n").unwrap();
        assert!(matches!(
            try_read(&path),
            Err(RecordError::Malformed { line: 1, .. })
        ));
        // Without its newline the same text is a line still being written.
        std::fs::write(&path, "{\"callSid\":").unwrap();
        assert!(try_read(&path).unwrap().is_empty());
    }

    #[test]
    fn overlap_is_half_open() {
        assert_eq!(max_overlap(&[]), 0);
        assert_eq!(max_overlap(&[call(0, 10), call(10, 20)]), 1);
        assert_eq!(max_overlap(&[call(0, 10), call(9, 20)]), 2);
        assert_eq!(max_overlap(&[call(0, 100), call(10, 20), call(15, 30)]), 3);
    }

    #[test]
    fn starts_per_second_slides() {
        assert_eq!(max_starts_per_second(&[]), 0);
        // 900 ms and 1100 ms are in one sliding second but two clock seconds.
        let records = [call(900, 901), call(1100, 1101)];
        assert_eq!(max_starts_per_second(&records), 2);
        assert_eq!(max_starts_per_clock_second(&records), 1);
        assert_eq!(max_starts_per_second(&[call(0, 1), call(1000, 1001)]), 1);
    }

    proptest! {
        #[test]
        fn overlap_matches_brute_force(spans in proptest::collection::vec((0i64..200, 0i64..50), 0..40)) {
            let records: Vec<CallRecord> = spans.iter().map(|(s, d)| call(*s, s + d)).collect();
            let brute = (0..260)
                .map(|t| spans.iter().filter(|(s, d)| *s <= t && t < s + d).count())
                .max()
                .unwrap_or(0);
            prop_assert_eq!(max_overlap(&records), brute);
        }

        #[test]
        fn starts_match_brute_force(starts in proptest::collection::vec(0i64..5_000, 0..60)) {
            let records: Vec<CallRecord> = starts.iter().map(|s| call(*s, s + 1)).collect();
            let brute = starts
                .iter()
                .map(|t| starts.iter().filter(|s| **s >= *t && **s < t + 1000).count())
                .max()
                .unwrap_or(0);
            prop_assert_eq!(max_starts_per_second(&records), brute);
        }
    }
}
