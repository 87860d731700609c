//! `streamctl group list|get|commit|reset-offsets|delete`.

use super::args::{finish, free, opt_str, required, usage, CliError, CliResult, Format};
use super::client::{Client, CALL_TIMEOUT};
use super::output::{json_str, out, table};
use crate::proto as pb;
use std::collections::BTreeSet;
use std::io::Write;

pub(super) const HELP: &str = "\
streamctl group list
    Groups with committed offsets or members (Kafka consumers that
    subscribe()), with their state and member count.
streamctl group get GROUP
    GROUP's state and members (each one's client, host and assigned
    partitions), then every partition of the topics it committed in: the
    committed offset, the high watermark and the lag (high watermark minus
    committed offset; without a commit, every retained record).
streamctl group commit GROUP --topic T --partition P --offset N [--metadata M]
    Commits an offset (the next offset to read) for GROUP; at most the
    partition's high watermark.
streamctl group reset-offsets GROUP --topic T [--partition P] TARGET [--execute]
    Moves GROUP's offsets on every partition of T (or on P), as Kafka's
    kafka-consumer-groups --reset-offsets. TARGET is one of
      --to-earliest        the low watermark
      --to-latest          the high watermark
      --to-datetime T      the first record at or after T (ms or RFC 3339)
      --to-offset N        N, brought within the log
      --shift-by N         the committed offset plus N (negative: back),
                           brought within the log (no commit: from the low watermark)
    Prints the plan; --execute commits it.
streamctl group delete GROUP
    Removes every committed offset of GROUP.
";

pub(super) fn run(c: &Client, mut a: pico_args::Arguments, format: Format) -> CliResult {
    let sub = a.subcommand().map_err(|e| usage(e.to_string()))?;
    match sub.as_deref() {
        Some("list") => list(c, a, format),
        Some("get") => get(c, a, format),
        Some("commit") => commit(c, a, format),
        Some("reset-offsets") => reset_offsets(c, a, format),
        Some("delete") => delete(c, a, format),
        Some(other) => Err(usage(format!(
            "unknown group command {other:?}; use list, get, commit, reset-offsets or delete"
        ))),
        None => Err(usage(
            "group needs a command: list, get, commit, reset-offsets or delete",
        )),
    }
}

fn list(c: &Client, a: pico_args::Arguments, format: Format) -> CliResult {
    finish(a)?;
    let r = c
        .consumer
        .list_groups_opt(&pb::ListGroupsRequest::new(), c.opt(CALL_TIMEOUT))
        .map_err(|e| c.err("list groups", e))?;
    let mut o = out();
    let groups = r.get_summaries();
    if format == Format::Json {
        let g: Vec<String> = groups
            .iter()
            .map(|g| {
                format!(
                    "{{\"group\":{},\"state\":{},\"members\":{}}}",
                    json_str(g.get_group()),
                    json_str(g.get_state()),
                    g.get_members()
                )
            })
            .collect();
        writeln!(o, "[{}]", g.join(","))?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            vec![
                g.get_group().to_string(),
                g.get_state().to_string(),
                g.get_members().to_string(),
            ]
        })
        .collect();
    write!(o, "{}", table(&["GROUP", "STATE", "MEMBERS"], &rows))?;
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
    let rows = lag_rows(c, r.get_offsets())?;
    let mut o = out();
    if format == Format::Json {
        let items: Vec<String> = rows.iter().map(Lag::json).collect();
        let members: Vec<String> = r.get_members().iter().map(member_json).collect();
        writeln!(
            o,
            "{{\"group\":{},\"state\":{},\"generation\":{},\"protocol\":{},\"members\":[{}],\"offsets\":[{}]}}",
            json_str(&g),
            json_str(r.get_state()),
            r.get_generation(),
            json_str(r.get_protocol()),
            members.join(","),
            items.join(",")
        )?;
        return Ok(());
    }
    write_members(&mut o, &g, &r)?;
    if rows.is_empty() {
        writeln!(o, "group {g} has no committed offsets")?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = rows.iter().map(Lag::row).collect();
    let header = [
        "TOPIC",
        "PARTITION",
        "OFFSET",
        "HIGH-WATERMARK",
        "LAG",
        "METADATA",
    ];
    write!(o, "{}", table(&header, &rows))?;
    Ok(())
}

