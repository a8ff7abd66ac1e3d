//! The sources' rules, pure (no SQL, HTTP, environment or clock reads).
