//! Seeded input files at any scale, in the real shapes: for tests and the benchmark.
//!
//! Scale N writes N copies of the real course, exams and attempts (copy 0 is the real data,
//! copy c > 0 has its own unit indexes, lessonIDs, paper ids, questionIDs and uids, so nothing
//! collides), and a practices file the real data lacks, following
//! aqaGCSEBio_practices_schema.json: one bank per lesson, 8–16 questions of 1–5 parts (≈ 10,000
//! parts per copy). Every edge case of the real files comes along in proportion (the attempts
//! and exam items are the real ones, re-keyed), and the practices carry their own: stem
//! diagrams null / string / object, MCQs with and without `correct_answer_index` (an integer or
//! a list), and one part per bank in the first ten banks of each copy that reuses an exam
//! questionID (the same item in two files).
//!
//! Everything is written record by record (memory does not grow with N), and the output is a
//! pure function of (N, seed).

use std::{
    fmt,
    fs::File,
    io::{BufWriter, Write},
    path::Path,
};

use serde_json::{Map, Value, json};

/// A small, fast, seedable generator (SplitMix64): the same seed gives the same files on every
/// platform, without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn id(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..len)
            .map(|_| char::from(ALPHABET[(self.next() % ALPHABET.len() as u64) as usize]))
            .collect()
    }

    fn words(&mut self, n: u64) -> String {
        const WORDS: &[&str] = &[
            "cell",
            "membrane",
            "nucleus",
            "enzyme",
            "protein",
            "diffusion",
            "osmosis",
            "mitochondria",
            "respiration",
            "glucose",
            "oxygen",
            "carbon",
            "dioxide",
            "plant",
            "root",
            "leaf",
            "chloroplast",
            "light",
            "energy",
            "the",
            "of",
            "and",
            "a",
            "in",
            "explain",
            "describe",
            "why",
            "how",
            "rate",
            "temperature",
            "concentration",
            "active",
            "transport",
            "tissue",
            "organ",
            "system",
            "blood",
            "heart",
            "lung",
            "virus",
            "bacteria",
            "antibody",
            "vaccine",
            "drug",
            "trial",
            "placebo",
            "gene",
            "DNA",
        ];
        let mut out = String::new();
        for i in 0..n {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(WORDS[(self.next() % WORDS.len() as u64) as usize]);
        }
        out
    }
}

/// What was written.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub scale: u32,
    pub units: u64,
    pub lessons: u64,
    pub exam_items: u64,
    pub practice_banks: u64,
    pub practice_parts: u64,
    pub attempts: u64,
    pub users: u64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "scale {}: {} units, {} lessons, {} exam items, {} practice banks with {} parts, {} attempts by {} users",
            self.scale,
            self.units,
            self.lessons,
            self.exam_items,
            self.practice_banks,
            self.practice_parts,
            self.attempts,
            self.users
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("the bundled real file {0} is not what the generator expects")]
    Template(&'static str),
}

fn template(name: &'static str) -> Result<Value, GenerateError> {
    let bytes = crate::SAMPLE_FILES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, b)| *b)
        .ok_or(GenerateError::Template(name))?;
    serde_json::from_slice(bytes).map_err(|_| GenerateError::Template(name))
}

/// Re-keys an id for copy `c` (copy 0 keeps the real id).
fn rekey(id: &str, c: u32) -> String {
    if c == 0 {
        id.to_owned()
    } else {
        format!("{id}_g{c}")
    }
}

/// The lessonID `aqaGCSEBio<u>.<t>.<l>` of copy `c`: units shift by 8 per copy, as in the
/// generated course.
fn lesson_for_copy(lesson_id: &str, c: u32, units: u64) -> String {
    let Some(rest) = lesson_id.strip_prefix("aqaGCSEBio") else {
        return lesson_id.to_owned();
    };
    let mut parts = rest.splitn(2, '.');
    match (
        parts.next().and_then(|u| u.parse::<u64>().ok()),
        parts.next(),
    ) {
        (Some(u), Some(tail)) => format!("aqaGCSEBio{}.{tail}", u + u64::from(c) * units),
        _ => lesson_id.to_owned(),
    }
}

