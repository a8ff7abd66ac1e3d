//! The row each source record becomes, or why it is skipped.
//!
//! A record is one top-level element of a source file (a course unit, an exam paper set, a
//! practice bank) or one Firebase target (an attempt). Interpreting it never fails the file:
//! whatever is wrong skips the smallest enclosing thing (an item, a question, a bank) with a
//! reason, and whatever is unusual but usable is kept and counted as an edge case. Only broken
//! JSON stops a file (crate::import).

// Every function here reads one object `o` with bounds `b` into a tally `t`: short names on purpose.
#![allow(clippy::many_single_char_names)]

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{Tally, keys, time};

/// Per-interpretation bounds (from [`crate::settings::ImportLimits`]).
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub max_text_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectRow {
    pub subject_key: String,
    pub title: Option<String>,
    pub board: Option<String>,
    pub qualification: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitRow {
    pub subject_key: String,
    pub unit_index: i32,
    pub title: String,
    pub source_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRow {
    pub subject_key: String,
    pub unit_index: i32,
    pub topic_index: i32,
    pub title: String,
    pub source_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LessonRow {
    pub subject_key: String,
    pub unit_index: i32,
    pub topic_index: i32,
    pub lesson_index: i32,
    pub lesson_key: String,
    pub title: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaperSetRow {
    pub set_key: String,
    pub subject_key: String,
    pub board: String,
    pub qualification: String,
    pub subject_title: String,
    pub set_type: String,
    pub series: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaperRow {
    pub paper_key: String,
    pub set_key: String,
    pub tier: String,
    pub paper_number: String,
}

/// An exam or a practice question (the group of parts); `parent_key` is the paper_id or the
/// bank's lessonID.
#[derive(Debug, Clone, PartialEq)]
pub struct QuestionRow {
    pub question_key: String,
    pub parent_key: String,
    pub question_number: i32,
    pub stem: String,
    pub stem_diagram: Option<Value>,
    pub validation_comment: Option<String>,
    pub validation_reason: Option<String>,
    pub source_key: String,
}

/// The canonical item content, keyed by questionID.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemRow {
    pub question_id: String,
    pub question_type: String,
    pub question_text: String,
    pub markmax: i32,
    pub markscheme: String,
    pub difficulty: Option<i32>,
    pub options: Option<Vec<String>>,
    pub correct_answer: Option<Value>,
    pub specification_point: Option<String>,
    pub diagram: Option<Value>,
    pub source_key: String,
}

/// An item's place in a question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRow {
    pub question_key: String,
    pub question_id: String,
    pub question_part: i32,
    pub source_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemLessonRow {
    pub question_id: String,
    pub lesson_key: String,
    pub source_key: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BankRow {
    pub lesson_key: String,
    pub original_lesson_key: Option<String>,
    pub exam_board: Option<String>,
    pub qualification: Option<String>,
    pub subject_title: Option<String>,
    pub unit_index: Option<i32>,
    pub unit_title: Option<String>,
    pub topic_index: Option<i32>,
    pub topic_title: Option<String>,
    pub lesson_index: Option<i32>,
    pub lesson_title: Option<String>,
    pub chunks_used: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRow {
    pub uid: String,
    pub subject_key: String,
    pub paper_key: String,
    pub question_id: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub source_updated: bool,
    pub is_marked: bool,
    pub user_mark: Option<i32>,
    pub user_answer: Option<String>,
    pub annotated_answer: Option<String>,
    pub marking_table: Option<Value>,
    pub options: Option<Vec<String>>,
    pub canvas: Value,
    pub source_key: String,
}

/// Entity names as the report spells them.
pub mod entity {
    pub const SUBJECTS: &str = "subjects";
    pub const UNITS: &str = "units";
    pub const TOPICS: &str = "topics";
    pub const LESSONS: &str = "lessons";
    pub const PAPER_SETS: &str = "paper_sets";
    pub const PAPERS: &str = "papers";
    pub const EXAM_QUESTIONS: &str = "exam_questions";
    pub const ITEMS: &str = "items";
    pub const EXAM_PARTS: &str = "exam_parts";
    pub const ITEM_LESSONS: &str = "item_lessons";
    pub const PRACTICE_BANKS: &str = "practice_banks";
    pub const PRACTICE_QUESTIONS: &str = "practice_questions";
    pub const PRACTICE_PARTS: &str = "practice_parts";
    pub const USERS: &str = "users";
    pub const ATTEMPTS: &str = "attempts";
}

/// Reading one JSON object's fields, with the reasons a report shows.
struct Obj<'a> {
    map: &'a Map<String, Value>,
    bounds: Bounds,
}

type Field<T> = Result<T, String>;

impl<'a> Obj<'a> {
    fn new(v: &'a Value, what: &str, bounds: Bounds) -> Field<Self> {
        match v {
            Value::Object(map) => Ok(Self { map, bounds }),
            _ => Err(format!("{what} is not an object")),
        }
    }

    /// Absent and `null` are both "missing".
    fn get(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    fn opt_str(&self, name: &str) -> Field<Option<&'a str>> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => {
                if s.len() > self.bounds.max_text_bytes {
                    Err(format!(
                        "{name} longer than {} bytes",
                        self.bounds.max_text_bytes
                    ))
                } else if s.contains('\0') {
                    Err(format!("{name} contains a NUL character"))
                } else {
                    Ok(Some(s))
                }
            }
            Some(_) => Err(format!("{name} is not a string")),
        }
    }

    fn str(&self, name: &str) -> Field<&'a str> {
        self.opt_str(name)?.ok_or_else(|| format!("missing {name}"))
    }

    /// An external id ([`keys::valid_id`]).
    fn id(&self, name: &str) -> Field<&'a str> {
        let s = self.str(name)?;
        if keys::valid_id(s) {
            Ok(s)
        } else {
            Err(format!("{name} is not a valid id"))
        }
    }

    fn opt_int(&self, name: &str) -> Field<Option<i32>> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| format!("{name} is not an integer")),
        }
    }

    fn int(&self, name: &str) -> Field<i32> {
        self.opt_int(name)?.ok_or_else(|| format!("missing {name}"))
    }

    fn opt_bool(&self, name: &str) -> Field<Option<bool>> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(format!("{name} is not a boolean")),
        }
    }

    /// An array field; missing counts as empty (the caller counts empties as edge cases).
    fn array(&self, name: &str) -> Field<&'a [Value]> {
        match self.get(name) {
            None => Ok(&[]),
            Some(Value::Array(a)) => Ok(a),
            Some(_) => Err(format!("{name} is not an array")),
        }
    }

    fn opt_strings(&self, name: &str) -> Field<Option<Vec<String>>> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        let Value::Array(a) = v else {
            return Err(format!("{name} is not an array"));
        };
        a.iter()
            .map(|x| match x {
                Value::String(s) if s.len() <= self.bounds.max_text_bytes && !s.contains('\0') => {
                    Ok(s.clone())
                }
                _ => Err(format!("{name} holds something other than short strings")),
            })
            .collect::<Field<Vec<_>>>()
            .map(Some)
    }

    /// An open-shaped JSON value (a diagram, a canvas), refused only when PostgreSQL's jsonb
    /// could not store it (a NUL character).
    fn opt_json(&self, name: &str) -> Field<Option<Value>> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if has_nul(v) => Err(format!("{name} contains a NUL character")),
            Some(v) => Ok(Some(v.clone())),
        }
    }
}

fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(m) => m.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

fn diagram_edge(t: &mut Tally, v: Option<&Value>, at: &str) {
    t.edge(
        match v {
            None => "stem_diagram_null",
            Some(Value::String(_)) => "stem_diagram_string",
            Some(_) => "stem_diagram_object",
        },
        at,
    );
}

/// The subject of a course file: its name's prefix (`aqaGCSEBio_course.json` → `aqaGCSEBio`);
/// the course file itself names no subject.
pub fn course_subject(file_name: &str) -> Option<&str> {
    let subject = file_name.strip_suffix("_course.json")?;
    keys::valid_id(subject).then_some(subject)
}

#[derive(Debug, Default)]
pub struct CourseRows {
    pub units: Vec<UnitRow>,
    pub topics: Vec<TopicRow>,
    pub lessons: Vec<LessonRow>,
}

/// One unit of a course file (`index`: its position, for the report).
pub fn course_unit(subject: &str, index: u64, v: &Value, b: Bounds, t: &mut Tally) -> CourseRows {
    use entity::{LESSONS, TOPICS, UNITS};
    let mut rows = CourseRows::default();
    let at = format!("[{index}]");
    let unit = match Obj::new(v, "unit", b)
        .and_then(|o| Ok((o.int("unitIndex")?, o.str("unitTitle")?, o.array("topics")?)))
    {
        Ok(u) => u,
        Err(reason) => {
            t.skip(UNITS, reason, &at);
            return rows;
        }
    };
    let (unit_index, unit_title, topics) = unit;
    let unit_key = format!("{subject}/unit/{unit_index}");
    if topics.is_empty() {
        t.edge("unit_without_topics", &unit_key);
    }
    rows.units.push(UnitRow {
        subject_key: subject.to_owned(),
        unit_index,
        title: unit_title.to_owned(),
        source_key: unit_key.clone(),
    });
    for (ti, topic) in topics.iter().enumerate() {
        let at = format!("{unit_key}/topics[{ti}]");
        let topic = match Obj::new(topic, "topic", b).and_then(|o| {
            Ok((
                o.int("topicIndex")?,
                o.str("topicTitle")?,
                o.array("lessons")?,
            ))
        }) {
            Ok(x) => x,
            Err(reason) => {
                t.skip(TOPICS, reason, &at);
                continue;
            }
        };
        let (topic_index, topic_title, lessons) = topic;
        let topic_key = format!("{unit_key}/topic/{topic_index}");
        if lessons.is_empty() {
            t.edge("topic_without_lessons", &topic_key);
        }
        rows.topics.push(TopicRow {
            subject_key: subject.to_owned(),
            unit_index,
            topic_index,
            title: topic_title.to_owned(),
            source_key: topic_key.clone(),
        });
        for (li, lesson) in lessons.iter().enumerate() {
            let at = format!("{topic_key}/lessons[{li}]");
            match Obj::new(lesson, "lesson", b).and_then(|o| {
                Ok((
                    o.int("lessonIndex")?,
                    o.id("lessonID")?,
                    o.str("lessonTitle")?,
                ))
            }) {
                Ok((lesson_index, lesson_key, title)) => rows.lessons.push(LessonRow {
                    subject_key: subject.to_owned(),
                    unit_index,
                    topic_index,
                    lesson_index,
                    lesson_key: lesson_key.to_owned(),
                    title: title.to_owned(),
                }),
                Err(reason) => t.skip(LESSONS, reason, &at),
            }
        }
    }
    rows
}

