//! Firebase target keys: `users/<uid>/subjectsWeb/<subject>/mocks/<paper>/questions/<questionID>`.

/// Longest key accepted (Firebase paths are far shorter; this bounds what a bad file can make
/// the importer hold or log).
pub const MAX_KEY_BYTES: usize = 1024;
/// Longest single id (uid, subject, paper, questionID) accepted.
pub const MAX_ID_BYTES: usize = 128;

/// The parts of a parsed target key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetKey<'a> {
    pub uid: &'a str,
    pub subject: &'a str,
    pub paper: &'a str,
    pub question_id: &'a str,
}

/// Why a key did not parse (the report's skip reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key longer than 1024 bytes")]
    TooLong,
    #[error("key is not users/<uid>/subjectsWeb/<subject>/mocks/<paper>/questions/<questionID>")]
    Shape,
    #[error(
        "an id in the key is empty, longer than 128 bytes or has characters outside A-Z a-z 0-9 _ - . : @"
    )]
    BadId,
}

/// Parses a target key. Every id is 1..=128 of `A-Z a-z 0-9 _ - . : @` (what Firebase uids and
/// the sources' ids use; no spaces, slashes or control characters).
pub fn parse_target(key: &str) -> Result<TargetKey<'_>, KeyError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(KeyError::TooLong);
    }
    let mut it = key.split('/');
    let mut next = || it.next();
    let parts = [
        next(),
        next(),
        next(),
        next(),
        next(),
        next(),
        next(),
        next(),
        next(),
    ];
    let [
        Some("users"),
        Some(uid),
        Some("subjectsWeb"),
        Some(subject),
        Some("mocks"),
        Some(paper),
        Some("questions"),
        Some(question_id),
        None,
    ] = parts
    else {
        return Err(KeyError::Shape);
    };
    if ![uid, subject, paper, question_id]
        .iter()
        .all(|id| valid_id(id))
    {
        return Err(KeyError::BadId);
    }
    Ok(TargetKey {
        uid,
        subject,
        paper,
        question_id,
    })
}

/// An external id as the sources use them (uids, lessonIDs, questionIDs, paper ids).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'@'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_key_parses() {
        let k = parse_target(
            "users/05IsdAyoSnekvovtyr2fC5cNOnF3/subjectsWeb/aqaGCSEBio/mocks/\
             medlymockaqaGCSEBio_Sept_Mock1Higher/questions/aqaGCSEBio_1_1_1_EBc0BgD11T",
        )
        .expect("parses");
        assert_eq!(k.uid, "05IsdAyoSnekvovtyr2fC5cNOnF3");
        assert_eq!(k.subject, "aqaGCSEBio");
        assert_eq!(k.paper, "medlymockaqaGCSEBio_Sept_Mock1Higher");
        assert_eq!(k.question_id, "aqaGCSEBio_1_1_1_EBc0BgD11T");
    }

    #[test]
    fn malformed_keys_are_rejected_with_a_reason() {
        for (key, want) in [
            ("", KeyError::Shape),
            ("users/u/subjectsWeb/s/mocks/p/questions", KeyError::Shape),
            (
                "users/u/subjectsWeb/s/mocks/p/questions/q/extra",
                KeyError::Shape,
            ),
            ("users/u/subjects/s/mocks/p/questions/q", KeyError::Shape),
            ("users//subjectsWeb/s/mocks/p/questions/q", KeyError::BadId),
            (
                "users/u u/subjectsWeb/s/mocks/p/questions/q",
                KeyError::BadId,
            ),
            (
                "users/u/subjectsWeb/s/mocks/p/questions/q\n",
                KeyError::BadId,
            ),
        ] {
            assert_eq!(parse_target(key), Err(want), "{key:?}");
        }
        let long = format!(
            "users/{}/subjectsWeb/s/mocks/p/questions/q",
            "u".repeat(129)
        );
        assert_eq!(parse_target(&long), Err(KeyError::BadId));
        assert_eq!(parse_target(&"u".repeat(2000)), Err(KeyError::TooLong));
    }
}