/// A JSON array written element by element.
struct ArrayWriter<W: Write> {
    out: W,
    first: bool,
}

impl<W: Write> ArrayWriter<W> {
    fn new(mut out: W) -> std::io::Result<Self> {
        out.write_all(b"[\n")?;
        Ok(Self { out, first: true })
    }

    fn push(&mut self, v: &Value) -> std::io::Result<()> {
        if !self.first {
            self.out.write_all(b",\n")?;
        }
        self.first = false;
        serde_json::to_writer(&mut self.out, v)?;
        Ok(())
    }

    fn end(mut self) -> std::io::Result<W> {
        self.out.write_all(b"\n]\n")?;
        Ok(self.out)
    }
}

/// Writes aqaGCSEBio_course.json, aqaGCSEBio_exams.json, aqaGCSEBio_practices.json and
/// user_data.json into `dir`.
pub fn write_all(dir: &Path, scale: u32, seed: u64) -> Result<Summary, GenerateError> {
    std::fs::create_dir_all(dir)?;
    let scale = scale.max(1);
    let mut summary = Summary {
        scale,
        ..Summary::default()
    };
    let course = template("aqaGCSEBio_course.json")?;
    let exams = template("aqaGCSEBio_exams.json")?;
    let users = template("user_data.json")?;
    let units = course.as_array().ok_or(GenerateError::Template("course"))?;
    let unit_count = units.len() as u64;

    // Course: N copies of the units, unit indexes shifted, lessonIDs following them.
    let mut lessons: Vec<(Value, Value, Value, u32)> = Vec::new(); // (unit, topic, lesson, copy) of copy 0 only
    let mut w = ArrayWriter::new(BufWriter::new(File::create(
        dir.join("aqaGCSEBio_course.json"),
    )?))?;
    for c in 0..scale {
        for unit in units {
            let mut u = unit.clone();
            let index = u["unitIndex"].as_u64().unwrap_or(0) + u64::from(c) * unit_count;
            u["unitIndex"] = json!(index);
            if c > 0 {
                u["unitTitle"] = json!(format!(
                    "{} ({})",
                    unit["unitTitle"].as_str().unwrap_or(""),
                    c + 1
                ));
            }
            if let Some(topics) = u["topics"].as_array_mut() {
                for t in topics {
                    if let Some(ls) = t["lessons"].as_array_mut() {
                        for l in ls {
                            let id = l["lessonID"].as_str().unwrap_or("").to_owned();
                            l["lessonID"] = json!(lesson_for_copy(&id, c, unit_count));
                            summary.lessons += 1;
                        }
                    }
                }
            }
            if c == 0 {
                for t in unit["topics"].as_array().into_iter().flatten() {
                    for l in t["lessons"].as_array().into_iter().flatten() {
                        lessons.push((unit.clone(), t.clone(), l.clone(), 0));
                    }
                }
            }
            w.push(&u)?;
            summary.units += 1;
        }
    }
    w.end()?.flush()?;

    // Exams: N copies of the paper sets, re-keyed.
    let mut exam_ids: Vec<String> = Vec::new();
    let mut w = ArrayWriter::new(BufWriter::new(File::create(
        dir.join("aqaGCSEBio_exams.json"),
    )?))?;
    for c in 0..scale {
        for set in exams.as_array().into_iter().flatten() {
            let mut s = set.clone();
            if c > 0 {
                s["series"] = json!(format!(
                    "{}_{}",
                    set["series"].as_str().unwrap_or(""),
                    c + 1
                ));
            }
            for p in s["papers"].as_array_mut().into_iter().flatten() {
                p["paper_id"] = json!(rekey(p["paper_id"].as_str().unwrap_or(""), c));
                for q in p["questions"].as_array_mut().into_iter().flatten() {
                    q["question_id"] = json!(rekey(q["question_id"].as_str().unwrap_or(""), c));
                    for i in q["items"].as_array_mut().into_iter().flatten() {
                        let id = rekey(i["questionID"].as_str().unwrap_or(""), c);
                        if c == 0 {
                            exam_ids.push(id.clone());
                        }
                        i["questionID"] = json!(id);
                        if let Some(ls) = i["lessonIDs"].as_array_mut() {
                            for l in ls.iter_mut() {
                                *l =
                                    json!(lesson_for_copy(l.as_str().unwrap_or(""), c, unit_count));
                            }
                        }
                        summary.exam_items += 1;
                    }
                }
            }
            w.push(&s)?;
        }
    }
    w.end()?.flush()?;

    // Practices: one bank per lesson of every copy.
    let mut rng = Rng(seed ^ 0x6c65_6172_6e69_6e67);
    let mut w = ArrayWriter::new(BufWriter::new(File::create(
        dir.join("aqaGCSEBio_practices.json"),
    )?))?;
    for c in 0..scale {
        for (bi, (unit, topic, lesson, _)) in lessons.iter().enumerate() {
            let lesson_id =
                lesson_for_copy(lesson["lessonID"].as_str().unwrap_or(""), c, unit_count);
            let shared = (bi < 10)
                .then(|| exam_ids.get(bi % exam_ids.len().max(1)))
                .flatten();
            let bank = practice_bank(
                &mut rng,
                unit,
                topic,
                lesson,
                &lesson_id,
                c,
                unit_count,
                shared,
                &mut summary,
            );
            w.push(&bank)?;
            summary.practice_banks += 1;
        }
    }
    w.end()?.flush()?;

    // Attempts: every real attempt once per copy, on that copy's paper and question.
    let targets = users["targets"]
        .as_object()
        .ok_or(GenerateError::Template("user_data.json"))?;
    let mut out = BufWriter::new(File::create(dir.join("user_data.json"))?);
    out.write_all(b"{\n  \"targets\": {\n")?;
    let mut first = true;
    let mut uids = std::collections::BTreeSet::new();
    for c in 0..scale {
        for (key, attempt) in targets {
            let parts: Vec<&str> = key.split('/').collect();
            let [_, uid, _, subject, _, paper, _, qid] = parts.as_slice() else {
                continue;
            };
            let uid = if c == 0 {
                (*uid).to_owned()
            } else {
                format!("{uid}{c}")
            };
            let qid = rekey(qid, c);
            let new_key = format!(
                "users/{uid}/subjectsWeb/{subject}/mocks/{}/questions/{qid}",
                rekey(paper, c)
            );
            let mut a = attempt.clone();
            if let Some(o) = a.as_object_mut() {
                o.insert("questionID".into(), json!(qid));
            }
            if !first {
                out.write_all(b",\n")?;
            }
            first = false;
            serde_json::to_writer(&mut out, &Value::String(new_key))?;
            out.write_all(b": ")?;
            serde_json::to_writer(&mut out, &a)?;
            summary.attempts += 1;
            uids.insert(uid);
        }
    }
    out.write_all(b"\n  }\n}\n")?;
    out.flush()?;
    summary.users = uids.len() as u64;
    Ok(summary)
}

