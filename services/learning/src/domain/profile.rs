//! A learner's profile fields the API writes (`PATCH /learning/v1/users/{id}`): the name and the
//! free-form metadata object, changed with JSON Merge Patch (RFC 7386) semantics, and the bounds
//! that keep both small. Pure: no SQL, no HTTP.
//!
//! Merge patch is idempotent by construction (applying a patch twice gives what applying it once
//! gave), so a retried PATCH needs no Idempotency-Key.

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// One member of a merge patch: left out (unchanged), `null` (removed) or a value (set).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Member<T> {
    #[default]
    Absent,
    Null,
    Set(T),
}

/// `null` is [`Member::Null`]; a field left out never reaches this (`#[serde(default)]` gives
/// [`Member::Absent`]).
impl<'de, T: Deserialize<'de>> Deserialize<'de> for Member<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Option::<T>::deserialize(d)? {
            None => Self::Null,
            Some(v) => Self::Set(v),
        })
    }
}

/// Longest name (characters).
pub const MAX_NAME_CHARS: usize = 200;
/// Longest metadata key (characters).
pub const MAX_KEY_CHARS: usize = 64;
/// Longest metadata string value (characters).
pub const MAX_STRING_CHARS: usize = 2_000;
/// Deepest nesting: the metadata object itself is depth 1.
pub const MAX_DEPTH: usize = 8;
/// Most members of one object, and most elements of one array.
pub const MAX_MEMBERS: usize = 64;
/// Most values in the whole document (objects, arrays and scalars), so a wide-and-deep
/// document cannot pass every local bound and still be large.
pub const MAX_NODES: usize = 1_000;
/// Largest metadata once merged, as compact JSON (bytes): what one user row may hold.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

/// What is wrong with a metadata document: the field (`metadata` or `metadata.<key>...`, built
/// only from keys that passed the checks, so it never echoes a hostile key) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

