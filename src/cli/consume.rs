//! `streamctl consume`: prints records from one or every partition, from
//! an offset, the beginning, the end or a time; optionally follows, and
//! resumes and commits a consumer group.

use super::args::{finish, free, opt_num, opt_str, usage, CliError, CliResult, Format};
use super::client::{Client, CALL_TIMEOUT};
use super::output::{json_bytes, json_str, out};
use super::time::parse_time;
use crate::proto as pb;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub(super) const HELP: &str = "\
streamctl consume TOPIC [FLAGS]
    Prints records. Without --follow it stops at the end of each partition.

    --partition P        one partition (default: every partition)
    --offset N           start at offset N
    --from-beginning     start at the low watermark (the default)
    --from-end           start at the high watermark (use with --follow)
    --from-time T        start at the first record at or after T
                         (milliseconds since the epoch, or RFC 3339 like 2026-01-02T03:04:05Z)
    --limit N            stop after N records
    --follow             wait for new records until Ctrl-C
    --group G            start from G's committed offsets and commit as records are printed
    --offset-reset earliest|latest|error
                         where a group without a valid committed offset (none, or one
                         outside the log) starts: the low watermark, the high watermark
                         (the default, as Kafka's auto.offset.reset), or an error
    --print-key --print-offset --print-timestamp --print-headers
                         extra columns (text format), tab-separated before the value
    --format text|json|raw
                         text: the value as UTF-8; json: one object per record;
                         raw: the value bytes and a newline
";

struct PrintOpts {
    format: Format,
    key: bool,
    offset: bool,
    timestamp: bool,
    headers: bool,
}

/// Control characters escaped (`\x1b`, `\t`, `\n`): a key or header
/// written by anyone must not drive the terminal or split the columns.
/// The value is printed as it is (`--format json` escapes it too).
fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn print_record(
    o: &mut impl Write,
    p: u32,
    r: &pb::Record,
    opts: &PrintOpts,
) -> std::io::Result<()> {
    match opts.format {
        Format::Raw => {
            o.write_all(r.get_value())?;
            o.write_all(b"\n")
        }
        Format::Json => {
            let headers: Vec<String> = r
                .get_headers()
                .iter()
                .map(|h| format!("[{},{}]", json_str(h.get_key()), json_bytes(h.get_value())))
                .collect();
            let key = if r.get_key().is_empty() {
                "null".to_string()
            } else {
                json_bytes(r.get_key())
            };
            writeln!(
                o,
                "{{\"partition\":{p},\"offset\":{},\"timestamp_ms\":{},\"key\":{key},\"headers\":[{}],\"value\":{}}}",
                r.get_offset(),
                r.get_timestamp_ms(),
                headers.join(","),
                json_bytes(r.get_value())
            )
        }
        Format::Text => {
            let mut cols: Vec<String> = Vec::new();
            if opts.offset {
                cols.push(format!("{p}:{}", r.get_offset()));
            }
            if opts.timestamp {
                cols.push(r.get_timestamp_ms().to_string());
            }
            if opts.key {
                cols.push(if r.get_key().is_empty() {
                    "null".into()
                } else {
                    printable(&String::from_utf8_lossy(r.get_key()))
                });
            }
            if opts.headers {
                let hs: Vec<String> = r
                    .get_headers()
                    .iter()
                    .map(|h| {
                        format!(
                            "{}={}",
                            printable(h.get_key()),
                            printable(&String::from_utf8_lossy(h.get_value()))
                        )
                    })
                    .collect();
                cols.push(hs.join(","));
            }
            cols.push(String::from_utf8_lossy(r.get_value()).into_owned());
            writeln!(o, "{}", cols.join("\t"))
        }
    }
}

pub(super) fn list_offset(c: &Client, topic: &str, p: u32, ts: i64) -> CliResult<i64> {
    let mut req = pb::ListOffsetsRequest::new();
    req.set_topic(topic.to_string());
    req.set_partition(p);
    req.set_timestamp_ms(ts);
    Ok(c.consumer
        .list_offsets_opt(&req, c.opt(CALL_TIMEOUT))
        .map_err(|e| c.err(&format!("list offsets of {topic}/{p}"), e))?
        .get_offset())
}

pub(super) fn commit(
    c: &Client,
    group: &str,
    topic: &str,
    p: u32,
    offset: i64,
    metadata: &str,
) -> CliResult {
    let mut req = pb::CommitOffsetRequest::new();
    req.set_group(group.to_string());
    req.set_topic(topic.to_string());
    req.set_partition(p);
    req.set_offset(offset);
    req.set_metadata(metadata.to_string());
    c.consumer
        .commit_offset_opt(&req, c.opt(CALL_TIMEOUT))
        .map_err(|e| c.err(&format!("commit offset for group {group:?}"), e))?;
    Ok(())
}

/// Where to start when no group offset says otherwise.
#[derive(Clone, Copy)]
enum Start {
    Offset(i64),
    Beginning,
    End,
    Time(i64),
}

/// Where a group without a valid committed offset starts (Kafka's
/// `auto.offset.reset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reset {
    Earliest,
    Latest,
    Error,
}

