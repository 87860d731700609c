//! `streamctl topic create|list|describe|delete`.

use super::args::{finish, free, opt_num, opt_str, required, usage, CliResult, Format};
use super::client::{Client, CALL_TIMEOUT};
use super::output::{json_str, out, table};
use crate::proto as pb;
use std::io::Write;
use std::time::Duration;

pub(super) const OFFSETS_HELP: &str = "\
streamctl offsets TOPIC [--partition P] [--time T]
    Per partition: the low and high watermarks; with --time, the first
    offset whose timestamp is at or after T (milliseconds since the epoch,
    or RFC 3339 like 2026-01-02T03:04:05Z; the high watermark if none is).
";

pub(super) const CLUSTER_HELP: &str = "\
streamctl cluster
    The node: its id, version, object store and prefix, owner epoch
    (fenced when another node took the prefix over), topics, partitions by
    state, and the bytes acknowledged but not yet uploaded.
";

pub(super) const HELP: &str = "\
streamctl topic create NAME --partitions N [--retention-ms MS] [--retention-bytes B]
    Creates a topic. Retention 0 (the default) keeps data forever; retention
    bytes are per partition and accept KiB/MiB/GiB suffixes.
streamctl topic list
    A table of topics: name, partitions, records, stored bytes.
streamctl topic describe NAME
    Per partition: low and high watermark, segments and bytes in the store,
    and what is acknowledged but only in the WAL so far.
streamctl topic alter NAME [--partitions N] [--retention-ms MS] [--retention-bytes B]
    Adds partitions (never removes them: keyed records then go to other
    partitions, as in Kafka) and changes retention.
streamctl topic delete NAME
    Deletes the topic with its data.
";

fn topic_json(t: &pb::TopicInfo) -> String {
    let parts: Vec<String> = t
        .get_partition_info()
        .iter()
        .map(|p| {
            format!(
                "{{\"partition\":{},\"low_watermark\":{},\"high_watermark\":{},\"segment_count\":{},\"stored_bytes\":{},\"wal_records\":{},\"wal_bytes\":{}}}",
                p.get_partition(),
                p.get_low_watermark(),
                p.get_high_watermark(),
                p.get_segment_count(),
                p.get_stored_bytes(),
                p.get_wal_records(),
                p.get_wal_bytes()
            )
        })
        .collect();
    format!(
        "{{\"name\":{},\"partitions\":{},\"retention_ms\":{},\"retention_bytes\":{},\"created_at_ms\":{},\"partition_info\":[{}]}}",
        json_str(t.get_name()),
        t.get_partitions(),
        t.get_retention_ms(),
        t.get_retention_bytes(),
        t.get_created_at_ms(),
        parts.join(",")
    )
}