#[derive(Debug, Default)]
pub struct ExamRows {
    pub subject: Option<SubjectRow>,
    pub paper_set: Option<PaperSetRow>,
    pub papers: Vec<PaperRow>,
    pub questions: Vec<QuestionRow>,
    pub items: Vec<ItemRow>,
    pub parts: Vec<PartRow>,
    pub item_lessons: Vec<ItemLessonRow>,
}

/// One paper set of an exams file.
pub fn exam_set(index: u64, v: &Value, b: Bounds, t: &mut Tally) -> ExamRows {
    use entity::{EXAM_QUESTIONS, PAPER_SETS, PAPERS};
    let mut rows = ExamRows::default();
    let at = format!("[{index}]");
    let set = Obj::new(v, "paper set", b).and_then(|o| {
        Ok((
            o.id("subject_id")?,
            o.str("subject_title")?,
            o.str("board_title")?,
            o.str("qualification")?,
            o.str("type")?,
            o.str("series")?,
            o.array("papers")?,
        ))
    });
    let (subject_key, subject_title, board, qualification, set_type, series, papers) = match set {
        Ok(s) => s,
        Err(reason) => {
            t.skip(PAPER_SETS, reason, &at);
            return rows;
        }
    };
    let set_key = format!("{subject_key}/{set_type}/{series}");
    if papers.is_empty() {
        t.edge("paper_set_without_papers", &set_key);
    }
    rows.subject = Some(SubjectRow {
        subject_key: subject_key.to_owned(),
        title: Some(subject_title.to_owned()),
        board: Some(board.to_owned()),
        qualification: Some(qualification.to_owned()),
    });
    rows.paper_set = Some(PaperSetRow {
        set_key: set_key.clone(),
        subject_key: subject_key.to_owned(),
        board: board.to_owned(),
        qualification: qualification.to_owned(),
        subject_title: subject_title.to_owned(),
        set_type: set_type.to_owned(),
        series: series.to_owned(),
    });
    for (pi, paper) in papers.iter().enumerate() {
        let at = format!("{set_key}/papers[{pi}]");
        let p = Obj::new(paper, "paper", b).and_then(|o| {
            Ok((
                o.id("paper_id")?,
                o.str("tier")?,
                o.str("paper")?,
                o.array("questions")?,
            ))
        });
        let (paper_key, tier, number, questions) = match p {
            Ok(p) => p,
            Err(reason) => {
                t.skip(PAPERS, reason, &at);
                continue;
            }
        };
        if questions.is_empty() {
            t.edge("paper_without_questions", paper_key);
        }
        rows.papers.push(PaperRow {
            paper_key: paper_key.to_owned(),
            set_key: set_key.clone(),
            tier: tier.to_owned(),
            paper_number: number.to_owned(),
        });
        for (qi, q) in questions.iter().enumerate() {
            let at = format!("{paper_key}/questions[{qi}]");
            match question(paper_key, q, b, t, &at, false) {
                Ok(parsed) => {
                    let Parsed {
                        question,
                        items,
                        parts,
                        item_lessons,
                    } = parsed;
                    rows.questions.push(question);
                    rows.items.extend(items);
                    rows.parts.extend(parts);
                    rows.item_lessons.extend(item_lessons);
                }
                Err(reason) => t.skip(EXAM_QUESTIONS, reason, &at),
            }
        }
    }
    rows
}