/// The group's state and, when it has members, who holds what.
fn write_members(o: &mut impl Write, g: &str, r: &pb::DescribeGroupResponse) -> CliResult {
    if r.get_members().is_empty() {
        writeln!(o, "group {g}: {}, no members", r.get_state())?;
        return Ok(());
    }
    writeln!(
        o,
        "group {g}: {}, generation {}, protocol {}, {} members",
        r.get_state(),
        r.get_generation(),
        r.get_protocol(),
        r.get_members().len()
    )?;
    let rows: Vec<Vec<String>> = r
        .get_members()
        .iter()
        .map(|m| {
            vec![
                m.get_member_id().to_string(),
                m.get_instance_id().to_string(),
                m.get_client_id().to_string(),
                m.get_host().to_string(),
                assignment_text(m.get_assignment()),
            ]
        })
        .collect();
    let header = ["MEMBER", "INSTANCE", "CLIENT", "HOST", "ASSIGNMENT"];
    write!(o, "{}", table(&header, &rows))?;
    writeln!(o)?;
    Ok(())
}

/// `topic:0,1 other:3`.
fn assignment_text(a: &[pb::GroupAssignment]) -> String {
    a.iter()
        .map(|t| {
            let ps: Vec<String> = t.get_partitions().iter().map(u32::to_string).collect();
            format!("{}:{}", t.get_topic(), ps.join(","))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn member_json(m: &pb::GroupMember) -> String {
    let assignment: Vec<String> = m
        .get_assignment()
        .iter()
        .map(|t| {
            let ps: Vec<String> = t.get_partitions().iter().map(u32::to_string).collect();
            format!(
                "{{\"topic\":{},\"partitions\":[{}]}}",
                json_str(t.get_topic()),
                ps.join(",")
            )
        })
        .collect();
    format!(
        "{{\"member_id\":{},\"instance_id\":{},\"client_id\":{},\"host\":{},\"assignment\":[{}]}}",
        json_str(m.get_member_id()),
        json_str(m.get_instance_id()),
        json_str(m.get_client_id()),
        json_str(m.get_host()),
        assignment.join(",")
    )
}

/// One row per partition of every topic the group committed in (a
/// partition it never committed in shows no offset, and everything
/// retained as its lag), plus committed offsets of deleted topics.
fn lag_rows(c: &Client, offsets: &[pb::CommittedOffset]) -> Result<Vec<Lag>, CliError> {
    let topics: BTreeSet<&str> = offsets.iter().map(|x| x.get_topic()).collect();
    let committed = |t: &str, p: u32| {
        offsets
            .iter()
            .find(|x| x.get_topic() == t && x.get_partition() == p)
            .cloned()
    };
    let mut rows = Vec::new();
    for t in topics {
        let mut req = pb::DescribeTopicRequest::new();
        req.set_name(t.to_string());
        match c.admin.describe_topic_opt(&req, c.opt(CALL_TIMEOUT)) {
            Ok(info) => {
                for p in info.get_partition_info() {
                    rows.push(Lag {
                        topic: t.to_string(),
                        partition: p.get_partition(),
                        at: committed(t, p.get_partition()),
                        ends: Some((p.get_low_watermark(), p.get_high_watermark())),
                    });
                }
            }
            Err(grpcio::Error::RpcFailure(s)) if s.code() == grpcio::RpcStatusCode::NOT_FOUND => {
                for x in offsets.iter().filter(|x| x.get_topic() == t) {
                    rows.push(Lag {
                        topic: t.to_string(),
                        partition: x.get_partition(),
                        at: Some(x.clone()),
                        ends: None,
                    });
                }
            }
            Err(e) => return Err(c.err(&format!("topic {t:?}"), e)),
        }
    }
    Ok(rows)
}

/// A partition's committed offset (if any) beside its watermarks (if the
/// topic still exists).
struct Lag {
    topic: String,
    partition: u32,
    at: Option<pb::CommittedOffset>,
    /// (low, high) watermark.
    ends: Option<(i64, i64)>,
}

impl Lag {
    /// Records not yet consumed: from the committed offset, or from the
    /// oldest retained record without one. Never negative: an offset
    /// committed past the end (refused now, but kept from older builds) has nothing to read.
    fn lag(&self) -> Option<i64> {
        let (low, high) = self.ends?;
        let from = self.at.as_ref().map_or(low, |x| x.get_offset().max(low));
        Some(high.saturating_sub(from).max(0))
    }

    fn high_watermark(&self) -> Option<i64> {
        self.ends.map(|(_, high)| high)
    }

    fn row(&self) -> Vec<String> {
        let or_dash = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
        vec![
            self.topic.clone(),
            self.partition.to_string(),
            or_dash(self.at.as_ref().map(|x| x.get_offset())),
            or_dash(self.high_watermark()),
            or_dash(self.lag()),
            self.at.as_ref().map_or("", |x| x.get_metadata()).into(),
        ]
    }

    fn json(&self) -> String {
        let or_null = |v: Option<i64>| v.map_or_else(|| "null".to_string(), |v| v.to_string());
        format!(
            "{{\"topic\":{},\"partition\":{},\"offset\":{},\"high_watermark\":{},\"lag\":{},\"metadata\":{},\"updated_at_ms\":{}}}",
            json_str(&self.topic),
            self.partition,
            or_null(self.at.as_ref().map(|x| x.get_offset())),
            or_null(self.high_watermark()),
            or_null(self.lag()),
            json_str(self.at.as_ref().map_or("", |x| x.get_metadata())),
            or_null(self.at.as_ref().map(|x| x.get_updated_at_ms()))
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

fn delete(c: &Client, mut a: pico_args::Arguments, format: Format) -> CliResult {
    let g = free(&mut a, "group delete needs a GROUP")?;
    finish(a)?;
    let mut req = pb::DeleteGroupRequest::new();
    req.set_group(g.clone());
    let r = c
        .consumer
        .delete_group_opt(&req, c.opt(CALL_TIMEOUT))
        .map_err(|e| c.err(&format!("delete group {g:?}"), e))?;
    match format {
        Format::Json => writeln!(
            out(),
            "{{\"deleted\":{},\"offsets\":{}}}",
            json_str(&g),
            r.get_offsets_deleted()
        )?,
        _ => writeln!(
            out(),
            "deleted group {g} ({})",
            super::topic::count(r.get_offsets_deleted(), "committed offset")
        )?,
    }
    Ok(())
}

/// Where reset-offsets moves a group.
#[derive(Clone, Copy, Debug)]
enum Target {
    Earliest,
    Latest,
    Time(i64),
    Offset(i64),
    Shift(i64),
}

fn parse_target(a: &mut pico_args::Arguments) -> CliResult<Target> {
    let mut targets = Vec::new();
    if a.contains("--to-earliest") {
        targets.push(Target::Earliest);
    }
    if a.contains("--to-latest") {
        targets.push(Target::Latest);
    }
    if let Some(t) = opt_str(a, "--to-datetime")? {
        let t = super::time::parse_time(&t).map_err(|e| usage(format!("--to-datetime: {e}")))?;
        targets.push(Target::Time(t));
    }
    if let Some(n) = super::args::opt_num(a, "--to-offset")? {
        targets.push(Target::Offset(n));
    }
    if let Some(n) = super::args::opt_num(a, "--shift-by")? {
        targets.push(Target::Shift(n));
    }
    match targets[..] {
        [t] => Ok(t),
        [] => Err(usage(
            "group reset-offsets needs one of --to-earliest, --to-latest, --to-datetime, --to-offset, --shift-by",
        )),
        _ => Err(usage("group reset-offsets takes only one target")),
    }
}

fn reset_offsets(c: &Client, mut a: pico_args::Arguments, format: Format) -> CliResult {
    let topic: String = required(&mut a, "--topic", "group reset-offsets")?;
    let partition: Option<u32> = super::args::opt_num(&mut a, "--partition")?;
    let target = parse_target(&mut a)?;
    let execute = a.contains("--execute");
    let g = free(&mut a, "group reset-offsets needs a GROUP")?;
    finish(a)?;
    let chosen = c.partitions(&topic, partition)?;
    let mut plan = Vec::with_capacity(chosen.len());
    for p in chosen {
        let low = super::consume::list_offset(c, &topic, p, -2)?;
        let high = super::consume::list_offset(c, &topic, p, -1)?;
        let current = super::consume::committed_offset(c, &g, &topic, p)?;
        let new = match target {
            Target::Earliest => low,
            Target::Latest => high,
            Target::Time(t) => super::consume::list_offset(c, &topic, p, t)?,
            Target::Offset(n) => n,
            Target::Shift(n) => current.unwrap_or(low).saturating_add(n),
        }
        .clamp(low, high);
        plan.push((p, current, new));
    }
    if execute {
        for (p, _, new) in &plan {
            super::consume::commit(c, &g, &topic, *p, *new, "")?;
        }
    }
    let mut o = out();
    if format == Format::Json {
        let items: Vec<String> = plan
            .iter()
            .map(|(p, current, new)| {
                let current = current.map_or("null".to_string(), |v| v.to_string());
                format!("{{\"partition\":{p},\"current\":{current},\"new\":{new}}}")
            })
            .collect();
        writeln!(
            o,
            "{{\"group\":{},\"topic\":{},\"executed\":{execute},\"offsets\":[{}]}}",
            json_str(&g),
            json_str(&topic),
            items.join(",")
        )?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = plan
        .iter()
        .map(|(p, current, new)| {
            vec![
                topic.clone(),
                p.to_string(),
                current.map_or("-".to_string(), |v| v.to_string()),
                new.to_string(),
            ]
        })
        .collect();
    write!(
        o,
        "{}",
        table(&["TOPIC", "PARTITION", "CURRENT", "NEW"], &rows)
    )?;
    if execute {
        writeln!(o, "committed for group {g}")?;
    } else {
        writeln!(o, "(a plan: nothing committed; add --execute to commit it)")?;
    }
    Ok(())
}
