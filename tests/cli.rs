//! `streamctl` end to end against the real server.

mod common;

use common::TestServer;
use std::io::Write;
use std::process::{Command, Output, Stdio};

fn run(cmd: &mut Command, stdin: Option<&[u8]>) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(data) = stdin {
        input.write_all(data).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn ok(cmd: &mut Command) -> String {
    let out = run(cmd, None);
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn data(file: &str) -> Vec<u8> {
    std::fs::read(common::project_path(&format!("../shared/data/{file}"))).unwrap()
}

#[test]
fn topics_produce_and_consume_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir.path(), &[]);
    assert!(ok(s
        .ctl()
        .args(["topic", "create", "movies", "--partitions", "2"]))
    .contains("created topic movies"));
    let movies = data("movies.jsonl");
    let path = common::project_path("../shared/data/movies.jsonl");
    let path = path.to_str().unwrap();
    let out = ok(s
        .ctl()
        .args(["produce", "movies", "--partition", "1", "--file", path]));
    assert!(
        out.contains("partition 1: offsets 0..=3200 (3201 records)"),
        "{out}"
    );
    let back = run(
        s.ctl()
            .args(["consume", "movies", "--partition", "1", "--format", "raw"]),
        None,
    );
    assert!(back.status.success());
    assert!(back.stdout == movies, "consumed bytes differ from the file");

    let list = ok(s.ctl().args(["topic", "list"]));
    assert!(
        list.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()[..3] == ["movies", "2", "3201"]),
        "{list}"
    );
    let desc = ok(s
        .ctl()
        .args(["--format", "json", "topic", "describe", "movies"]));
    assert!(desc.contains("\"high_watermark\":3201"), "{desc}");

    // stdin, keys by separator, headers; then print them back.
    let out = run(
        s.ctl().args([
            "produce",
            "movies",
            "--partition",
            "0",
            "--key-separator",
            ":",
            "--header",
            "src=cli",
        ]),
        Some(b"k1:v1\nk2:v2\nnokey\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = ok(s.ctl().args([
        "consume",
        "movies",
        "--partition",
        "0",
        "--print-key",
        "--print-offset",
        "--print-headers",
    ]));
    assert_eq!(
        printed,
        "0:0\tk1\tsrc=cli\tv1\n0:1\tk2\tsrc=cli\tv2\n0:2\tnull\tsrc=cli\tnokey\n"
    );
    let one = ok(s.ctl().args([
        "produce",
        "movies",
        "--partition",
        "0",
        "--value",
        "single",
        "--key",
        "k",
    ]));
    assert_eq!(one, "partition 0 offset 3\n");
    let json = ok(s.ctl().args([
        "consume",
        "movies",
        "--partition",
        "0",
        "--offset",
        "3",
        "--format",
        "json",
    ]));
    assert!(
        json.starts_with("{\"partition\":0,\"offset\":3,")
            && json.contains("\"key\":\"k\"")
            && json.contains("\"value\":\"single\""),
        "{json}"
    );

    // A group resumes where it committed (a new one starts at the end
    // unless told otherwise, as in Kafka).
    let first = ok(s.ctl().args([
        "consume",
        "movies",
        "--partition",
        "1",
        "--group",
        "g",
        "--offset-reset",
        "earliest",
        "--limit",
        "5",
        "--print-offset",
    ]));
    assert_eq!(
        first.lines().last().unwrap().split('\t').next().unwrap(),
        "1:4"
    );
    let second = ok(s.ctl().args([
        "consume",
        "movies",
        "--partition",
        "1",
        "--group",
        "g",
        "--limit",
        "1",
        "--print-offset",
    ]));
    assert!(second.starts_with("1:5\t"), "{second}");
    assert!(ok(s.ctl().args(["group", "get", "g"])).contains("movies  1          6"));
    // Lag is the partition's high watermark minus the committed offset.
    let (hw, lag) = group_lag(&s, "g", 1);
    assert!(hw > 6, "partition 1 holds more than 6 records: {hw}");
    assert_eq!(lag, hw - 6);
    // A partition the group never committed in is shown too: everything
    // retained is its lag.
    let json = ok(s.ctl().args(["group", "get", "g", "--format", "json"]));
    assert!(json.contains("\"partition\":0,\"offset\":null,"), "{json}");
    let (hw0, lag0) = group_lag(&s, "g", 0);
    assert!(hw0 > 0 && lag0 == hw0, "{json}");
    assert_eq!(
        ok(s.ctl().args(["group", "list"])),
        "GROUP  STATE  MEMBERS\ng      Empty  0\n"
    );
    assert_eq!(
        ok(s.ctl().args(["group", "list", "--format", "json"])),
        "[{\"group\":\"g\",\"state\":\"Empty\",\"members\":0}]\n"
    );
    ok(s.ctl().args([
        "group",
        "commit",
        "g",
        "--topic",
        "movies",
        "--partition",
        "1",
        "--offset",
        "100",
    ]));
    let third = ok(s.ctl().args([
        "consume",
        "movies",
        "--partition",
        "1",
        "--group",
        "g",
        "--limit",
        "1",
        "--print-offset",
    ]));
    assert!(third.starts_with("1:100\t"), "{third}");
    assert_eq!(group_lag(&s, "g", 1), (hw, hw - 101));
    // Past the end is refused (the group would read OUT_OF_RANGE ever
    // after); at the end, nothing is left to read.
    let past = run(
        s.ctl().args([
            "group",
            "commit",
            "g",
            "--topic",
            "movies",
            "--partition",
            "1",
            "--offset",
            "1000000",
        ]),
        None,
    );
    assert!(!past.status.success());
    let why = String::from_utf8_lossy(&past.stderr);
    assert!(
        why.contains("past the end") && why.contains("OUT_OF_RANGE"),
        "{why}"
    );
    ok(s.ctl().args([
        "group",
        "commit",
        "g",
        "--topic",
        "movies",
        "--partition",
        "1",
        "--offset",
        &hw.to_string(),
    ]));
    assert_eq!(group_lag(&s, "g", 1), (hw, 0));

    // By time: everything is newer than 2020.
    let t = ok(s.ctl().args([
        "consume",
        "movies",
        "--partition",
        "1",
        "--from-time",
        "2020-01-01T00:00:00Z",
        "--limit",
        "1",
        "--print-offset",
    ]));
    assert!(t.starts_with("1:0\t"));

    // A closed pipe ends consume quietly.
    let mut c = s.ctl();
    c.args(["consume", "movies", "--partition", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    drop(child.stdout.take()); // the reader goes away at once
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert!(ok(s.ctl().args(["topic", "delete", "movies"])).contains("deleted"));
}

#[test]
fn errors_are_one_line_with_the_right_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir.path(), &[]);
    for (args, code) in [
        (vec!["topic", "create", "x"], 2), // --partitions missing
        (vec!["frobnicate"], 2),           // unknown command
        (vec!["consume", "t", "--offset", "1", "--from-end"], 2), // conflicting starts
        (vec!["--format", "yaml", "topic", "list"], 2),
        (vec!["topic", "describe", "missing"], 1),
        (vec!["produce", "missing", "--value", "v"], 1),
        (vec!["topic", "create", "bad/name", "--partitions", "1"], 1),
    ] {
        let out = run(s.ctl().args(&args), None);
        assert_eq!(out.status.code(), Some(code), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("streamctl: "), "{args:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
            "{err}"
        );
    }
    let out = run(
        Command::new(env!("CARGO_BIN_EXE_streamctl")).args([
            "--server",
            "127.0.0.1:1",
            "topic",
            "list",
        ]),
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is streamhoused running"));
    for help in [
        vec!["--help"],
        vec!["topic", "--help"],
        vec!["consume", "--help"],
        vec!["perf-produce", "--help"],
    ] {
        let out = run(s.ctl().args(&help), None);
        assert!(out.status.success() && !out.stdout.is_empty(), "{help:?}");
    }
}