struct ConsumeOpts {
    reset: Reset,
    topic: String,
    partition: Option<u32>,
    /// `None`: no start flag given (a group's committed offset wins).
    start: Option<Start>,
    limit: Option<u64>,
    follow: bool,
    group: Option<String>,
    print: PrintOpts,
}

fn parse_opts(mut a: pico_args::Arguments, format: Format) -> CliResult<ConsumeOpts> {
    let partition: Option<u32> = opt_num(&mut a, "--partition")?;
    let offset: Option<i64> = opt_num(&mut a, "--offset")?;
    let from_beginning = a.contains("--from-beginning");
    let from_end = a.contains("--from-end");
    let from_time = opt_str(&mut a, "--from-time")?
        .map(|v| parse_time(&v).map_err(|e| usage(format!("--from-time: {e}"))))
        .transpose()?;
    let limit: Option<u64> = opt_num(&mut a, "--limit")?;
    let follow = a.contains("--follow");
    let group = opt_str(&mut a, "--group")?;
    let reset = match opt_str(&mut a, "--offset-reset")?.as_deref() {
        None | Some("latest") => Reset::Latest,
        Some("earliest") => Reset::Earliest,
        Some("error") => Reset::Error,
        Some(other) => {
            return Err(usage(format!(
                "--offset-reset: {other:?}; use earliest, latest or error"
            )))
        }
    };
    let print = PrintOpts {
        format,
        key: a.contains("--print-key"),
        offset: a.contains("--print-offset"),
        timestamp: a.contains("--print-timestamp"),
        headers: a.contains("--print-headers"),
    };
    let topic = free(&mut a, "consume needs a TOPIC")?;
    finish(a)?;
    let starts: Vec<Start> = [
        offset.map(Start::Offset),
        from_beginning.then_some(Start::Beginning),
        from_end.then_some(Start::End),
        from_time.map(Start::Time),
    ]
    .into_iter()
    .flatten()
    .collect();
    if starts.len() > 1 {
        return Err(usage(
            "use only one of --offset, --from-beginning, --from-end, --from-time",
        ));
    }
    Ok(ConsumeOpts {
        reset,
        topic,
        partition,
        start: starts.first().copied(),
        limit,
        follow,
        group,
        print,
    })
}

pub(super) fn run(c: &Client, a: pico_args::Arguments, format: Format) -> CliResult {
    let opts = parse_opts(a, format)?;
    // In a cluster, one partition is read at its leader.
    let leader = opts.partition.and_then(|p| c.leader_of(&opts.topic, p));
    let c = leader.as_ref().unwrap_or(c);
    let mut next = start_offsets(c, &opts)?;
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, Arc::clone(&interrupted));
    }
    let printed = read_loop(c, &opts, &mut next, &interrupted)?;
    if format == Format::Text && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!(
            "processed {}",
            super::topic::count(printed as i64, "record")
        );
    }
    Ok(())
}

/// (partition, first offset to read) for each partition to read.
fn start_offsets(c: &Client, opts: &ConsumeOpts) -> CliResult<Vec<(u32, i64)>> {
    let topic = &opts.topic;
    let partitions = c.partitions(topic, opts.partition)?;
    let mut next = Vec::with_capacity(partitions.len());
    for p in partitions {
        let start = match (&opts.group, opts.start) {
            (Some(g), None) => group_start(c, g, topic, p, opts.reset)?,
            (_, Some(Start::Offset(o))) => o,
            (_, Some(Start::End)) => list_offset(c, topic, p, -1)?,
            (_, Some(Start::Time(t))) => list_offset(c, topic, p, t)?,
            (_, Some(Start::Beginning) | None) => list_offset(c, topic, p, -2)?,
        };
        next.push((p, start));
    }
    Ok(next)
}

