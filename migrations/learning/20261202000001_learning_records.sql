-- Learning records: users, curriculum, assessments (exam papers and practice banks), the
-- canonical items both share, and the users' attempts (docs/learning.md).
--
-- Expand/contract only (docs/architecture.md): a release must run beside the previous one, so
-- later migrations add nullable columns, tables and indexes (indexes on these tables once they
-- hold data: CREATE INDEX CONCURRENTLY in a `-- no-transaction` file of one statement), and
-- nothing is dropped while a running release uses it. The indexes below are created inline
-- because the tables are empty when this runs.
--
-- Keys: every table has a surrogate `id bigint` (narrow foreign keys and indexes at 100x scale);
-- the sources' stable identifiers are unique columns: subjects.subject_key ('aqaGCSEBio'),
-- lessons.lesson_key (lessonID 'aqaGCSEBio0.0.11'), papers.paper_key (paper_id),
-- exam_questions.question_key / practice_questions.question_key (the question group's
-- question_id), items.question_id (questionID, the key the three sources share),
-- users.firebase_uid.
--
-- Provenance, on every imported row: source_file (the file's base name), source_key (the row's
-- identity inside the file, e.g. the Firebase path of an attempt), first_seen (the run that
-- inserted it), last_seen (the last run that inserted or changed it), content_hash (SHA-256 of
-- the row's content as imported: a re-import updates a row only when it differs). Which run saw
-- a file last is in import_files.

CREATE TABLE learning.subjects (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject_key   text        NOT NULL UNIQUE,
    title         text,
    board         text,
    qualification text,
    source_file   text        NOT NULL,
    source_key    text        NOT NULL,
    first_seen    timestamptz NOT NULL,
    last_seen     timestamptz NOT NULL,
    content_hash  bytea       NOT NULL
);

CREATE TABLE learning.units (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject_id   bigint      NOT NULL REFERENCES learning.subjects (id),
    unit_index   integer     NOT NULL,
    title        text        NOT NULL,
    source_file  text        NOT NULL,
    source_key   text        NOT NULL,
    first_seen   timestamptz NOT NULL,
    last_seen    timestamptz NOT NULL,
    content_hash bytea       NOT NULL,
    -- The importer's conflict key; also a subject's units in order.
    UNIQUE (subject_id, unit_index)
);

CREATE TABLE learning.topics (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    unit_id      bigint      NOT NULL REFERENCES learning.units (id),
    topic_index  integer     NOT NULL,
    title        text        NOT NULL,
    source_file  text        NOT NULL,
    source_key   text        NOT NULL,
    first_seen   timestamptz NOT NULL,
    last_seen    timestamptz NOT NULL,
    content_hash bytea       NOT NULL,
    -- The importer's conflict key; also a unit's topics in order.
    UNIQUE (unit_id, topic_index)
);

CREATE TABLE learning.lessons (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic_id     bigint      NOT NULL REFERENCES learning.topics (id),
    lesson_index integer     NOT NULL,
    -- lessonID: GET /lessons/{id} and every lessonID reference resolve through this unique index.
    lesson_key   text        NOT NULL UNIQUE,
    title        text        NOT NULL,
    source_file  text        NOT NULL,
    source_key   text        NOT NULL,
    first_seen   timestamptz NOT NULL,
    last_seen    timestamptz NOT NULL,
    content_hash bytea       NOT NULL
);
-- A topic's lessons in order (and the foreign key's index).
CREATE INDEX lessons_topic ON learning.lessons (topic_id, lesson_index);

CREATE TABLE learning.paper_sets (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- '<subject_id>/<type>/<series>': the source has no id of its own for a set.
    set_key       text        NOT NULL UNIQUE,
    subject_id    bigint      NOT NULL REFERENCES learning.subjects (id),
    board         text        NOT NULL,
    qualification text        NOT NULL,
    subject_title text        NOT NULL,
    set_type      text        NOT NULL,
    series        text        NOT NULL,
    source_file   text        NOT NULL,
    source_key    text        NOT NULL,
    first_seen    timestamptz NOT NULL,
    last_seen     timestamptz NOT NULL,
    content_hash  bytea       NOT NULL
);

CREATE TABLE learning.papers (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- paper_id ('medlymockaqaGCSEBio_Sept_Mock1Higher'): GET /papers/{id}, attempts' paper context.
    paper_key    text        NOT NULL UNIQUE,
    paper_set_id bigint      NOT NULL REFERENCES learning.paper_sets (id),
    tier         text        NOT NULL,
    paper_number text        NOT NULL,
    source_file  text        NOT NULL,
    source_key   text        NOT NULL,
    first_seen   timestamptz NOT NULL,
    last_seen    timestamptz NOT NULL,
    content_hash bytea       NOT NULL
);
CREATE INDEX papers_set ON learning.papers (paper_set_id);