#[test]
fn the_token_is_sent_when_given() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir.path(), &["--auth-token", "tok"]);
    let out = run(s.ctl().args(["topic", "list"]), None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--token"));
    ok(s.ctl().args(["--token", "tok", "topic", "list"]));
    ok(s.ctl()
        .env("STREAMHOUSE_TOKEN", "tok")
        .args(["topic", "list"]));
}

#[test]
fn perf_tools_report_throughput_and_latency() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir.path(), &[]);
    ok(s.ctl().args(["topic", "create", "p", "--partitions", "1"]));
    let out = ok(s.ctl().args([
        "--format",
        "json",
        "perf-produce",
        "--topic",
        "p",
        "--records",
        "5000",
        "--record-size",
        "100",
        "--batch",
        "500",
    ]));
    assert!(
        out.contains("\"records\":5000") && out.contains("\"p99\""),
        "{out}"
    );
    let out = ok(s
        .ctl()
        .args(["perf-consume", "--topic", "p", "--records", "5000"]));
    assert!(out.starts_with("5000 records consumed"), "{out}");

    // Several partitions in turn, and one sample per request for plots.
    ok(s.ctl().args(["topic", "create", "q", "--partitions", "3"]));
    let samples = dir.path().join("samples");
    ok(s.ctl()
        .args([
            "perf-produce",
            "--topic",
            "q",
            "--records",
            "3000",
            "--batch",
            "100",
        ])
        .args(["--partition", "0,2", "--samples"])
        .arg(&samples));
    let rows: Vec<Vec<f64>> = std::fs::read_to_string(&samples)
        .unwrap()
        .lines()
        .map(|l| l.split(' ').map(|f| f.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 30);
    assert!(rows
        .iter()
        .all(|r| r.len() == 3 && r[1] > 0.0 && r[2] == 100.0));
    let described = ok(s.ctl().args(["--format", "json", "topic", "describe", "q"]));
    for (p, n) in [(0, 1500), (1, 0), (2, 1500)] {
        let at = format!("\"partition\":{p},\"low_watermark\":0,\"high_watermark\":{n},");
        assert!(described.contains(&at), "{described}");
    }
}