#[allow(clippy::too_many_arguments)]
fn practice_bank(
    rng: &mut Rng,
    unit: &Value,
    topic: &Value,
    lesson: &Value,
    lesson_id: &str,
    c: u32,
    unit_count: u64,
    shared: Option<&String>,
    summary: &mut Summary,
) -> Value {
    let questions = rng.range(8, 16);
    let mut items = Vec::with_capacity(questions as usize);
    for qn in 1..=questions {
        let question_id = format!("{lesson_id}_p{qn}_{}", rng.id(6));
        let stem_diagram = match rng.range(0, 9) {
            0..=5 => Value::Null,
            6..=7 => json!(format!(
                "| x | y |\n|---|---|\n| {} | {} |",
                rng.range(1, 99),
                rng.range(1, 99)
            )),
            _ => diagram_object(rng),
        };
        let parts = rng.range(1, 5);
        let mut part_items = Vec::with_capacity(parts as usize);
        for part in 1..=parts {
            let qtype =
                ["mcq", "long_answer", "short_answer", "calculate"][rng.range(0, 3) as usize];
            let question_id = match (shared, qn, part) {
                (Some(id), 1, 1) => id.clone(),
                _ => format!("{lesson_id}_{qn}_{part}_{}", rng.id(10)),
            };
            let mut item = Map::new();
            item.insert("question_part".into(), json!(part));
            item.insert("question_type".into(), json!(qtype));
            let words = rng.range(8, 30);
            item.insert("question_text".into(), json!(rng.words(words)));
            item.insert("markmax".into(), json!(rng.range(1, 6)));
            let words = rng.range(6, 24);
            item.insert("markscheme".into(), json!(rng.words(words)));
            item.insert("difficulty".into(), json!(rng.range(1, 8)));
            item.insert(
                "specification_point".into(),
                json!(format!(
                    "4.{}.{}",
                    unit["unitIndex"].as_u64().unwrap_or(0) + 1,
                    rng.range(1, 9)
                )),
            );
            item.insert("questionID".into(), json!(question_id));
            if qtype == "mcq" {
                let options: Vec<String> = (0..4).map(|_| rng.words(2)).collect();
                item.insert("options".into(), json!(options));
                match rng.range(0, 4) {
                    0 => {}
                    1 => {
                        item.insert(
                            "correct_answer_index".into(),
                            json!([rng.range(0, 3), rng.range(0, 3)]),
                        );
                    }
                    _ => {
                        item.insert("correct_answer_index".into(), json!(rng.range(0, 3)));
                    }
                }
            }
            if rng.chance(5) {
                item.insert(
                    "question_diagram".into(),
                    if rng.chance(50) {
                        json!("diagram.png")
                    } else {
                        diagram_object(rng)
                    },
                );
            }
            part_items.push(Value::Object(item));
            summary.practice_parts += 1;
        }
        items.push(json!({
            "question_number": qn,
            "question_stem": rng.words(12),
            "question_stem_diagram": stem_diagram,
            "items": part_items,
            "validation_comment": "generated",
            "validation_reason": "generated",
            "question_id": question_id,
        }));
    }
    json!({
        "exam_board": "AQA",
        "qualification": "GCSE",
        "subject": "Biology",
        "unit_index": unit["unitIndex"].as_u64().unwrap_or(0) + u64::from(c) * unit_count,
        "unit_title": unit["unitTitle"],
        "topic_index": topic["topicIndex"],
        "topic_title": topic["topicTitle"],
        "lesson_index": lesson["lessonIndex"],
        "lessonID": lesson_id,
        "lesson_title": lesson["lessonTitle"],
        "chunks_used": [{"chunk_index": 0, "chunk_title": lesson["lessonTitle"]}],
        "items": items,
        "original_lessonID": lesson["lessonID"],
    })
}