struct Parsed {
    question: QuestionRow,
    items: Vec<ItemRow>,
    parts: Vec<PartRow>,
    item_lessons: Vec<ItemLessonRow>,
}

/// A question (exam or practice) and its items; an item that cannot be read is skipped alone.
fn question(
    parent_key: &str,
    v: &Value,
    b: Bounds,
    t: &mut Tally,
    at: &str,
    practice: bool,
) -> Field<Parsed> {
    use entity::ITEMS;
    let o = Obj::new(v, "question", b)?;
    let question_key = o.id("question_id")?;
    let diagram = o.opt_json("question_stem_diagram")?;
    let question = QuestionRow {
        question_key: question_key.to_owned(),
        parent_key: parent_key.to_owned(),
        question_number: o.int("question_number")?,
        stem: o.str("question_stem")?.to_owned(),
        stem_diagram: diagram,
        validation_comment: o.opt_str("validation_comment")?.map(str::to_owned),
        validation_reason: o.opt_str("validation_reason")?.map(str::to_owned),
        source_key: format!("{parent_key}/{question_key}"),
    };
    diagram_edge(t, question.stem_diagram.as_ref(), &question.source_key);
    let raw_items = o.array("items")?;
    if raw_items.is_empty() {
        t.edge("question_without_items", &question.source_key);
    }
    let mut parsed = Parsed {
        question,
        items: Vec::new(),
        parts: Vec::new(),
        item_lessons: Vec::new(),
    };
    for (ii, item) in raw_items.iter().enumerate() {
        let at = format!("{at}/items[{ii}]");
        match self::item(&parsed.question.source_key, item, b, t, &at, practice) {
            Ok((row, part, lessons)) => {
                parsed.items.push(row);
                parsed.parts.push(PartRow {
                    question_key: question_key.to_owned(),
                    question_id: part.0,
                    question_part: part.1,
                    source_key: part.2,
                });
                parsed.item_lessons.extend(lessons);
            }
            Err(reason) => t.skip(ITEMS, reason, &at),
        }
    }
    Ok(parsed)
}