#[test]
fn streamhoused_flags_are_checked() {
    let out = Command::new(env!("CARGO_BIN_EXE_streamhoused"))
        .args(["--segment-max-bytes", "lots"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--segment-max-bytes"));
    let out = Command::new(env!("CARGO_BIN_EXE_streamhoused"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("--s3-endpoint"));
}

/// (high watermark, lag) of one partition from `group get --format json`.
fn group_lag(s: &TestServer, group: &str, partition: u32) -> (i64, i64) {
    let json = ok(s.ctl().args(["group", "get", group, "--format", "json"]));
    let at = format!("\"partition\":{partition},");
    let item = json
        .split("{\"topic\"")
        .find(|i| i.contains(&at))
        .unwrap_or_else(|| panic!("no partition {partition} in {json}"));
    let field = |name: &str| -> i64 {
        let rest = item.split(&format!("\"{name}\":")).nth(1).unwrap();
        rest.split([',', '}']).next().unwrap().parse().unwrap()
    };
    (field("high_watermark"), field("lag"))
}

#[test]
fn the_shell_runs_commands_keeps_history_and_survives_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir.path(), &[]);
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let script = "\
topic create notes --partitions 1
# a comment, skipped
produce notes --partition 0 --value 'first note' --key k
produce notes --partition 0
no-such-command
consume notes --partition 0 --from-beginning --limit 1 --format json
!2
consume notes --partition 0 --from-beginning --limit 5 --print-offset
history
help group
exit
topic list
";
    let out = run(
        s.ctl().arg("shell").env("HOME", &home),
        Some(script.as_bytes()),
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    // Errors are printed and the shell goes on; the exit code is the last
    // command's (consume, help: fine).
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("produce needs --value V or --file F"),
        "{stderr}"
    );
    assert!(
        stderr.contains("unknown command \"no-such-command\""),
        "{stderr}"
    );
    assert!(stdout.contains("\"key\":\"k\""), "{stdout}");
    assert!(stdout.contains("\"value\":\"first note\""), "{stdout}");
    // `!2` ran line 2 of the history again (comments are not kept): a second record.
    assert!(stdout.contains("partition 0 offset 1\n"), "{stdout}");
    assert!(stdout.contains("0:1\tfirst note\n"), "{stdout}");
    assert!(stdout.contains("    2  produce notes --partition 0 --value 'first note' --key k\n"));
    assert!(stdout.contains("streamctl group get GROUP"), "{stdout}");
    // Nothing after `exit` ran.
    assert!(!stdout.contains("notes  1"), "{stdout}");
    // History is kept across sessions; a failed last command is the exit code.
    let kept = std::fs::read_to_string(home.join(".streamctl_history")).unwrap();
    assert_eq!(kept.lines().count(), 9, "{kept}");
    let out = run(s.ctl().arg("shell").env("HOME", &home), Some(b"!1\n"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
}

fn fails(cmd: &mut Command) -> (i32, String) {
    let out = run(cmd, None);
    assert!(!out.status.success(), "{cmd:?} succeeded");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn kafka_users_habits_offsets_resets_deletes_and_typos() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir.path(), &[]);
    assert!(ok(s.ctl().args(["--version"])).starts_with("streamctl "));
    let v = Command::new(env!("CARGO_BIN_EXE_streamhoused"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("streamhoused "));
    // One of each: "1 partition", "1 record".
    assert_eq!(
        ok(s.ctl()
            .args(["topic", "create", "one", "--partitions", "1"])),
        "created topic one with 1 partition\n"
    );
    ok(s.ctl().args(["produce", "one", "--value", "x"]));
    let d = ok(s.ctl().args(["topic", "describe", "one"]));
    assert!(
        d.contains(": 1 partition, ") && d.contains(", 1 record ("),
        "{d}"
    );
    // The record is in the WAL until a seal: the describe says so.
    assert!(
        d.contains("WAL_RECORDS") && d.contains("1 not yet in the store"),
        "{d}"
    );

    ok(s.ctl()
        .args(["topic", "create", "movies", "--partitions", "2"]));
    let path = common::project_path("../shared/data/movies.jsonl");
    ok(s.ctl().args([
        "produce",
        "movies",
        "--partition",
        "0",
        "--file",
        path.to_str().unwrap(),
    ]));
    let hw: i64 = 3201;
    // A new group starts at the end by default (Kafka's latest)...
    let none = ok(s.ctl().args([
        "consume",
        "movies",
        "--partition",
        "0",
        "--group",
        "late",
        "--limit",
        "1",
    ]));
    assert_eq!(none, "");
    // ...at the beginning when asked, or fails when asked to.
    let first = ok(s.ctl().args([
        "consume",
        "movies",
        "--partition",
        "0",
        "--group",
        "early",
        "--offset-reset",
        "earliest",
        "--limit",
        "2",
        "--print-offset",
    ]));
    assert!(first.starts_with("0:0\t"), "{first}");
    let (code, why) = fails(s.ctl().args([
        "consume",
        "movies",
        "--partition",
        "1",
        "--group",
        "early",
        "--offset-reset",
        "error",
    ]));
    assert_eq!(code, 1);
    assert!(why.contains("no committed offset for movies/1"), "{why}");

    // reset-offsets: a plan first, then --execute.
    let plan = ok(s.ctl().args([
        "group",
        "reset-offsets",
        "early",
        "--topic",
        "movies",
        "--shift-by",
        "-1",
    ]));
    assert!(plan.contains("add --execute"), "{plan}");
    assert!(ok(s.ctl().args(["group", "get", "early"])).contains("movies  0          2"));
    ok(s.ctl().args([
        "group",
        "reset-offsets",
        "early",
        "--topic",
        "movies",
        "--to-latest",
        "--execute",
    ]));
    let get = ok(s.ctl().args(["group", "get", "early", "--format", "json"]));
    assert!(
        get.contains(&format!("\"partition\":0,\"offset\":{hw},")),
        "{get}"
    );
    assert!(get.contains("\"partition\":1,\"offset\":0,"), "{get}");
    ok(s.ctl().args([
        "group",
        "reset-offsets",
        "early",
        "--topic",
        "movies",
        "--partition",
        "0",
        "--to-datetime",
        "1970-01-01T00:00:00Z",
        "--execute",
    ]));
    assert!(ok(s.ctl().args(["group", "get", "early"])).contains("movies  0          0"));
    // Offsets by time, and the node.
    let offsets = ok(s
        .ctl()
        .args(["offsets", "movies", "--time", "2020-01-01T00:00:00Z"]));
    assert!(
        offsets.contains("OFFSET_AT_TIME") && offsets.contains(&format!("0          0    {hw}  0")),
        "{offsets}"
    );
    let node = ok(s.ctl().args(["cluster"]));
    assert!(
        node.contains("version    ")
            && node.contains("health     ok")
            && node.contains("topics     2"),
        "{node}"
    );
    // group delete, then it is gone.
    assert!(ok(s.ctl().args(["group", "delete", "early"]))
        .starts_with("deleted group early (2 committed offsets)"));
    let (code, why) = fails(s.ctl().args(["group", "delete", "early"]));
    assert_eq!(code, 1);
    assert!(why.contains("NOT_FOUND"), "{why}");

    // Typos get the nearest word.
    let (code, why) = fails(s.ctl().args(["consume", "movies", "--patition", "0"]));
    assert_eq!(code, 2);
    assert!(why.contains("did you mean --partition?"), "{why}");
    let (_, why) = fails(s.ctl().args(["topc", "list"]));
    assert!(why.contains("did you mean topic?"), "{why}");
    let (_, why) = fails(s.ctl().args(["group", "lsit"]));
    assert!(why.contains("did you mean list?"), "{why}");
    let out = Command::new(env!("CARGO_BIN_EXE_streamhoused"))
        .args(["--listn", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean --listen?"));
}

#[test]
fn topic_alter_adds_partitions_and_changes_retention() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir.path(), &[]);
    ok(s.ctl().args(["topic", "create", "t", "--partitions", "1"]));
    let out = ok(s.ctl().args([
        "topic",
        "alter",
        "t",
        "--partitions",
        "4",
        "--retention-ms",
        "3600000",
    ]));
    assert_eq!(
        out,
        "topic t: 4 partitions, retention 3600000 ms / 0 bytes (0 = unlimited)\n"
    );
    ok(s.ctl()
        .args(["produce", "t", "--partition", "3", "--value", "new"]));
    let (code, why) = fails(s.ctl().args(["topic", "alter", "t", "--partitions", "2"]));
    assert_eq!(code, 1);
    assert!(
        why.contains("INVALID_ARGUMENT") && why.contains("not removed"),
        "{why}"
    );
    let (code, _) = fails(s.ctl().args(["topic", "alter", "t"]));
    assert_eq!(code, 2);
    let s = s.restart();
    let d = ok(s.ctl().args(["topic", "describe", "t"]));
    assert!(d.contains("t: 4 partitions, retention 3600000 ms"), "{d}");
    let got = ok(s.ctl().args(["consume", "t", "--partition", "3"]));
    assert_eq!(got, "new\n");
}