CREATE TABLE learning.exam_questions (
    id                 bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    question_key       text        NOT NULL UNIQUE,
    paper_id           bigint      NOT NULL REFERENCES learning.papers (id),
    question_number    integer     NOT NULL,
    stem               text        NOT NULL,
    -- null, a markdown string or a diagram-generation object: genuinely open.
    stem_diagram       jsonb,
    validation_comment text,
    validation_reason  text,
    source_file        text        NOT NULL,
    source_key         text        NOT NULL,
    first_seen         timestamptz NOT NULL,
    last_seen          timestamptz NOT NULL,
    content_hash       bytea       NOT NULL
);
-- GET /papers/{id}: the paper's questions in question order.
CREATE INDEX exam_questions_paper ON learning.exam_questions (paper_id, question_number);

-- The canonical item (a question part) by questionID, whichever source brought it first:
-- exams and practices both point at it, attempts reference it.
CREATE TABLE learning.items (
    id                  bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- questionID: GET /items/{questionID}, and the key the three sources are reconciled on.
    question_id         text        NOT NULL UNIQUE,
    question_type       text        NOT NULL,
    question_text       text        NOT NULL,
    markmax             integer     NOT NULL,
    markscheme          text        NOT NULL,
    -- Missing on some exam items.
    difficulty          integer,
    -- MCQ options (also present on a few long-answer items in the real file).
    options             text[],
    -- correct_answer_index: an integer or a list of integers (practices), on some MCQs only.
    correct_answer      jsonb,
    specification_point text,
    -- The practice item's own diagram (string or object).
    diagram             jsonb,
    source_file         text        NOT NULL,
    source_key          text        NOT NULL,
    first_seen          timestamptz NOT NULL,
    last_seen           timestamptz NOT NULL,
    content_hash        bytea       NOT NULL
);

-- An item's place in an exam question (its part number).
CREATE TABLE learning.exam_parts (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    exam_question_id bigint      NOT NULL REFERENCES learning.exam_questions (id),
    item_id          bigint      NOT NULL REFERENCES learning.items (id),
    question_part    integer     NOT NULL,
    source_file      text        NOT NULL,
    source_key       text        NOT NULL,
    first_seen       timestamptz NOT NULL,
    last_seen        timestamptz NOT NULL,
    content_hash     bytea       NOT NULL,
    -- The importer's conflict key; its prefix also serves a question's parts.
    UNIQUE (exam_question_id, item_id)
);
-- GET /papers/{id}: a question's parts in part order.
CREATE INDEX exam_parts_question ON learning.exam_parts (exam_question_id, question_part);
-- GET /items/{questionID}: the item's appearances in papers.
CREATE INDEX exam_parts_item ON learning.exam_parts (item_id);

-- The lessonIDs an exam item declares. lesson_key is kept as given; lesson_id is filled when the
-- course knows the lesson (at insert, and again after every import: a course imported later
-- resolves links recorded earlier). NULL lesson_id = unresolved, never dropped.
CREATE TABLE learning.item_lessons (
    item_id      bigint      NOT NULL REFERENCES learning.items (id),
    lesson_key   text        NOT NULL,
    lesson_id    bigint      REFERENCES learning.lessons (id),
    source_file  text        NOT NULL,
    source_key   text        NOT NULL,
    first_seen   timestamptz NOT NULL,
    last_seen    timestamptz NOT NULL,
    content_hash bytea       NOT NULL,
    PRIMARY KEY (item_id, lesson_key)
);
-- GET /lessons/{id}: the exam items linked to a lesson; activity filtered by lesson.
CREATE INDEX item_lessons_lesson ON learning.item_lessons (lesson_key, item_id);
-- Unresolved links only (small): the importer resolves them once the course has the lesson.
CREATE INDEX item_lessons_unresolved ON learning.item_lessons (lesson_key) WHERE lesson_id IS NULL;

-- A lesson-aligned practice bank (one per lessonID in the source).
CREATE TABLE learning.practice_banks (
    id                  bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    lesson_key          text        NOT NULL UNIQUE,
    -- The course's lesson, when it knows it (resolved like item_lessons.lesson_id).
    lesson_id           bigint      REFERENCES learning.lessons (id),
    original_lesson_key text,
    exam_board          text,
    qualification       text,
    subject_title       text,
    unit_index          integer,
    unit_title          text,
    topic_index         integer,
    topic_title         text,
    lesson_index        integer,
    lesson_title        text,
    -- [{chunk_index, chunk_title}]: source material the bank was written from (metadata only).
    chunks_used         jsonb,
    source_file         text        NOT NULL,
    source_key          text        NOT NULL,
    first_seen          timestamptz NOT NULL,
    last_seen           timestamptz NOT NULL,
    content_hash        bytea       NOT NULL
);