/// "1 record", "2 records".
pub(super) fn count(n: i64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn records_of(t: &pb::TopicInfo) -> i64 {
    t.get_partition_info()
        .iter()
        .map(|p| p.get_high_watermark() - p.get_low_watermark())
        .sum()
}

pub(super) fn run(c: &Client, mut a: pico_args::Arguments, format: Format) -> CliResult {
    let sub = a.subcommand().map_err(|e| usage(e.to_string()))?;
    match sub.as_deref() {
        Some("create") => create(c, a, format),
        Some("list") => list(c, a, format),
        Some("describe") => describe(c, a, format),
        Some("alter") => alter(c, a, format),
        Some("delete") => delete(c, a, format),
        Some(other) => Err(usage(format!(
            "unknown topic command {other:?}; use create, list, describe, alter or delete"
        ))),
        None => Err(usage(
            "topic needs a command: create, list, describe, alter or delete",
        )),
    }
}

fn create(c: &Client, mut a: pico_args::Arguments, format: Format) -> CliResult {
    let partitions: u32 = required(&mut a, "--partitions", "topic create")?;
    let retention_ms: i64 = opt_num(&mut a, "--retention-ms")?.unwrap_or(0);
    let retention_bytes = match opt_str(&mut a, "--retention-bytes")? {
        Some(v) => crate::util::size::parse_size(&v)
            .map_err(|e| usage(format!("--retention-bytes: {e}")))? as i64,
        None => 0,
    };
    let name = free(&mut a, "topic create needs a NAME")?;
    finish(a)?;
    let mut req = pb::CreateTopicRequest::new();
    req.set_name(name.clone());
    req.set_partitions(partitions);
    req.set_retention_ms(retention_ms);
    req.set_retention_bytes(retention_bytes);
    let t = c
        .admin
        .create_topic_opt(&req, c.opt(CALL_TIMEOUT))
        .map_err(|e| c.err(&format!("create topic {name:?}"), e))?;
    match format {
        Format::Json => writeln!(out(), "{}", topic_json(&t))?,
        _ => writeln!(
            out(),
            "created topic {} with {}",
            t.get_name(),
            count(t.get_partitions().into(), "partition")
        )?,
    }
    Ok(())
}

fn alter(c: &Client, mut a: pico_args::Arguments, format: Format) -> CliResult {
    let mut req = pb::AlterTopicRequest::new();
    if let Some(n) = opt_num(&mut a, "--partitions")? {
        req.set_partitions(n);
    }
    if let Some(ms) = opt_num(&mut a, "--retention-ms")? {
        req.set_retention_ms(ms);
    }
    if let Some(v) = opt_str(&mut a, "--retention-bytes")? {
        let b = crate::util::size::parse_size(&v)
            .map_err(|e| usage(format!("--retention-bytes: {e}")))?;
        req.set_retention_bytes(b as i64);
    }
    let name = free(&mut a, "topic alter needs a NAME")?;
    finish(a)?;
    if !(req.has_partitions() || req.has_retention_ms() || req.has_retention_bytes()) {
        return Err(usage(
            "topic alter needs --partitions, --retention-ms or --retention-bytes",
        ));
    }
    req.set_name(name.clone());
    let t = c
        .admin
        .alter_topic_opt(&req, c.opt(CALL_TIMEOUT))
        .map_err(|e| c.err(&format!("alter topic {name:?}"), e))?;
    match format {
        Format::Json => writeln!(out(), "{}", topic_json(&t))?,
        _ => writeln!(
            out(),
            "topic {}: {}, retention {} ms / {} bytes (0 = unlimited)",
            t.get_name(),
            count(t.get_partitions().into(), "partition"),
            t.get_retention_ms(),
            t.get_retention_bytes()
        )?,
    }
    Ok(())
}

fn list(c: &Client, a: pico_args::Arguments, format: Format) -> CliResult {
    finish(a)?;
    let r = c
        .admin
        .list_topics_opt(&pb::ListTopicsRequest::new(), c.opt(CALL_TIMEOUT))
        .map_err(|e| c.err("list topics", e))?;
    if format == Format::Json {
        let items: Vec<String> = r.get_topics().iter().map(topic_json).collect();
        writeln!(out(), "[{}]", items.join(","))?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = r
        .get_topics()
        .iter()
        .map(|t| {
            vec![
                t.get_name().to_string(),
                t.get_partitions().to_string(),
                records_of(t).to_string(),
                t.get_partition_info()
                    .iter()
                    .map(|p| p.get_stored_bytes())
                    .sum::<i64>()
                    .to_string(),
            ]
        })
        .collect();
    write!(
        out(),
        "{}",
        table(&["NAME", "PARTITIONS", "RECORDS", "STORED_BYTES"], &rows)
    )?;
    Ok(())
}

fn describe(c: &Client, mut a: pico_args::Arguments, format: Format) -> CliResult {
    let name = free(&mut a, "topic describe needs a NAME")?;
    finish(a)?;
    let mut req = pb::DescribeTopicRequest::new();
    req.set_name(name.clone());
    let t = c
        .admin
        .describe_topic_opt(&req, c.opt(CALL_TIMEOUT))
        .map_err(|e| c.err(&format!("describe topic {name:?}"), e))?;
    if format == Format::Json {
        writeln!(out(), "{}", topic_json(&t))?;
        return Ok(());
    }
    let mut o = out();
    let wal: i64 = t
        .get_partition_info()
        .iter()
        .map(|p| p.get_wal_records())
        .sum();
    writeln!(
        o,
        "topic {}: {}, retention {} ms / {} bytes (0 = unlimited), {} ({wal} not yet in the store)",
        t.get_name(),
        count(t.get_partitions().into(), "partition"),
        t.get_retention_ms(),
        t.get_retention_bytes(),
        count(records_of(&t), "record")
    )?;
    let rows: Vec<Vec<String>> = t
        .get_partition_info()
        .iter()
        .map(|p| {
            vec![
                p.get_partition().to_string(),
                p.get_low_watermark().to_string(),
                p.get_high_watermark().to_string(),
                p.get_segment_count().to_string(),
                p.get_stored_bytes().to_string(),
                p.get_wal_records().to_string(),
                p.get_wal_bytes().to_string(),
            ]
        })
        .collect();
    write!(
        o,
        "{}",
        table(
            &[
                "PARTITION",
                "LOW",
                "HIGH",
                "SEGMENTS",
                "STORED_BYTES",
                "WAL_RECORDS",
                "WAL_BYTES"
            ],
            &rows
        )
    )?;
    Ok(())
}

fn delete(c: &Client, mut a: pico_args::Arguments, format: Format) -> CliResult {
    let name = free(&mut a, "topic delete needs a NAME")?;
    finish(a)?;
    let mut req = pb::DeleteTopicRequest::new();
    req.set_name(name.clone());
    c.admin
        .delete_topic_opt(&req, c.opt(Duration::from_secs(300)))
        .map_err(|e| c.err(&format!("delete topic {name:?}"), e))?;
    match format {
        Format::Json => writeln!(out(), "{{\"deleted\":{}}}", json_str(&name))?,
        _ => writeln!(out(), "deleted topic {name}")?,
    }
    Ok(())
}

pub(super) fn offsets(c: &Client, mut a: pico_args::Arguments, format: Format) -> CliResult {
    let partition: Option<u32> = opt_num(&mut a, "--partition")?;
    let time = opt_str(&mut a, "--time")?
        .map(|v| super::time::parse_time(&v).map_err(|e| usage(format!("--time: {e}"))))
        .transpose()?;
    let topic = free(&mut a, "offsets needs a TOPIC")?;
    finish(a)?;
    let chosen = c.partitions(&topic, partition)?;
    let mut rows = Vec::with_capacity(chosen.len());
    for p in chosen {
        let low = super::consume::list_offset(c, &topic, p, -2)?;
        let high = super::consume::list_offset(c, &topic, p, -1)?;
        let at = time
            .map(|t| super::consume::list_offset(c, &topic, p, t))
            .transpose()?;
        rows.push((p, low, high, at));
    }
    let mut o = out();
    if format == Format::Json {
        let items: Vec<String> = rows
            .iter()
            .map(|(p, low, high, at)| {
                let at = at.map_or(String::new(), |v| format!(",\"offset_at_time\":{v}"));
                format!(
                    "{{\"partition\":{p},\"low_watermark\":{low},\"high_watermark\":{high}{at}}}"
                )
            })
            .collect();
        writeln!(o, "[{}]", items.join(","))?;
        return Ok(());
    }
    let mut header = vec!["PARTITION", "LOW", "HIGH"];
    if time.is_some() {
        header.push("OFFSET_AT_TIME");
    }
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|(p, low, high, at)| {
            let mut r = vec![p.to_string(), low.to_string(), high.to_string()];
            r.extend(at.map(|v| v.to_string()));
            r
        })
        .collect();
    write!(o, "{}", table(&header, &rows))?;
    Ok(())
}

pub(super) fn cluster(c: &Client, a: pico_args::Arguments, format: Format) -> CliResult {
    finish(a)?;
    let r = c
        .admin
        .describe_cluster_opt(&pb::DescribeClusterRequest::new(), c.opt(CALL_TIMEOUT))
        .map_err(|e| c.err("describe the node", e))?;
    let states: Vec<(String, u64)> = r
        .get_partitions()
        .iter()
        .map(|s| (s.get_state().to_string(), s.get_count()))
        .collect();
    let mut o = out();
    if format == Format::Json {
        let parts: Vec<String> = states
            .iter()
            .map(|(s, n)| format!("{}:{n}", json_str(s)))
            .collect();
        writeln!(
            o,
            "{{\"node_id\":{},\"version\":{},\"store\":{},\"owner_epoch\":{},\"fenced\":{},\"topics\":{},\"partitions\":{{{}}},\"backlog_bytes\":{}{}}}",
            json_str(r.get_node_id()),
            json_str(r.get_version()),
            json_str(r.get_store()),
            r.get_owner_epoch(),
            r.get_fenced(),
            r.get_topics(),
            parts.join(","),
            r.get_backlog_bytes(),
            cluster_json(&r)
        )?;
        return Ok(());
    }
    // In a cluster, partitions other nodes lead are as they should be.
    let fine = |s: &str| s == "open" || s == "not_leader";
    let healthy = !r.get_fenced() && states.iter().all(|(s, n)| fine(s) || *n == 0);
    let parts: Vec<String> = states
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| format!("{n} {s}"))
        .collect();
    writeln!(o, "node       {}", r.get_node_id())?;
    writeln!(o, "version    {}", r.get_version())?;
    writeln!(o, "store      {}", r.get_store())?;
    writeln!(
        o,
        "epoch      {}{}",
        r.get_owner_epoch(),
        if r.get_fenced() {
            " (fenced: another node took the prefix over)"
        } else {
            ""
        }
    )?;
    writeln!(o, "topics     {}", r.get_topics())?;
    writeln!(
        o,
        "partitions {}",
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join(", ")
        }
    )?;
    writeln!(
        o,
        "backlog    {} bytes not yet uploaded",
        r.get_backlog_bytes()
    )?;
    writeln!(o, "health     {}", if healthy { "ok" } else { "degraded" })?;
    if !r.get_cluster_name().is_empty() {
        write_cluster(&mut o, &r)?;
    }
    Ok(())
}

