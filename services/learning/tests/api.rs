//! The learning API through HTTP against a real PostgreSQL with the real files imported
//! (each test its own database): status codes, problem+json naming the field, pagination
//! bounds and a cursor walk without duplicates or gaps, the order of a paper's items, lessons
//! and items against the database, JSON Merge Patch semantics, and bad input that stores
//! nothing. tests/auth.rs covers who may call what.

mod common;

use std::collections::HashSet;

use common::{Body, H, ITEM, LESSON, ME, PAPER, harness, harness_generated};
use kit::testing::bearer;
use learning::api::SCOPE_ADMIN;
use reqwest::Method;
use serde_json::{Value, json};

fn admin() -> String {
    bearer("admin", &[SCOPE_ADMIN])
}

fn me() -> String {
    bearer(ME, &[])
}

/// The problem's status, content type and the fields it names.
async fn problem(res: reqwest::Response) -> (u16, Vec<String>, Value) {
    let status = res.status().as_u16();
    let ct = res.headers()["content-type"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(ct, "application/problem+json", "status {status}");
    let p: Value = res.json().await.expect("problem body");
    let fields = p["errors"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(|f| f["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    (status, fields, p)
}

#[tokio::test]
async fn the_profile_matches_the_import() {
    let h = harness().await;
    let (status, v) = h.get(&format!("/learning/v1/users/{ME}"), &me()).await;
    assert_eq!(status, 200, "{v}");
    let attempts = h
        .scalar(
            "SELECT count(*) FROM learning.attempts a JOIN learning.users u ON u.id = a.user_id \
             WHERE u.firebase_uid = $1",
            ME,
        )
        .await;
    assert_eq!(v["user_id"], ME);
    assert_eq!(v["attempt_count"], attempts);
    assert_eq!(attempts, 35);
    assert_eq!(v["metadata"], json!({}));
    assert!(v["name"].is_null() && v["updated_at"].is_null(), "{v}");
    assert!(v["last_activity_at"].is_string(), "{v}");
}

#[tokio::test]
async fn unknown_entities_are_404_problems_naming_them_and_bad_ids_400_naming_the_field() {
    let h = harness().await;
    for (path, named) in [
        ("/learning/v1/users/no-such-user", "no user no-such-user"),
        (
            "/learning/v1/users/no-such-user/activity",
            "no user no-such-user",
        ),
        (
            "/learning/v1/lessons/aqaGCSEBio9.9.99",
            "no lesson aqaGCSEBio9.9.99",
        ),
        (
            "/learning/v1/papers/no-such-paper",
            "no paper no-such-paper",
        ),
        ("/learning/v1/items/no-such-item", "no item no-such-item"),
    ] {
        let res = h.send(Method::GET, path, Some(&admin()), Body::None).await;
        let (status, _, p) = problem(res).await;
        assert_eq!(status, 404, "{path}: {p}");
        assert_eq!(p["detail"], named, "{path}");
    }
    let long = "x".repeat(129);
    for (path, field) in [
        ("/learning/v1/users/bad%20user".to_owned(), "user_id"),
        (
            "/learning/v1/users/bad%2Fuser/activity".to_owned(),
            "user_id",
        ),
        (format!("/learning/v1/lessons/{long}"), "lesson_id"),
        ("/learning/v1/papers/p%00".to_owned(), "paper_id"),
        ("/learning/v1/items/%C3%A5".to_owned(), "question_id"),
    ] {
        let res = h.send(Method::GET, &path, Some(&admin()), Body::None).await;
        let (status, fields, p) = problem(res).await;
        assert_eq!(
            (status, fields),
            (400, vec![field.to_owned()]),
            "{path}: {p}"
        );
    }
}

#[tokio::test]
async fn activity_limits_0_and_101_and_bad_parameters_are_rejected_naming_them() {
    let h = harness().await;
    let base = format!("/learning/v1/users/{ME}/activity");
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=-1", "limit"),
        ("limit=ten", "limit"),
        ("cursor=not-a-cursor", "cursor"),
        (&*format!("cursor={}", "A".repeat(300)), "cursor"),
        ("paper=bad%20paper", "paper"),
        ("subject=%0A", "subject"),
        ("lesson=", "lesson"),
        ("sort=asc", "sort"),
    ] {
        let res = h
            .send(
                Method::GET,
                &format!("{base}?{query}"),
                Some(&me()),
                Body::None,
            )
            .await;
        let (status, fields, p) = problem(res).await;
        assert_eq!(status, 400, "{query}: {p}");
        assert_eq!(fields, vec![field.to_owned()], "{query}: {p}");
    }
    for ok in ["limit=1", "limit=100", ""] {
        let (status, v) = h.get(&format!("{base}?{ok}"), &me()).await;
        assert_eq!(status, 200, "{ok}: {v}");
    }
    let (_, v) = h.get(&base, &me()).await;
    assert_eq!(v["items"].as_array().map(Vec::len), Some(20), "default 20");
}

/// Walks every page of `path` (which has no query yet) with `limit`; the items in order.
async fn walk(h: &H, path: &str, limit: u32) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let url = match &cursor {
            Some(c) => format!("{path}?limit={limit}&cursor={c}"),
            None => format!("{path}?limit={limit}"),
        };
        let (status, v) = h.get(&url, &me()).await;
        assert_eq!(status, 200, "{url}: {v}");
        let items = v["items"].as_array().cloned().unwrap_or_default();
        assert!(items.len() <= limit as usize);
        out.extend(items);
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
    panic!("more than 1000 pages");
}

#[tokio::test]
async fn the_cursor_walks_a_learners_activity_newest_first_without_duplicates_or_gaps() {
    let h = harness().await;
    let path = format!("/learning/v1/users/{ME}/activity");
    let want: Vec<String> = sqlx::query_scalar(
        "SELECT a.question_id FROM learning.attempts a JOIN learning.users u ON u.id = a.user_id \
          WHERE u.firebase_uid = $1 ORDER BY a.updated_at DESC, a.id DESC",
    )
    .bind(ME)
    .fetch_all(&h.pool)
    .await
    .expect("want");
    for limit in [1, 7, 35, 100] {
        let got = walk(&h, &path, limit).await;
        let ids: Vec<String> = got
            .iter()
            .filter_map(|a| a["question_id"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(ids, want, "limit {limit}");
        let unique: HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "limit {limit}: duplicates");
        let times: Vec<&str> = got
            .iter()
            .filter_map(|a| a["updated_at"].as_str())
            .collect();
        let mut sorted = times.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(times, sorted, "newest first");
    }
    // A page of exactly the rest has no next cursor.
    let (_, v) = h.get(&format!("{path}?limit=35"), &me()).await;
    assert!(v.get("next_cursor").is_none(), "{v}");
}

#[tokio::test]
async fn activity_filters_narrow_to_subject_paper_and_lesson() {
    let h = harness().await;
    let path = format!("/learning/v1/users/{ME}/activity");
    let all = walk(&h, &path, 100).await;
    assert_eq!(all.len(), 35);
    let by = |q: &str| {
        let h = &h;
        let path = path.clone();
        let q = q.to_owned();
        async move {
            let (status, v) = h.get(&format!("{path}?limit=100&{q}"), &me()).await;
            assert_eq!(status, 200, "{q}: {v}");
            v["items"].as_array().cloned().unwrap_or_default()
        }
    };
    assert_eq!(by("subject=aqaGCSEBio").await.len(), 35);
    assert_eq!(by(&format!("paper={PAPER}")).await.len(), 35);
    assert_eq!(
        by("paper=medlymockaqaGCSEBio_Sept_Mock2Higher").await.len(),
        0
    );
    assert_eq!(by("subject=aqaGCSEChem").await.len(), 0);
    let want = h
        .scalar(
            "SELECT count(*) FROM learning.attempts a JOIN learning.users u ON u.id = a.user_id \
              WHERE u.firebase_uid = $1 AND EXISTS (SELECT 1 FROM learning.item_lessons il \
                    WHERE il.item_id = a.item_id AND il.lesson_key = 'aqaGCSEBio2.0.12')",
            ME,
        )
        .await;
    let got = by(&format!("lesson={LESSON}&paper={PAPER}")).await;
    assert!(want > 0);
    assert_eq!(got.len() as i64, want);
    assert!(
        got.iter().all(|a| a["markmax"].is_number()),
        "linked items are known"
    );
}

#[tokio::test]
async fn a_paper_lists_its_items_ordered_by_question_then_part() {
    let h = harness().await;
    let (status, v) = h.get(&format!("/learning/v1/papers/{PAPER}"), &me()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (
            v["tier"].as_str(),
            v["board"].as_str(),
            v["series"].as_str()
        ),
        (Some("Higher"), Some("aqa"), Some("Sept_Mock"))
    );
    let questions = v["questions"].as_array().expect("questions");
    assert_eq!(questions.len(), 9);
    let mut order = Vec::new();
    for q in questions {
        for i in q["items"].as_array().expect("items") {
            order.push((
                q["question_number"].as_i64().unwrap_or(-1),
                i["question_part"].as_i64().unwrap_or(-1),
            ));
        }
    }
    assert_eq!(order.len(), 35);
    let mut sorted = order.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(order, sorted, "strictly ordered by (question, part)");
    let want: Vec<(i32, i32, String)> = sqlx::query_as(
        "SELECT eq.question_number, ep.question_part, i.question_id FROM learning.exam_parts ep \
           JOIN learning.exam_questions eq ON eq.id = ep.exam_question_id \
           JOIN learning.papers p ON p.id = eq.paper_id JOIN learning.items i ON i.id = ep.item_id \
          WHERE p.paper_key = $1 ORDER BY 1, 2",
    )
    .bind(PAPER)
    .fetch_all(&h.pool)
    .await
    .expect("want");
    let got: Vec<String> = questions
        .iter()
        .flat_map(|q| q["items"].as_array().cloned().unwrap_or_default())
        .filter_map(|i| i["question_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(got, want.into_iter().map(|w| w.2).collect::<Vec<_>>());
}

#[tokio::test]
async fn an_item_shows_its_appearances_lessons_and_attempt_count() {
    let h = harness().await;
    let (status, v) = h.get(&format!("/learning/v1/items/{ITEM}"), &me()).await;
    assert_eq!(status, 200, "{v}");
    let attempts = h
        .scalar(
            "SELECT count(*) FROM learning.attempts a JOIN learning.items i ON i.id = a.item_id \
              WHERE i.question_id = $1",
            ITEM,
        )
        .await;
    assert!(attempts > 0);
    assert_eq!(v["attempt_count"], attempts);
    assert_eq!(v["markmax"], 1);
    assert_eq!(v["difficulty"], 3);
    assert_eq!(
        v["appearances"],
        json!([{ "source": "exam", "paper_id": PAPER, "lesson_id": null,
                 "question_number": 1, "question_part": 1 }])
    );
    let lessons: Vec<&str> = v["lessons"]
        .as_array()
        .expect("lessons")
        .iter()
        .filter_map(|l| l["lesson_id"].as_str())
        .collect();
    assert_eq!(
        lessons,
        ["aqaGCSEBio2.0.12", "aqaGCSEBio2.0.13", "aqaGCSEBio2.0.14"]
    );
}

#[tokio::test]
async fn a_lesson_shows_its_place_and_the_exam_items_that_name_it() {
    let h = harness().await;
    let (status, v) = h
        .get(&format!("/learning/v1/lessons/{LESSON}"), &me())
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["course"]["subject_id"], "aqaGCSEBio");
    assert!(v["course"]["title"].is_string(), "{v}");
    let want = h
        .scalar(
            "SELECT count(*) FROM learning.item_lessons WHERE lesson_key = $1",
            LESSON,
        )
        .await;
    let exam = v["exam_items"].as_array().expect("exam items");
    assert_eq!(exam.len() as i64, want);
    assert!(exam.iter().any(|i| i["question_id"] == ITEM), "{v}");
    assert_eq!(
        v["practice_items"],
        json!([]),
        "the real data has no practices"
    );
}

#[tokio::test]
async fn practice_banks_appear_on_their_lesson_and_on_their_items() {
    let (h, _dir) = harness_generated().await;
    let lesson: String = sqlx::query_scalar(
        "SELECT pb.lesson_key FROM learning.practice_banks pb \
           JOIN learning.lessons l ON l.lesson_key = pb.lesson_key ORDER BY pb.lesson_key LIMIT 1",
    )
    .fetch_one(&h.pool)
    .await
    .expect("a practice bank of a known lesson");
    let (status, v) = h
        .get(&format!("/learning/v1/lessons/{lesson}"), &me())
        .await;
    assert_eq!(status, 200, "{v}");
    let practice = v["practice_items"].as_array().expect("practice");
    let want = h
        .scalar(
            "SELECT count(*) FROM learning.practice_parts pp \
               JOIN learning.practice_questions pq ON pq.id = pp.practice_question_id \
               JOIN learning.practice_banks pb ON pb.id = pq.bank_id WHERE pb.lesson_key = $1",
            &lesson,
        )
        .await;
    assert!(want > 0);
    assert_eq!(practice.len() as i64, want);
    let order: Vec<(i64, i64)> = practice
        .iter()
        .map(|p| {
            (
                p["question_number"].as_i64().unwrap_or(-1),
                p["question_part"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(order, sorted);
    let qid = practice[0]["question_id"].as_str().expect("qid").to_owned();
    let (status, item) = h.get(&format!("/learning/v1/items/{qid}"), &me()).await;
    assert_eq!(status, 200, "{item}");
    assert!(
        item["appearances"]
            .as_array()
            .expect("appearances")
            .iter()
            .any(|a| a["source"] == "practice" && a["lesson_id"] == lesson.as_str()),
        "{item}"
    );
}

async fn patch(h: &H, body: Value) -> (u16, Value) {
    let res = h
        .send(
            Method::PATCH,
            &format!("/learning/v1/users/{ME}"),
            Some(&me()),
            Body::Json(body),
        )
        .await;
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn patch_follows_json_merge_patch_and_a_retry_changes_nothing() {
    let h = harness().await;
    let (s, v) = patch(
        &h,
        json!({ "name": "Ada", "metadata": { "school": "Ösby", "prefs": { "theme": "dark", "sound": true } } }),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["name"], "Ada");
    assert_eq!(
        v["metadata"],
        json!({ "school": "Ösby", "prefs": { "theme": "dark", "sound": true } })
    );
    let first_update = v["updated_at"].clone();
    assert!(first_update.is_string());

    // Nested merge, a key removed by null, the name left out (kept).
    let p = json!({ "metadata": { "prefs": { "sound": null, "size": 2 }, "year": 10 } });
    let (s, v) = patch(&h, p.clone()).await;
    assert_eq!(s, 200, "{v}");
    let want = json!({ "school": "Ösby", "prefs": { "theme": "dark", "size": 2 }, "year": 10 });
    assert_eq!((v["name"].as_str(), &v["metadata"]), (Some("Ada"), &want));
    let second_update = v["updated_at"].clone();

    // The same patch again (a client's retry): same document, nothing written.
    let (s, v) = patch(&h, p).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["metadata"], want);
    assert_eq!(v["updated_at"], second_update, "a retry writes nothing");

    // application/json is accepted too; an empty patch changes nothing.
    let res = h
        .send(
            Method::PATCH,
            &format!("/learning/v1/users/{ME}"),
            Some(&me()),
            Body::Raw("application/json", "{}".into()),
        )
        .await;
    assert_eq!(res.status().as_u16(), 200);

    // A key whose value becomes a scalar replaces the object; null name removes it.
    let (s, v) = patch(&h, json!({ "name": null, "metadata": { "prefs": "none" } })).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["name"].is_null());
    assert_eq!(v["metadata"]["prefs"], "none");

    // metadata: null empties it.
    let (s, v) = patch(&h, json!({ "metadata": null })).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["metadata"], json!({}));

    // Only this learner changed, and the import keeps the profile.
    let others: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM learning.users WHERE updated_at IS NOT NULL AND firebase_uid <> $1",
    )
    .bind(ME)
    .fetch_one(&h.pool)
    .await
    .expect("others");
    assert_eq!(others, 0);
    patch(&h, json!({ "name": "Ada again" })).await;
    learning::import::run(
        &h.pool,
        &common::data_dir(),
        &learning::import::Options {
            progress: learning::import::Progress::Quiet,
            ..learning::import::Options::default()
        },
    )
    .await
    .expect("re-import");
    let (_, v) = h.get(&format!("/learning/v1/users/{ME}"), &me()).await;
    assert_eq!(
        v["name"], "Ada again",
        "the import never touches the profile"
    );
    assert_ne!(v["updated_at"], first_update);
}

#[tokio::test]
async fn bad_patches_are_rejected_naming_the_field_and_store_nothing() {
    let h = harness().await;
    // Something to keep: a bad patch must not touch it.
    let (s, _) = patch(&h, json!({ "name": "Ada", "metadata": { "keep": 1 } })).await;
    assert_eq!(s, 200);
    let before = h.profiles().await;
    let deep = (0..9).fold(json!(1), |v, _| json!({ "k": v }));
    let big: serde_json::Map<String, Value> = (0..10)
        .map(|i| (format!("k{i}"), json!("y".repeat(1_900))))
        .collect();
    let cases: Vec<(Body<'static>, u16, Option<&str>)> = vec![
        (Body::Json(json!({ "name": "" })), 400, Some("name")),
        (Body::Json(json!({ "name": "   " })), 400, Some("name")),
        (
            Body::Json(json!({ "name": "x".repeat(201) })),
            400,
            Some("name"),
        ),
        (Body::Json(json!({ "name": "a\u{0}b" })), 400, Some("name")),
        (Body::Json(json!({ "name": "a\nb" })), 400, Some("name")),
        (Body::Json(json!({ "name": 5 })), 400, Some("name")),
        (
            Body::Json(json!({ "nickname": "x" })),
            400,
            Some("nickname"),
        ),
        (
            Body::Json(json!({ "metadata": "x" })),
            400,
            Some("metadata"),
        ),
        (
            Body::Json(json!({ "metadata": [1, 2] })),
            400,
            Some("metadata"),
        ),
        (
            Body::Json(json!({ "metadata": { "note": "a\u{0}b" } })),
            400,
            Some("metadata.note"),
        ),
        (
            Body::Json(json!({ "metadata": { "": 1 } })),
            400,
            Some("metadata"),
        ),
        (
            Body::Json(json!({ "metadata": { "k".repeat(65): 1 } })),
            400,
            Some("metadata"),
        ),
        (
            Body::Json(json!({ "metadata": { "list": vec![0; 65] } })),
            400,
            Some("metadata.list"),
        ),
        (
            Body::Json(json!({ "metadata": deep })),
            400,
            Some("metadata.k.k.k.k.k.k.k.k"),
        ),
        // Each value within bounds, the merged document not.
        (
            Body::Json(json!({ "metadata": Value::Object(big) })),
            400,
            Some("metadata"),
        ),
        // A valid name next to a bad metadata: all or nothing.
        (
            Body::Json(json!({ "name": "Bea", "metadata": { "x": "a\u{0}" } })),
            400,
            Some("metadata.x"),
        ),
        // Not an object at all (RFC 7386 would replace the resource: refused).
        (Body::Json(json!(["name"])), 400, Some("body")),
        (Body::Json(json!(null)), 400, Some("body")),
        (
            Body::Raw("application/merge-patch+json", String::new()),
            400,
            Some("body"),
        ),
        (
            Body::Raw("application/merge-patch+json", "{\"name\":".into()),
            400,
            Some("body"),
        ),
        (
            Body::Raw("text/plain", "{\"name\":\"Bea\"}".into()),
            415,
            None,
        ),
        (Body::None, 415, None),
    ];
    for (body, want, field) in cases {
        let shown = match &body {
            Body::Json(v) => v.to_string().chars().take(80).collect(),
            Body::Raw(ct, s) => format!("{ct}: {}", s.chars().take(60).collect::<String>()),
            Body::None => "no body".to_owned(),
        };
        let res = h
            .send(
                Method::PATCH,
                &format!("/learning/v1/users/{ME}"),
                Some(&me()),
                body,
            )
            .await;
        let (status, fields, p) = problem(res).await;
        assert_eq!(status, want, "{shown}: {p}");
        if let Some(field) = field {
            assert_eq!(fields, vec![field.to_owned()], "{shown}: {p}");
        }
        assert_eq!(h.profiles().await, before, "{shown}: stored something");
    }
    // An unknown user is 404 for an admin, and creates nobody.
    let res = h
        .send(
            Method::PATCH,
            "/learning/v1/users/nobody-at-all",
            Some(&admin()),
            Body::Json(json!({ "name": "x" })),
        )
        .await;
    let (status, _, p) = problem(res).await;
    assert_eq!(
        (status, p["detail"].as_str()),
        (404, Some("no user nobody-at-all"))
    );
    assert_eq!(h.profiles().await, before);
}

#[tokio::test]
async fn every_route_is_in_openapi_with_its_caller_and_examples() {
    let h = harness().await;
    let api: Value = h
        .http
        .get(format!("{}/openapi.json", h.base))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");
    for (path, method) in [
        ("/learning/v1/health", "get"),
        ("/learning/v1/users/{user_id}", "get"),
        ("/learning/v1/users/{user_id}", "patch"),
        ("/learning/v1/users/{user_id}/activity", "get"),
        ("/learning/v1/lessons/{lesson_id}", "get"),
        ("/learning/v1/papers/{paper_id}", "get"),
        ("/learning/v1/items/{question_id}", "get"),
    ] {
        let op = &api["paths"][path][method];
        assert!(op.is_object(), "{method} {path} missing");
        assert!(
            op["x-meridian-caller"].is_string(),
            "{method} {path}: no caller rule"
        );
    }
    for (path, method) in [
        ("/learning/v1/health", "get"),
        ("/learning/v1/users/{user_id}", "get"),
        ("/learning/v1/users/{user_id}", "patch"),
        ("/learning/v1/users/{user_id}/activity", "get"),
        ("/learning/v1/lessons/{lesson_id}", "get"),
        ("/learning/v1/papers/{paper_id}", "get"),
        ("/learning/v1/items/{question_id}", "get"),
    ] {
        let ok = &api["paths"][path][method]["responses"]["200"]["content"]["application/json"];
        assert!(
            ok["example"].is_object(),
            "{method} {path}: no example: {ok}"
        );
    }
    let body = &api["paths"]["/learning/v1/users/{user_id}"]["patch"]["requestBody"]["content"];
    for ct in ["application/merge-patch+json", "application/json"] {
        assert!(body[ct]["example"].is_object(), "{ct}: {body}");
    }
}
