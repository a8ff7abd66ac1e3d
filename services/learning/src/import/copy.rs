//! Staging rows in COPY's text format, each with the content hash of what it carries.
//!
//! Every staging table ends in the same three columns: `source_key` (the row's identity in its
//! file), `content_hash` (SHA-256 of the row's content columns exactly as encoded here, so two
//! runs over the same input produce the same hash) and `seq` (the record order: among duplicates
//! in one file the last wins, as a JSON object's last duplicate key would).

use serde_json::Value;
use sha2::{Digest, Sha256};

/// A temporary table the parser fills with COPY.
#[derive(Debug, Clone, Copy)]
pub struct Stage {
    pub name: &'static str,
    /// Content columns (`name type`, comma separated); the three common ones follow.
    pub columns: &'static str,
}

impl Stage {
    pub fn ddl(&self) -> String {
        format!(
            "CREATE TEMP TABLE {} ({}, source_key text NOT NULL, content_hash bytea NOT NULL, \
             seq bigint NOT NULL) ON COMMIT DROP",
            self.name, self.columns
        )
    }

    pub fn copy_statement(&self) -> String {
        let names: Vec<&str> = self
            .columns
            .split(',')
            .filter_map(|c| c.split_whitespace().next())
            .collect();
        format!(
            "COPY {} ({}, source_key, content_hash, seq) FROM STDIN",
            self.name,
            names.join(", ")
        )
    }
}

/// The staging tables, by the index the parser uses ([`StageId`]).
pub const STAGES: [Stage; 12] = [
    Stage {
        name: "stage_subjects",
        columns: "subject_key text, title text, board text, qualification text",
    },
    Stage {
        name: "stage_units",
        columns: "subject_key text, unit_index integer, title text",
    },
    Stage {
        name: "stage_topics",
        columns: "subject_key text, unit_index integer, topic_index integer, title text",
    },
    Stage {
        name: "stage_lessons",
        columns: "subject_key text, unit_index integer, topic_index integer, \
                  lesson_index integer, lesson_key text, title text",
    },
    Stage {
        name: "stage_paper_sets",
        columns: "set_key text, subject_key text, board text, qualification text, \
                  subject_title text, set_type text, series text",
    },
    Stage {
        name: "stage_papers",
        columns: "paper_key text, set_key text, tier text, paper_number text",
    },
    Stage {
        name: "stage_questions",
        columns: "question_key text, parent_key text, question_number integer, stem text, \
                  stem_diagram jsonb, validation_comment text, validation_reason text",
    },
    Stage {
        name: "stage_items",
        columns: "question_id text, question_type text, question_text text, markmax integer, \
                  markscheme text, difficulty integer, options text[], correct_answer jsonb, \
                  specification_point text, diagram jsonb",
    },
    Stage {
        name: "stage_parts",
        columns: "question_key text, question_id text, question_part integer",
    },
    Stage {
        name: "stage_item_lessons",
        columns: "question_id text, lesson_key text",
    },
    Stage {
        name: "stage_banks",
        columns: "lesson_key text, original_lesson_key text, exam_board text, \
                  qualification text, subject_title text, unit_index integer, unit_title text, \
                  topic_index integer, topic_title text, lesson_index integer, \
                  lesson_title text, chunks_used jsonb",
    },
    Stage {
        name: "stage_attempts",
        columns: "uid text, subject_key text, paper_key text, question_id text, \
                  created_at timestamptz, updated_at timestamptz, source_updated boolean, \
                  is_marked boolean, user_mark integer, user_answer text, \
                  annotated_answer text, marking_table jsonb, options text[], canvas jsonb",
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageId {
    Subjects = 0,
    Units,
    Topics,
    Lessons,
    PaperSets,
    Papers,
    Questions,
    Items,
    Parts,
    ItemLessons,
    Banks,
    Attempts,
}

impl StageId {
    pub fn stage(self) -> &'static Stage {
        &STAGES[self as usize]
    }
}

/// One row being encoded into a COPY buffer.
pub struct Row<'a> {
    buf: &'a mut Vec<u8>,
    start: usize,
    fields: usize,
}

