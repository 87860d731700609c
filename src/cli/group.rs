//! `streamctl group list|get|commit`.

use super::args::{finish, free, opt_str, required, usage, CliResult, Format};
use super::client::{Client, CALL_TIMEOUT};
use super::output::{json_str, out, table};
use crate::proto as pb;
use std::io::Write;

pub(super) const HELP: &str = "\
streamctl group list
    Groups with committed offsets.
streamctl group get GROUP
    Every committed offset of GROUP.
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
    let mut o = out();
    if format == Format::Json {
        let items: Vec<String> = r
            .get_offsets()
            .iter()
            .map(|x| {
                format!(
                    "{{\"topic\":{},\"partition\":{},\"offset\":{},\"metadata\":{},\"updated_at_ms\":{}}}",
                    json_str(x.get_topic()),
                    x.get_partition(),
                    x.get_offset(),
                    json_str(x.get_metadata()),
                    x.get_updated_at_ms()
                )
            })
            .collect();
        writeln!(
            o,
            "{{\"group\":{},\"offsets\":[{}]}}",
            json_str(&g),
            items.join(",")
        )?;
        return Ok(());
    }
    if r.get_offsets().is_empty() {
        writeln!(o, "group {g} has no committed offsets")?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = r
        .get_offsets()
        .iter()
        .map(|x| {
            vec![
                x.get_topic().into(),
                x.get_partition().to_string(),
                x.get_offset().to_string(),
                x.get_metadata().into(),
            ]
        })
        .collect();
    write!(
        o,
        "{}",
        table(&["TOPIC", "PARTITION", "OFFSET", "METADATA"], &rows)
    )?;
    Ok(())
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