/// Cluster mode's fields of the JSON output (none otherwise): the
/// cluster's name, its nodes, and each partition's leader.
fn cluster_json(r: &pb::ClusterInfo) -> String {
    if r.get_cluster_name().is_empty() {
        return String::new();
    }
    let nodes: Vec<String> = r
        .get_nodes()
        .iter()
        .map(|n| {
            format!(
                "{{\"node_id\":{},\"grpc_addr\":{},\"kafka_addr\":{}}}",
                json_str(n.get_node_id()),
                json_str(n.get_grpc_addr()),
                json_str(n.get_kafka_addr())
            )
        })
        .collect();
    let leaders: Vec<String> = r
        .get_leaders()
        .iter()
        .map(|l| {
            format!(
                "{{\"topic\":{},\"partition\":{},\"node_id\":{},\"epoch\":{}}}",
                json_str(l.get_topic()),
                l.get_partition(),
                json_str(l.get_node_id()),
                l.get_epoch()
            )
        })
        .collect();
    format!(
        ",\"cluster\":{},\"nodes\":[{}],\"leaders\":[{}]",
        json_str(r.get_cluster_name()),
        nodes.join(","),
        leaders.join(",")
    )
}

/// Cluster mode: the nodes and who leads what.
fn write_cluster(o: &mut impl Write, r: &pb::ClusterInfo) -> CliResult {
    writeln!(
        o,
        "cluster    {} ({} live nodes)",
        r.get_cluster_name(),
        r.get_nodes().len()
    )?;
    let header = ["NODE", "GRPC", "KAFKA", "LEADS"];
    let rows: Vec<Vec<String>> = r
        .get_nodes()
        .iter()
        .map(|n| {
            let leads = r
                .get_leaders()
                .iter()
                .filter(|l| l.get_node_id() == n.get_node_id())
                .count();
            vec![
                n.get_node_id().to_string(),
                n.get_grpc_addr().to_string(),
                n.get_kafka_addr().to_string(),
                leads.to_string(),
            ]
        })
        .collect();
    write!(o, "{}", table(&header, &rows))?;
    Ok(())
}
