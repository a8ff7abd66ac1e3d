//! Streaming JSON: the top-level records of a file, one at a time, never the whole document.
//!
//! serde_json reads from a [`Counting`] reader, which knows the byte offset (for errors: a
//! truncated file names the byte where it ends), hashes the bytes (the file's SHA-256 for
//! import_files), feeds the progress display, and refuses a record that grows past the record
//! cap, so a hostile file cannot make the parser hold more than one bounded record.

use std::{
    cell::Cell,
    fmt,
    io::{self, Read},
    rc::Rc,
};

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Where the reader is: shared between the reader (inside serde_json) and the visitor, both on
/// the parsing thread.
#[derive(Clone, Default)]
pub struct Position {
    offset: Rc<Cell<u64>>,
    record_start: Rc<Cell<u64>>,
}

impl Position {
    pub fn offset(&self) -> u64 {
        self.offset.get()
    }

    fn mark_record_start(&self) {
        self.record_start.set(self.offset.get());
    }
}

/// A reader that counts, hashes and bounds what serde_json consumes.
pub struct Counting<R> {
    inner: R,
    pos: Position,
    max_record: u64,
    hasher: Sha256,
    on_progress: Box<dyn FnMut(u64)>,
    reported: u64,
}

/// Bytes between two progress callbacks.
const PROGRESS_EVERY: u64 = 1 << 20;

impl<R: Read> Counting<R> {
    pub fn new(inner: R, max_record: u64, on_progress: Box<dyn FnMut(u64)>) -> Self {
        Self {
            inner,
            pos: Position::default(),
            max_record,
            hasher: Sha256::new(),
            on_progress,
            reported: 0,
        }
    }

    pub fn position(&self) -> Position {
        self.pos.clone()
    }

    /// The SHA-256 of everything read (call after the document ended).
    pub fn finish(mut self) -> io::Result<([u8; 32], u64)> {
        // Trailing bytes serde_json did not need (whitespace after the document) still belong
        // to the file's hash.
        let mut rest = [0u8; 8192];
        loop {
            let n = self.inner.read(&mut rest)?;
            if n == 0 {
                break;
            }
            self.hasher.update(&rest[..n]);
            self.pos.offset.set(self.pos.offset.get() + n as u64);
        }
        (self.on_progress)(self.pos.offset());
        Ok((self.hasher.finalize().into(), self.pos.offset()))
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        let offset = self.pos.offset.get() + n as u64;
        self.pos.offset.set(offset);
        if offset - self.pos.record_start.get() > self.max_record {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a record is larger than {} bytes", self.max_record),
            ));
        }
        if offset - self.reported >= PROGRESS_EVERY {
            self.reported = offset;
            (self.on_progress)(offset);
        }
        Ok(n)
    }
}

/// What receives the records. An error stops the parse; it is kept by the sink and reported
/// instead of serde's wrapper.
pub trait Records {
    /// One record: its position among the records, its key (object members), its value.
    fn record(&mut self, index: u64, key: Option<&str>, value: Value) -> Result<(), Stop>;
}

/// A sink's refusal to take more records (it keeps the reason itself).
#[derive(Debug, Clone, Copy)]
pub struct Stop;

/// Streams a top-level array, `[record, ...]` (course, exams, practices).
pub fn array<R: Read, S: Records>(
    de: &mut serde_json::Deserializer<serde_json::de::IoRead<R>>,
    pos: &Position,
    sink: &mut S,
) -> serde_json::Result<()> {
    ArraySeed { pos, sink }.deserialize(&mut *de)?;
    de.end()
}

/// Streams `{"targets": {key: record, ...}}` (user_data.json); other top-level members are
/// skipped without being held.
pub fn targets<R: Read, S: Records>(
    de: &mut serde_json::Deserializer<serde_json::de::IoRead<R>>,
    pos: &Position,
    sink: &mut S,
) -> serde_json::Result<()> {
    RootSeed { pos, sink }.deserialize(&mut *de)?;
    de.end()
}

struct ArraySeed<'a, S> {
    pos: &'a Position,
    sink: &'a mut S,
}

impl<'de, S: Records> DeserializeSeed<'de> for ArraySeed<'_, S> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, S: Records> Visitor<'de> for ArraySeed<'_, S> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of records")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        self.pos.mark_record_start();
        while let Some(v) = seq.next_element::<Value>()? {
            self.sink
                .record(index, None, v)
                .map_err(|Stop| de::Error::custom(STOPPED))?;
            index += 1;
            self.pos.mark_record_start();
        }
        Ok(())
    }
}

/// The message of the error a sink's refusal becomes (the sink holds the real one).
pub const STOPPED: &str = "stopped by the importer";

struct RootSeed<'a, S> {
    pos: &'a Position,
    sink: &'a mut S,
}

impl<'de, S: Records> DeserializeSeed<'de> for RootSeed<'_, S> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, S: Records> Visitor<'de> for RootSeed<'_, S> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"an object with "targets""#)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == "targets" && !seen {
                seen = true;
                map.next_value_seed(TargetsSeed {
                    pos: self.pos,
                    sink: &mut *self.sink,
                })?;
            } else {
                self.pos.mark_record_start();
                map.next_value::<IgnoredAny>()?;
            }
        }
        if seen {
            Ok(())
        } else {
            Err(de::Error::missing_field("targets"))
        }
    }
}

struct TargetsSeed<'a, S> {
    pos: &'a Position,
    sink: &'a mut S,
}

impl<'de, S: Records> DeserializeSeed<'de> for TargetsSeed<'_, S> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, S: Records> Visitor<'de> for TargetsSeed<'_, S> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of Firebase targets")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut index = 0;
        self.pos.mark_record_start();
        while let Some(key) = map.next_key::<String>()? {
            let v: Value = map.next_value()?;
            self.sink
                .record(index, Some(&key), v)
                .map_err(|Stop| de::Error::custom(STOPPED))?;
            index += 1;
            self.pos.mark_record_start();
        }
        Ok(())
    }
}