CREATE TABLE learning.practice_questions (
    id                 bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    question_key       text        NOT NULL UNIQUE,
    bank_id            bigint      NOT NULL REFERENCES learning.practice_banks (id),
    question_number    integer     NOT NULL,
    stem               text        NOT NULL,
    stem_diagram       jsonb,
    validation_comment text,
    validation_reason  text,
    source_file        text        NOT NULL,
    source_key         text        NOT NULL,
    first_seen         timestamptz NOT NULL,
    last_seen          timestamptz NOT NULL,
    content_hash       bytea       NOT NULL
);
-- GET /lessons/{id}: the bank's questions in order.
CREATE INDEX practice_questions_bank ON learning.practice_questions (bank_id, question_number);

CREATE TABLE learning.practice_parts (
    id                   bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    practice_question_id bigint      NOT NULL REFERENCES learning.practice_questions (id),
    item_id              bigint      NOT NULL REFERENCES learning.items (id),
    question_part        integer     NOT NULL,
    source_file          text        NOT NULL,
    source_key           text        NOT NULL,
    first_seen           timestamptz NOT NULL,
    last_seen            timestamptz NOT NULL,
    content_hash         bytea       NOT NULL,
    -- The importer's conflict key; its prefix also serves a question's parts (part order is a
    -- sort of a handful of rows).
    UNIQUE (practice_question_id, item_id)
);
-- GET /items/{questionID}: the item's appearances in practice banks.
CREATE INDEX practice_parts_item ON learning.practice_parts (item_id);

CREATE TABLE learning.users (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The Firebase uid: the stable external id (GET /users/{id}).
    firebase_uid text        NOT NULL UNIQUE,
    -- Profile fields the API writes (PATCH /users/{id}); the import never touches them.
    name         text,
    metadata     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    updated_at   timestamptz,
    source_file  text        NOT NULL,
    source_key   text        NOT NULL,
    first_seen   timestamptz NOT NULL,
    last_seen    timestamptz NOT NULL,
    content_hash bytea       NOT NULL
);

-- One user's interaction with one question in one paper context (a Firebase target).
CREATE TABLE learning.attempts (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id          bigint      NOT NULL REFERENCES learning.users (id),
    -- The Firebase path's context, kept as given (the key of the attempt).
    subject_key      text        NOT NULL,
    paper_key        text        NOT NULL,
    question_id      text        NOT NULL,
    -- The paper and item the path names, when known. NULL item_id = an orphan attempt (its
    -- questionID matches no item): kept, counted in the report, resolved when the item arrives.
    paper_id         bigint      REFERENCES learning.papers (id),
    item_id          bigint      REFERENCES learning.items (id),
    created_at       timestamptz NOT NULL,
    -- updatedAt when the source has it, else createdAt (source_updated says which): the
    -- activity feed's order.
    updated_at       timestamptz NOT NULL,
    source_updated   boolean     NOT NULL,
    is_marked        boolean     NOT NULL,
    user_mark        integer,
    user_answer      text,
    annotated_answer text,
    -- markingTable: a markdown table string in the source; JSONB keeps whatever shape it has.
    marking_table    jsonb,
    options          text[],
    -- {maths, paths, textboxes}: the drawing canvas, genuinely open.
    canvas           jsonb       NOT NULL,
    source_file      text        NOT NULL,
    source_key       text        NOT NULL,
    first_seen       timestamptz NOT NULL,
    last_seen        timestamptz NOT NULL,
    content_hash     bytea       NOT NULL,
    -- The importer's conflict key (the Firebase path's parts), and (user_id, ...) lookups of one
    -- user's attempt at a question.
    UNIQUE (user_id, subject_key, paper_key, question_id)
);
-- GET /users/{id}/activity: a user's attempts newest first, keyset (updated_at, id) descending;
-- the subject/paper/lesson filters apply to this one user's rows.
CREATE INDEX attempts_user_activity ON learning.attempts (user_id, updated_at DESC, id DESC);
-- GET /items/{questionID}: attempt count per item.
CREATE INDEX attempts_item ON learning.attempts (item_id);
-- Orphans only (small): the importer resolves them when their item arrives.
CREATE INDEX attempts_orphan ON learning.attempts (question_id) WHERE item_id IS NULL;
CREATE INDEX attempts_unknown_paper ON learning.attempts (paper_key) WHERE paper_id IS NULL;

-- One row per source file the importer has read: when, its SHA-256, and the last report.
CREATE TABLE learning.import_files (
    source_file text        PRIMARY KEY,
    sha256      bytea       NOT NULL,
    first_seen  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL,
    last_report jsonb       NOT NULL
);