/// The group's committed offset when the log still holds it, else where
/// `reset` says.
fn group_start(c: &Client, group: &str, topic: &str, p: u32, reset: Reset) -> CliResult<i64> {
    let committed = committed_offset(c, group, topic, p)?;
    let low = list_offset(c, topic, p, -2)?;
    let high = list_offset(c, topic, p, -1)?;
    match (committed, reset) {
        (Some(o), _) if (low..=high).contains(&o) => Ok(o),
        (_, Reset::Earliest) => Ok(low),
        (_, Reset::Latest) => Ok(high),
        (committed, Reset::Error) => {
            let has = committed.map_or("no committed offset".to_string(), |o| {
                format!("committed offset {o}, outside the log")
            });
            Err(CliError::Runtime(format!(
                "group {group:?} has {has} for {topic}/{p} (offsets {low}..{high}); choose \
                 --offset-reset earliest or latest, or streamctl group reset-offsets"
            )))
        }
    }
}

pub(super) fn committed_offset(
    c: &Client,
    group: &str,
    topic: &str,
    p: u32,
) -> CliResult<Option<i64>> {
    let mut req = pb::GetCommittedOffsetRequest::new();
    req.set_group(group.to_string());
    req.set_topic(topic.to_string());
    req.set_partition(p);
    let r = c
        .consumer
        .get_committed_offset_opt(&req, c.opt(CALL_TIMEOUT))
        .map_err(|e| c.err(&format!("committed offset of group {group:?}"), e))?;
    Ok(r.get_found().then(|| r.get_offset()))
}

/// Fetches from each partition in turn and prints, until every partition
/// is read to its end (or forever with `--follow`), the limit is reached
/// or a signal comes. Returns the number of records printed.
fn read_loop(
    c: &Client,
    opts: &ConsumeOpts,
    next: &mut [(u32, i64)],
    interrupted: &AtomicBool,
) -> CliResult<u64> {
    let topic = &opts.topic;
    let mut printed = 0u64;
    let mut done = vec![false; next.len()];
    let mut o = std::io::BufWriter::new(out());
    let wait_ms = if opts.follow {
        (500 / next.len().max(1)).max(50) as u32
    } else {
        0
    };
    'outer: while !interrupted.load(Ordering::SeqCst) {
        if !opts.follow && done.iter().all(|d| *d) {
            break;
        }
        for (i, (p, off)) in next.iter_mut().enumerate() {
            if done[i] && !opts.follow {
                continue;
            }
            let mut req = pb::FetchRequest::new();
            req.set_topic(topic.clone());
            req.set_partition(*p);
            req.set_offset(*off);
            req.set_max_wait_ms(wait_ms);
            if let Some(l) = opts.limit {
                req.set_max_records((l - printed).min(5000) as u32);
            }
            let r = c
                .consumer
                .fetch_opt(&req, c.opt(CALL_TIMEOUT))
                .map_err(|e| c.err(&format!("fetch {topic}/{p} at offset {off}"), e))?;
            for rec in r.get_records() {
                print_record(&mut o, *p, rec, &opts.print)?;
                printed += 1;
                if opts.limit.is_some_and(|l| printed >= l) {
                    *off = rec.get_offset() + 1;
                    if let Some(g) = &opts.group {
                        o.flush()?;
                        commit(c, g, topic, *p, *off, "")?;
                    }
                    break 'outer;
                }
            }
            if !r.get_records().is_empty() {
                *off = r.get_next_offset();
                o.flush()?;
                if let Some(g) = &opts.group {
                    commit(c, g, topic, *p, *off, "")?;
                }
            }
            if *off >= r.get_high_watermark() {
                done[i] = true;
            }
        }
    }
    o.flush()?;
    Ok(printed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_keys_and_values_cannot_reach_the_terminal_raw() {
        let mut r = pb::Record::new();
        r.set_key(b"k\x1b]0;owned\x07".to_vec());
        let mut h = pb::Header::new();
        h.set_key("evil\u{1b}[2J\tkey".into());
        h.set_value(b"v\x9b\n".to_vec());
        r.mut_headers().push(h);
        r.set_value(b"value".to_vec());
        let opts = PrintOpts {
            format: Format::Text,
            key: true,
            offset: false,
            timestamp: false,
            headers: true,
        };
        let mut out = Vec::new();
        print_record(&mut out, 0, &r, &opts).expect("print");
        let line = String::from_utf8(out).expect("utf-8");
        assert_eq!(
            line,
            "k\\x1b]0;owned\\x07\tevil\\x1b[2J\\tkey=v\u{fffd}\\n\tvalue\n"
        );
        assert!(!line.trim_end().chars().any(|c| c.is_control() && c != '\t'));
    }
}