impl<'a> Row<'a> {
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        let start = buf.len();
        Self {
            buf,
            start,
            fields: 0,
        }
    }

    fn sep(&mut self) {
        if self.fields > 0 {
            self.buf.push(b'\t');
        }
        self.fields += 1;
    }

    pub fn text(&mut self, v: Option<&str>) -> &mut Self {
        self.sep();
        match v {
            None => self.buf.extend_from_slice(b"\\N"),
            Some(s) => escape_into(self.buf, s),
        }
        self
    }

    pub fn str(&mut self, s: &str) -> &mut Self {
        self.text(Some(s))
    }

    pub fn int(&mut self, v: Option<i32>) -> &mut Self {
        self.sep();
        match v {
            None => self.buf.extend_from_slice(b"\\N"),
            Some(n) => self.buf.extend_from_slice(n.to_string().as_bytes()),
        }
        self
    }

    pub fn boolean(&mut self, v: bool) -> &mut Self {
        self.sep();
        self.buf.push(if v { b't' } else { b'f' });
        self
    }

    pub fn json(&mut self, v: Option<&Value>) -> &mut Self {
        // serde_json's output of a Value is deterministic (maps are ordered), so equal input
        // gives equal bytes and equal hashes.
        let s = v.map(Value::to_string);
        self.text(s.as_deref())
    }

    /// A PostgreSQL array literal of text, `{"a","b"}`, then COPY-escaped like any text.
    pub fn text_array(&mut self, v: Option<&[String]>) -> &mut Self {
        let Some(items) = v else {
            return self.text(None);
        };
        let mut lit = String::with_capacity(2 + items.iter().map(|s| s.len() + 3).sum::<usize>());
        lit.push('{');
        for (i, s) in items.iter().enumerate() {
            if i > 0 {
                lit.push(',');
            }
            lit.push('"');
            for c in s.chars() {
                if c == '"' || c == '\\' {
                    lit.push('\\');
                }
                lit.push(c);
            }
            lit.push('"');
        }
        lit.push('}');
        self.text(Some(&lit))
    }

    /// Ends the row: the content hash over the content columns as encoded, then the source key
    /// and the sequence number.
    pub fn finish(self, source_key: &str, seq: u64) {
        let hash = Sha256::digest(&self.buf[self.start..]);
        self.buf.push(b'\t');
        escape_into(self.buf, source_key);
        self.buf.extend_from_slice(b"\t\\\\x");
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for b in hash {
            self.buf.push(HEX[usize::from(b >> 4)]);
            self.buf.push(HEX[usize::from(b & 15)]);
        }
        self.buf.push(b'\t');
        self.buf.extend_from_slice(seq.to_string().as_bytes());
        self.buf.push(b'\n');
    }
}

/// COPY text escaping: backslash, and the three characters that delimit fields and rows.
fn escape_into(buf: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        match b {
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            _ => buf.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_escape_delimiters_and_hash_only_the_content() {
        let mut a = Vec::new();
        let mut r = Row::new(&mut a);
        r.str("a\tb\\c\nd")
            .int(None)
            .text_array(Some(&["x\"y".into()]));
        r.finish("key-1", 7);
        let text = String::from_utf8(a.clone()).expect("utf8");
        assert!(text.starts_with("a\\tb\\\\c\\nd\t\\N\t{\"x\\\\\"y\"}\tkey-1\t\\\\x"));
        assert!(text.ends_with("\t7\n"));
        // Same content under another key and sequence: same hash.
        let mut b = Vec::new();
        let mut r = Row::new(&mut b);
        r.str("a\tb\\c\nd")
            .int(None)
            .text_array(Some(&["x\"y".into()]));
        r.finish("key-2", 9);
        let hash = |v: &[u8]| {
            String::from_utf8_lossy(v)
                .split('\t')
                .nth(4)
                .map(str::to_owned)
        };
        assert_eq!(hash(&a), hash(&b));
        assert!(
            STAGES[StageId::Attempts as usize]
                .copy_statement()
                .starts_with("COPY stage_attempts (uid, subject_key,")
        );
    }
}