type ItemParts = (ItemRow, (String, i32, String), Vec<ItemLessonRow>);

fn item(
    question_source: &str,
    v: &Value,
    b: Bounds,
    t: &mut Tally,
    at: &str,
    practice: bool,
) -> Field<ItemParts> {
    let o = Obj::new(v, "item", b)?;
    let question_id = match o.get("questionID") {
        None => return Err("missing questionID".into()),
        Some(_) => o.id("questionID")?,
    };
    let source_key = format!("{question_source}/{question_id}");
    let question_type = o.str("question_type")?;
    let difficulty = o.opt_int("difficulty")?;
    if difficulty.is_none() {
        t.edge("difficulty_missing", &source_key);
    }
    let options = o.opt_strings("options")?;
    let is_mcq = question_type == "mcq";
    if options.is_some() && !is_mcq {
        t.edge("options_on_non_mcq_item", &source_key);
    }
    let correct_answer = match o.get("correct_answer_index") {
        None => None,
        Some(v @ Value::Number(_)) if v.is_i64() => Some(v.clone()),
        Some(Value::Array(a)) if a.iter().all(Value::is_i64) && a.len() <= 64 => {
            Some(Value::Array(a.clone()))
        }
        Some(_) => return Err("correct_answer_index is not an integer or a list of them".into()),
    };
    if is_mcq && correct_answer.is_none() {
        t.edge("mcq_without_correct_answer_index", &source_key);
    }
    let lesson_ids = if practice {
        Vec::new()
    } else {
        let ids = o.array("lessonIDs")?;
        if ids.is_empty() {
            t.edge("item_without_lesson_ids", &source_key);
        }
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            match id.as_str().filter(|s| keys::valid_id(s)) {
                Some(lesson_key) => out.push(ItemLessonRow {
                    question_id: question_id.to_owned(),
                    lesson_key: lesson_key.to_owned(),
                    source_key: format!("{source_key}/{lesson_key}"),
                }),
                None => t.skip(entity::ITEM_LESSONS, "lessonID is not a valid id", at),
            }
        }
        out
    };
    let part = o.int("question_part")?;
    let row = ItemRow {
        question_id: question_id.to_owned(),
        question_type: question_type.to_owned(),
        question_text: o.str("question_text")?.to_owned(),
        markmax: o.int("markmax")?,
        markscheme: o.str("markscheme")?.to_owned(),
        difficulty,
        options,
        correct_answer,
        specification_point: o.opt_str("specification_point")?.map(str::to_owned),
        diagram: o.opt_json("question_diagram")?,
        source_key: source_key.clone(),
    };
    Ok((row, (question_id.to_owned(), part, source_key), lesson_ids))
}

#[derive(Debug, Default)]
pub struct PracticeRows {
    pub bank: Option<BankRow>,
    pub questions: Vec<QuestionRow>,
    pub items: Vec<ItemRow>,
    pub parts: Vec<PartRow>,
}

/// One lesson-aligned bank of a practices file (aqaGCSEBio_practices_schema.json).
pub fn practice_bank(index: u64, v: &Value, b: Bounds, t: &mut Tally) -> PracticeRows {
    use entity::{PRACTICE_BANKS, PRACTICE_QUESTIONS};
    let mut rows = PracticeRows::default();
    let at = format!("[{index}]");
    let bank = Obj::new(v, "practice bank", b).and_then(|o| {
        Ok((
            BankRow {
                lesson_key: o.id("lessonID")?.to_owned(),
                original_lesson_key: o.opt_str("original_lessonID")?.map(str::to_owned),
                exam_board: o.opt_str("exam_board")?.map(str::to_owned),
                qualification: o.opt_str("qualification")?.map(str::to_owned),
                subject_title: o.opt_str("subject")?.map(str::to_owned),
                unit_index: o.opt_int("unit_index")?,
                unit_title: o.opt_str("unit_title")?.map(str::to_owned),
                topic_index: o.opt_int("topic_index")?,
                topic_title: o.opt_str("topic_title")?.map(str::to_owned),
                lesson_index: o.opt_int("lesson_index")?,
                lesson_title: o.opt_str("lesson_title")?.map(str::to_owned),
                chunks_used: o.opt_json("chunks_used")?,
            },
            o.array("items")?,
        ))
    });
    let (bank, questions) = match bank {
        Ok(x) => x,
        Err(reason) => {
            t.skip(PRACTICE_BANKS, reason, &at);
            return rows;
        }
    };
    if questions.is_empty() {
        t.edge("bank_without_questions", &bank.lesson_key);
    }
    for (qi, q) in questions.iter().enumerate() {
        let at = format!("{}/items[{qi}]", bank.lesson_key);
        match question(&bank.lesson_key, q, b, t, &at, true) {
            Ok(p) => {
                rows.questions.push(p.question);
                rows.items.extend(p.items);
                rows.parts.extend(p.parts);
            }
            Err(reason) => t.skip(PRACTICE_QUESTIONS, reason, &at),
        }
    }
    rows.bank = Some(bank);
    rows
}