fn problem(field: &str, message: impl Into<String>) -> Problem {
    Problem {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// Checks `value` (a metadata object or a merge patch of one) against the bounds: every key
/// 1..=64 characters without control characters, every string at most 2,000 characters without
/// control characters other than tab and line breaks (PostgreSQL's jsonb refuses `\u0000`),
/// nesting at most 8 deep, at most 64 members per object or array and 1,000 values in all.
pub fn check_metadata(value: &Value) -> Result<(), Problem> {
    let Value::Object(map) = value else {
        return Err(problem("metadata", "must be a JSON object (or null)"));
    };
    let mut nodes = 0;
    check_object(map, "metadata", 1, &mut nodes)
}

fn check_object(
    map: &Map<String, Value>,
    field: &str,
    depth: usize,
    nodes: &mut usize,
) -> Result<(), Problem> {
    if map.len() > MAX_MEMBERS {
        return Err(problem(
            field,
            format!("must have at most {MAX_MEMBERS} members"),
        ));
    }
    for (key, value) in map {
        if let Some(why) =
            kit::validate::text_problem(key, MAX_KEY_CHARS, kit::validate::Lines::Single)
        {
            return Err(problem(field, format!("a key {why}")));
        }
        check_value(value, &format!("{field}.{key}"), depth, nodes)?;
    }
    Ok(())
}

fn check_value(value: &Value, field: &str, depth: usize, nodes: &mut usize) -> Result<(), Problem> {
    *nodes += 1;
    if *nodes > MAX_NODES {
        return Err(problem(
            "metadata",
            format!("must hold at most {MAX_NODES} values"),
        ));
    }
    match value {
        Value::Object(map) => {
            if depth + 1 > MAX_DEPTH {
                return Err(problem(
                    field,
                    format!("nests deeper than {MAX_DEPTH} levels"),
                ));
            }
            check_object(map, field, depth + 1, nodes)
        }
        Value::Array(items) => {
            if depth + 1 > MAX_DEPTH {
                return Err(problem(
                    field,
                    format!("nests deeper than {MAX_DEPTH} levels"),
                ));
            }
            if items.len() > MAX_MEMBERS {
                return Err(problem(
                    field,
                    format!("must have at most {MAX_MEMBERS} elements"),
                ));
            }
            for item in items {
                check_value(item, field, depth + 1, nodes)?;
            }
            Ok(())
        }
        // An empty string is a value like any other here (unlike a name).
        Value::String(s) if s.is_empty() => Ok(()),
        Value::String(s) => {
            match kit::validate::text_problem(s, MAX_STRING_CHARS, kit::validate::Lines::Multi) {
                // Whitespace-only strings are allowed in metadata; only the other problems count.
                Some(why) if why != "must not be blank" => Err(problem(field, why)),
                _ => Ok(()),
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

/// RFC 7386 section 2: `patch` merged into `target`. A `null` member removes the key, an object
/// member merges recursively, anything else replaces.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(map) = target {
        for (key, value) in patch {
            if value.is_null() {
                map.remove(key);
            } else {
                merge(map.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// The metadata after `patch` (`"metadata": null` removes every key), checked against the
/// bounds as a whole.
pub fn patched_metadata(current: &Value, patch: &Member<Value>) -> Result<Value, Problem> {
    let mut next = current.clone();
    match patch {
        Member::Absent => {}
        Member::Null => next = Value::Object(Map::new()),
        Member::Set(p) => merge(&mut next, p),
    }
    check_metadata(&next)?;
    let bytes = serde_json::to_vec(&next).map_or(usize::MAX, |b| b.len());
    if bytes > MAX_METADATA_BYTES {
        return Err(problem(
            "metadata",
            format!("would be {bytes} bytes once merged; at most {MAX_METADATA_BYTES} are kept"),
        ));
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_follows_rfc_7386_appendix_a() {
        // The RFC's own examples (appendix A), a selection covering every rule.
        for (target, patch, want) in [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (
                json!({"a":"b","b":"c"}),
                json!({"a":null}),
                json!({"b":"c"}),
            ),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
            (
                json!({"a":{"b":"c"}}),
                json!({"a":{"b":"d","c":null}}),
                json!({"a":{"b":"d"}}),
            ),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"})),
            (
                json!({}),
                json!({"a":{"bb":{"ccc":null}}}),
                json!({"a":{"bb":{}}}),
            ),
        ] {
            let mut t = target.clone();
            merge(&mut t, &patch);
            assert_eq!(t, want, "{target} + {patch}");
            // Idempotent: the same patch again changes nothing.
            merge(&mut t, &patch);
            assert_eq!(t, want, "{target} + {patch} twice");
        }
    }

    #[test]
    fn bounds_name_the_field() {
        let deep = (0..=MAX_DEPTH).fold(json!(1), |v, _| json!({ "k": v }));
        let deepest_allowed = (0..MAX_DEPTH).fold(json!(1), |v, _| json!({ "k": v }));
        assert_eq!(check_metadata(&deepest_allowed), Ok(()));
        let wide: Map<String, Value> = (0..=MAX_MEMBERS)
            .map(|i| (format!("k{i}"), json!(i)))
            .collect();
        for (value, field) in [
            (json!("x"), "metadata"),
            (json!([1]), "metadata"),
            (json!({ "": 1 }), "metadata"),
            (json!({ "a\u{0}b": 1 }), "metadata"),
            (json!({ "k".repeat(65): 1 }), "metadata"),
            (json!({ "note": "a\u{0}b" }), "metadata.note"),
            (json!({ "note": "x".repeat(2_001) }), "metadata.note"),
            (json!({ "list": vec![0; 65] }), "metadata.list"),
            (Value::Object(wide), "metadata"),
            (deep, "metadata.k.k.k.k.k.k.k.k"),
        ] {
            let err = check_metadata(&value).expect_err("out of bounds");
            assert_eq!(err.field, field, "{value}: {err:?}");
        }
        let ok = json!({ "school": "Ösby", "year": 10, "tags": ["a", ""], "nested": { "x": null },
                         "note": "line one\nline two\t", "blank": "  " });
        assert_eq!(check_metadata(&ok), Ok(()));
    }

    #[test]
    fn the_merged_document_is_bounded_as_a_whole() {
        let current = json!({ "a": "x".repeat(1_900) });
        let patch: Map<String, Value> = (0..9)
            .map(|i| (format!("b{i}"), json!("y".repeat(1_900))))
            .collect();
        let err =
            patched_metadata(&current, &Member::Set(Value::Object(patch))).expect_err("too big");
        assert_eq!(err.field, "metadata");
        assert_eq!(
            patched_metadata(&current, &Member::Null).expect("cleared"),
            json!({})
        );
        assert_eq!(
            patched_metadata(&current, &Member::Absent).expect("unchanged"),
            current
        );
    }
}