fn diagram_object(rng: &mut Rng) -> Value {
    json!({
        "required": true,
        "items": [{
            "description": rng.words(6),
            "method": "latex",
            "attempts": [{
                "attempt_number": 1, "latex_code": null, "success": true, "svg": null,
                "png_path": format!("diagrams/{}.png", rng.id(8)), "error_message": null,
                "retry_count": 0, "llm_rank": 1, "llm_feedback": "ok", "requires_intervention": false
            }],
            "final": {"png_path": format!("diagrams/{}.png", rng.id(8))}
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_writes_the_same_files_and_scale_one_keeps_the_real_counts() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        let sa = write_all(a.path(), 1, 7).expect("generate");
        let sb = write_all(b.path(), 1, 7).expect("generate");
        assert_eq!(sa, sb);
        for name in [
            "aqaGCSEBio_course.json",
            "aqaGCSEBio_exams.json",
            "aqaGCSEBio_practices.json",
            "user_data.json",
        ] {
            let x = std::fs::read(a.path().join(name)).expect("read");
            let y = std::fs::read(b.path().join(name)).expect("read");
            assert!(x == y, "{name} differs between two runs with one seed");
        }
        assert_eq!(
            (sa.units, sa.lessons, sa.exam_items, sa.attempts, sa.users),
            (8, 279, 64, 1061, 36)
        );
        assert_eq!(sa.practice_banks, 279);
        let other = tempfile::tempdir().expect("tempdir");
        let sc = write_all(other.path(), 1, 8).expect("generate");
        assert_ne!(sc.practice_parts, 0);
    }
}
