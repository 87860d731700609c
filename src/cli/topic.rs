//! `streamctl topic create|list|describe|delete`.

use super::args::{finish, free, opt_num, opt_str, required, usage, CliResult, Format};
use super::client::{Client, CALL_TIMEOUT};
use super::output::{json_str, out, table};
use crate::proto as pb;
use std::io::Write;
use std::time::Duration;

pub(super) const HELP: &str = "\
streamctl topic create NAME --partitions N [--retention-ms MS] [--retention-bytes B]
    Creates a topic. Retention 0 (the default) keeps data forever; retention
    bytes are per partition and accept KiB/MiB/GiB suffixes.
streamctl topic list
    A table of topics: name, partitions, records, stored bytes.
streamctl topic describe NAME
    Per partition: low and high watermark, segments, stored bytes.
streamctl topic delete NAME
    Deletes the topic with its data.
";

fn topic_json(t: &pb::TopicInfo) -> String {
    let parts: Vec<String> = t
        .get_partition_info()
        .iter()
        .map(|p| {
            format!(
                "{{\"partition\":{},\"low_watermark\":{},\"high_watermark\":{},\"segment_count\":{},\"stored_bytes\":{}}}",
                p.get_partition(),
                p.get_low_watermark(),
                p.get_high_watermark(),
                p.get_segment_count(),
                p.get_stored_bytes()
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
        Some("delete") => delete(c, a, format),
        Some(other) => Err(usage(format!(
            "unknown topic command {other:?}; use create, list, describe or delete"
        ))),
        None => Err(usage(
            "topic needs a command: create, list, describe or delete",
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
            "created topic {} with {} partitions",
            t.get_name(),
            t.get_partitions()
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
    writeln!(
        o,
        "topic {}: {} partitions, retention {} ms / {} bytes (0 = unlimited), {} records",
        t.get_name(),
        t.get_partitions(),
        t.get_retention_ms(),
        t.get_retention_bytes(),
        records_of(&t)
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
            ]
        })
        .collect();
    write!(
        o,
        "{}",
        table(
            &["PARTITION", "LOW", "HIGH", "SEGMENTS", "STORED_BYTES"],
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