/// One Firebase target of user_data.json: `key` → the attempt object. `None` when skipped (the
/// reason is in `t`).
pub fn attempt(key: &str, v: &Value, b: Bounds, t: &mut Tally) -> Option<AttemptRow> {
    use entity::ATTEMPTS;
    let example: String = key.chars().take(keys::MAX_KEY_BYTES).collect();
    let k = match keys::parse_target(key) {
        Ok(k) => k,
        Err(e) => {
            t.skip(ATTEMPTS, format!("unparseable key: {e}"), &example);
            return None;
        }
    };
    match attempt_fields(&k, key, v, b, t) {
        Ok(row) => Some(row),
        Err(reason) => {
            t.skip(ATTEMPTS, reason, key);
            None
        }
    }
}

fn attempt_fields(
    k: &keys::TargetKey<'_>,
    key: &str,
    v: &Value,
    b: Bounds,
    t: &mut Tally,
) -> Field<AttemptRow> {
    let o = Obj::new(v, "attempt", b)?;
    // The path is the attempt's identity; the body's copies of it are checked, not trusted.
    match o.opt_str("questionID") {
        Ok(None) => t.edge("question_id_missing_in_body", key),
        Ok(Some(q)) if q != k.question_id => t.edge("question_id_differs_from_key", key),
        Ok(Some(_)) => {}
        Err(_) => t.edge("question_id_unreadable_in_body", key),
    }
    match o.opt_str("userID") {
        Ok(None) => t.edge("user_id_missing_in_body", key),
        Ok(Some(u)) if u != k.uid => t.edge("user_id_differs_from_key", key),
        _ => {}
    }
    let created = o.opt_str("createdAt")?.ok_or("missing createdAt")?;
    let (created_at, form) = time::parse(created).ok_or("malformed createdAt")?;
    count_form(t, form, key);
    let (updated_at, source_updated) = match o.opt_str("updatedAt")? {
        None => {
            t.edge("updated_at_missing", key);
            (created_at, false)
        }
        Some(s) => match time::parse(s) {
            Some((u, form)) => {
                count_form(t, form, key);
                (u, true)
            }
            None => {
                // The attempt itself is sound; only its last-change time is unusable.
                t.edge("updated_at_malformed_ignored", key);
                (created_at, false)
            }
        },
    };
    let is_marked = match o.opt_bool("isMarked")? {
        Some(m) => m,
        None => {
            t.edge("is_marked_missing", key);
            false
        }
    };
    let user_mark = o.opt_int("userMark")?;
    if user_mark.is_some() && !is_marked {
        t.edge("user_mark_while_not_marked", key);
    }
    let user_answer = o.opt_str("userAnswer")?.map(str::to_owned);
    if user_answer.is_none() {
        t.edge("user_answer_missing", key);
    }
    let annotated_answer = o.opt_str("annotatedAnswer")?.map(str::to_owned);
    if annotated_answer.is_none() {
        t.edge("annotated_answer_missing", key);
    }
    let marking_table = o.opt_json("markingTable")?;
    if marking_table.is_none() {
        t.edge("marking_table_missing", key);
    }
    let canvas = match o.opt_json("canvas")? {
        Some(c @ Value::Object(_)) => c,
        Some(_) => return Err("canvas is not an object".into()),
        None => {
            t.edge("canvas_missing", key);
            Value::Object(Map::new())
        }
    };
    Ok(AttemptRow {
        uid: k.uid.to_owned(),
        subject_key: k.subject.to_owned(),
        paper_key: k.paper.to_owned(),
        question_id: k.question_id.to_owned(),
        created_at,
        updated_at,
        source_updated,
        is_marked,
        user_mark,
        user_answer,
        annotated_answer,
        marking_table,
        options: o.opt_strings("options")?,
        canvas,
        source_key: key.to_owned(),
    })
}

