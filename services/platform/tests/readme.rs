//! README.md's "Try it" block runs as written against a real `meridian serve`: the block is read
//! out of README.md at test time and run with bash, so a README edit that breaks a command (a
//! route, a flag, a scope) fails this test. Two things differ from a reader's terminal, both
//! mechanical: `localhost:8080` becomes this test's port, and `cargo` on PATH is a shim that runs
//! the already-built `meridian` for exactly the block's `cargo run -q --release -p meridian --`
//! (anything else it refuses, so a changed invocation fails here rather than silently building).

use std::{
    io::Write,
    os::unix::fs::PermissionsExt,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

fn try_it_block() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let section = readme
        .split_once("\n## Try it\n")
        .expect("README has a '## Try it' section")
        .1;
    let block = section
        .split_once("```sh\n")
        .expect("a sh block in 'Try it'")
        .1;
    block
        .split_once("\n```")
        .expect("the block ends")
        .0
        .to_owned()
}

#[tokio::test]
async fn the_readme_try_it_block_runs_as_written() {
    let block = try_it_block();
    assert!(
        block.contains("localhost:8080") && block.contains("cargo run -q --release -p meridian --"),
        "the block's shape changed; update this test's two substitutions"
    );
    let work = tempfile::tempdir().expect("tempdir");
    let state = work.path().join("state");
    let port = kit::testing::free_port();
    let meridian = env!("CARGO_BIN_EXE_meridian");

    let shim_dir = work.path().join("bin");
    std::fs::create_dir(&shim_dir).expect("bin dir");
    let shim = shim_dir.join("cargo");
    let mut f = std::fs::File::create(&shim).expect("shim");
    writeln!(
        f,
        "#!/bin/sh\n\
         if [ \"$1 $2 $3 $4 $5 $6\" = 'run -q --release -p meridian --' ]; then\n\
           shift 6; exec '{meridian}' \"$@\"\n\
         fi\n\
         echo \"cargo shim: unexpected invocation: $*\" >&2; exit 97"
    )
    .expect("write shim");
    drop(f);
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let mut serve = Command::new(meridian)
        .args(["serve", "--port", &port.to_string()])
        .env("XDG_STATE_HOME", &state)
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn meridian serve");
    let base = format!("http://127.0.0.1:{port}");
    let ready = kit::testing::wait_ready(&base, Duration::from_secs(90)).await;

    let script = block.replace("localhost:8080", &format!("127.0.0.1:{port}"));
    let path = format!(
        "{}:{}",
        shim_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let started = Instant::now();
    let out = Command::new("bash")
        .args(["-c", &format!("set -uo pipefail\n{script}")])
        .env("PATH", path)
        .env("XDG_STATE_HOME", &state)
        .output()
        .expect("run bash");
    let _ = serve.kill();
    let _ = serve.wait();
    assert!(ready, "meridian serve did not become ready");

    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("cargo shim"),
        "the block failed ({:?}, {:?}):\n{stderr}\n{stdout}",
        out.status,
        started.elapsed()
    );
    // What each step promises, in the block's order.
    let promised = [
        ("liveness", "{\"status\":\"alive\"}"),
        ("readiness", "\"status\":\"ok\""),
        ("metrics", "http_requests_total{"),
        ("OpenAPI 3.1", "\"openapi\":\"3.1"),
        ("no token: 401", "\"status\":401"),
        ("alice on bob's streams: 403", "\"status\":403"),
        ("a started stream", "\"device_id\":\"tv\""),
        ("201", " -> 201\n"),
        ("the retry: the same session", "\"device_id\":\"tv\""),
        ("200", " -> 200\n"),
        ("the fourth stream: 409", "\"status\":409"),
        ("stop: 204", "204\n"),
        ("bad input: 400", "\"status\":400"),
        ("naming the field", "\"field\":\"content_id\""),
        ("alice may not raise a limit", "\"status\":403"),
        ("ops may", "\"max_streams\":4"),
        ("a signed decision is answered", "\"actions\""),
        ("the admin API shows the flow", "\"entry\""),
        ("the audit log", "\"items\""),
        ("what to practise next, and why", "\"reason\":"),
        ("removal reasons", "\"overall\""),
    ];
    // The retry with the same Idempotency-Key returned the first attempt's session.
    let session_of = |status: &str| -> String {
        let line = stdout
            .lines()
            .find(|l| l.ends_with(&format!(" -> {status}")))
            .unwrap_or_else(|| panic!("no start answered {status} in:\n{stdout}"));
        // Earlier commands print without a newline: the answer is the last object on the line.
        let answer = line.rsplit_once(" -> ").map_or(line, |(b, _)| b);
        let answer = answer
            .rfind("{\"session_id\"")
            .map_or(answer, |at| &answer[at..]);
        let body: serde_json::Value = serde_json::from_str(answer)
            .unwrap_or_else(|e| panic!("{status} body is not JSON ({e}): {line}"));
        body["session_id"].as_str().unwrap_or_default().to_owned()
    };
    let first = session_of("201");
    assert!(!first.is_empty());
    assert_eq!(
        session_of("200"),
        first,
        "the retry started another session"
    );
    let mut rest: &str = &stdout;
    for (what, marker) in promised {
        let at = rest.find(marker).unwrap_or_else(|| {
            panic!("{what}: no {marker:?} after the earlier steps in:\n{stdout}")
        });
        rest = &rest[at + marker.len()..];
    }
}
