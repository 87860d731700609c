//! `streamctl group list|get|commit`.

use super::args::{finish, free, opt_str, required, usage, CliResult, Format};
use super::client::{Client, CALL_TIMEOUT};
use super::output::{json_str, out, table};
use crate::proto as pb;
use std::collections::{BTreeSet, HashMap};
use std::io::Write;

pub(super) const HELP: &str = "\
streamctl group list
    Groups with committed offsets.
streamctl group get GROUP
    Every committed offset of GROUP, with each partition's high watermark
    and lag (high watermark minus committed offset).
streamctl group commit GROUP --topic T --partition P --offset N [--metadata M]
    Commits an offset (the next offset to read) for GROUP.
";

pub(super) fn run(c: &Client, mut a: pico_args::Arguments, format: Format) -> CliResult {
    let sub = a.subcommand().map_err(|e| usage(e.to_string()))?;
    match sub.as_deref() {
        Some("list") => list(c, a, format),
        Some("get") => get(c, a, format),
        Some("commit") => commit(c, a, format),
        Some(other) => Err(usage(format!(
            "unknown group command {other:?}; use list, get or commit"
        ))),
        None => Err(usage("group needs a command: list, get or commit")),
    }
}

fn list(c: &Client, a: pico_args::Arguments, format: Format) -> CliResult {
    finish(a)?;
    let r = c
        .consumer
        .list_groups_opt(&pb::ListGroupsRequest::new(), c.opt(CALL_TIMEOUT))
        .map_err(|e| c.err("list groups", e))?;
    let mut o = out();
    match format {
        Format::Json => {
            let g: Vec<String> = r.get_groups().iter().map(|g| json_str(g)).collect();
            writeln!(o, "[{}]", g.join(","))?;
        }
        _ => {
            for g in r.get_groups() {
                writeln!(o, "{g}")?;
            }
        }
    }
    Ok(())
}

fn get(c: &Client, mut a: pico_args::Arguments, format: Format) -> CliResult {
    let g = free(&mut a, "group get needs a GROUP")?;
    finish(a)?;
    let mut req = pb::DescribeGroupRequest::new();
    req.set_group(g.clone());
    let r = c
        .consumer
        .describe_group_opt(&req, c.opt(CALL_TIMEOUT))
        .map_err(|e| c.err(&format!("group {g:?}"), e))?;
    let ends = high_watermarks(c, r.get_offsets())?;
    let lagging: Vec<Lag> = r.get_offsets().iter().map(|x| Lag::of(x, &ends)).collect();
    let mut o = out();
    if format == Format::Json {
        let items: Vec<String> = lagging.iter().map(Lag::json).collect();
        writeln!(
            o,
            "{{\"group\":{},\"offsets\":[{}]}}",
            json_str(&g),
            items.join(",")
        )?;
        return Ok(());
    }
    if lagging.is_empty() {
        writeln!(o, "group {g} has no committed offsets")?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = lagging.iter().map(Lag::row).collect();
    write!(
        o,
        "{}",
        table(
            &[
                "TOPIC",
                "PARTITION",
                "OFFSET",
                "HIGH-WATERMARK",
                "LAG",
                "METADATA"
            ],
            &rows
        )
    )?;
    Ok(())
}

/// High watermark per (topic, partition), one DescribeTopic per topic the
/// group has offsets in. A topic deleted since the commit has no entry.
fn high_watermarks(
    c: &Client,
    offsets: &[pb::CommittedOffset],
) -> Result<HashMap<(String, u32), i64>, super::args::CliError> {
    let topics: BTreeSet<&str> = offsets.iter().map(|x| x.get_topic()).collect();
    let mut ends = HashMap::new();
    for t in topics {
        let mut req = pb::DescribeTopicRequest::new();
        req.set_name(t.to_string());
        match c.admin.describe_topic_opt(&req, c.opt(CALL_TIMEOUT)) {
            Ok(info) => {
                for p in info.get_partition_info() {
                    ends.insert((t.to_string(), p.get_partition()), p.get_high_watermark());
                }
            }
            Err(grpcio::Error::RpcFailure(s)) if s.code() == grpcio::RpcStatusCode::NOT_FOUND => {}
            Err(e) => return Err(c.err(&format!("topic {t:?}"), e)),
        }
    }
    Ok(ends)
}

/// One committed offset beside its partition's end.
struct Lag<'a> {
    at: &'a pb::CommittedOffset,
    high_watermark: Option<i64>,
}

impl<'a> Lag<'a> {
    fn of(at: &'a pb::CommittedOffset, ends: &HashMap<(String, u32), i64>) -> Lag<'a> {
        let high_watermark = ends
            .get(&(at.get_topic().to_string(), at.get_partition()))
            .copied();
        Lag { at, high_watermark }
    }

    /// Records not yet consumed. Never negative: an offset committed past
    /// the end (allowed, as in Kafka) has nothing left to read.
    fn lag(&self) -> Option<i64> {
        self.high_watermark
            .map(|hw| hw.saturating_sub(self.at.get_offset()).max(0))
    }

    fn row(&self) -> Vec<String> {
        let or_dash = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
        vec![
            self.at.get_topic().into(),
            self.at.get_partition().to_string(),
            self.at.get_offset().to_string(),
            or_dash(self.high_watermark),
            or_dash(self.lag()),
            self.at.get_metadata().into(),
        ]
    }

    fn json(&self) -> String {
        let or_null = |v: Option<i64>| v.map_or_else(|| "null".to_string(), |v| v.to_string());
        format!(
            "{{\"topic\":{},\"partition\":{},\"offset\":{},\"high_watermark\":{},\"lag\":{},\"metadata\":{},\"updated_at_ms\":{}}}",
            json_str(self.at.get_topic()),
            self.at.get_partition(),
            self.at.get_offset(),
            or_null(self.high_watermark),
            or_null(self.lag()),
            json_str(self.at.get_metadata()),
            self.at.get_updated_at_ms()
        )
    }
}

fn commit(c: &Client, mut a: pico_args::Arguments, format: Format) -> CliResult {
    let topic: String = required(&mut a, "--topic", "group commit")?;
    let p: u32 = required(&mut a, "--partition", "group commit")?;
    let offset: i64 = required(&mut a, "--offset", "group commit")?;
    let metadata = opt_str(&mut a, "--metadata")?.unwrap_or_default();
    let g = free(&mut a, "group commit needs a GROUP")?;
    finish(a)?;
    super::consume::commit(c, &g, &topic, p, offset, &metadata)?;
    match format {
        Format::Json => writeln!(
            out(),
            "{{\"group\":{},\"topic\":{},\"partition\":{p},\"offset\":{offset}}}",
            json_str(&g),
            json_str(&topic)
        )?,
        _ => writeln!(out(), "group {g}: {topic}/{p} committed at {offset}")?,
    }
    Ok(())
}