fn count_form(t: &mut Tally, form: time::Form, key: &str) {
    t.edge(
        match form {
            time::Form::Zulu => "timestamp_ending_z",
            time::Form::Offset => "timestamp_with_offset",
        },
        key,
    );
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const B: Bounds = Bounds {
        max_text_bytes: 1000,
    };
    const KEY: &str = "users/u1/subjectsWeb/s/mocks/p/questions/q1";

    #[test]
    fn an_attempt_without_created_at_or_with_a_bad_one_is_skipped_with_the_reason() {
        let mut t = Tally::default();
        assert!(attempt(KEY, &json!({"canvas": {}}), B, &mut t).is_none());
        assert!(attempt(KEY, &json!({"createdAt": "soon"}), B, &mut t).is_none());
        assert_eq!(t.skipped["attempts"]["missing createdAt"].count, 1);
        assert_eq!(t.skipped["attempts"]["malformed createdAt"].count, 1);
    }

    #[test]
    fn an_attempt_keeps_the_key_as_identity_and_counts_what_is_odd() {
        let mut t = Tally::default();
        let row = attempt(
            KEY,
            &json!({"createdAt": "2025-09-15T07:53:09.441000+00:00", "updatedAt": "nope",
                     "isMarked": false, "userMark": 1, "questionID": "other",
                     "canvas": {"maths": [], "paths": [], "textboxes": []}}),
            B,
            &mut t,
        )
        .expect("kept");
        assert_eq!(row.question_id, "q1");
        assert_eq!(row.updated_at, row.created_at);
        assert!(!row.source_updated);
        for edge in [
            "question_id_differs_from_key",
            "updated_at_malformed_ignored",
            "user_mark_while_not_marked",
            "user_answer_missing",
            "timestamp_with_offset",
        ] {
            assert_eq!(t.edge_cases[edge].count, 1, "{edge}");
        }
    }

    #[test]
    fn an_item_without_question_id_is_skipped_alone() {
        let mut t = Tally::default();
        let set = json!({"subject_id": "s", "subject_title": "S", "board_title": "b",
            "qualification": "q", "type": "t", "series": "x", "papers": [{"paper_id": "p",
            "tier": "H", "paper": "1", "questions": [{"question_id": "g", "question_number": 1,
            "question_stem": "stem", "question_stem_diagram": null, "items": [
                {"question_part": 1, "question_type": "mcq", "question_text": "a", "markmax": 1,
                 "markscheme": "m", "lessonIDs": [], "options": ["x"]},
                {"question_part": 2, "question_type": "long_answer", "question_text": "b",
                 "markmax": 1, "markscheme": "m", "lessonIDs": ["l1"], "questionID": "q2",
                 "options": ["x"]}]}]}]});
        let rows = exam_set(0, &set, B, &mut t);
        assert_eq!(rows.items.len(), 1);
        assert_eq!(rows.parts.len(), 1);
        assert_eq!(rows.item_lessons.len(), 1);
        assert_eq!(t.skipped["items"]["missing questionID"].count, 1);
        assert_eq!(t.edge_cases["options_on_non_mcq_item"].count, 1);
        assert_eq!(t.edge_cases["difficulty_missing"].count, 1);
        assert_eq!(t.edge_cases["stem_diagram_null"].count, 1);
    }

    #[test]
    fn course_subject_comes_from_the_file_name() {
        assert_eq!(course_subject("aqaGCSEBio_course.json"), Some("aqaGCSEBio"));
        assert_eq!(course_subject("course.json"), None);
    }
}
