//! Offset lookups: the watermarks, or the first offset at or after a time.

use super::PoolInner;
use crate::error::{Error, Result};
use crate::partition::PartitionShared;

impl PoolInner {
    pub(super) fn list_offsets(&self, p: &PartitionShared, timestamp_ms: i64) -> Result<i64> {
        if let Some(e) = p.read_refusal() {
            return Err(e);
        }
        let fenced = self.ctx.owner.is_fenced();
        let (seg, high) = {
            let view = p.view();
            let end = view.readable_end(fenced);
            match timestamp_ms {
                -2 => return Ok(view.low_watermark),
                -1 => return Ok(end),
                t if t < 0 => {
                    return Err(Error::InvalidArgument(format!(
                    "timestamp {t} is invalid: use -2 (earliest), -1 (latest) or a time in ms >= 0"
                )))
                }
                _ => {}
            }
            match view
                .segments
                .iter()
                .find(|s| s.max_timestamp_ms >= timestamp_ms)
            {
                Some(s) => (s.clone(), end),
                None => {
                    let found = view
                        .tail
                        .iter()
                        .flat_map(|b| b.records.iter())
                        .find(|r| r.timestamp_ms >= timestamp_ms && r.offset < end)
                        .map(|r| r.offset);
                    return Ok(found.unwrap_or(end));
                }
            }
        };
        let footer = self
            .footer(&seg)
            .map_err(|e| self.store_error(p, &seg, e))?;
        let Some(bi) = footer.block_for_timestamp(timestamp_ms) else {
            return Ok(high);
        };
        let block = self
            .block(&seg, &footer, bi)
            .map_err(|e| self.store_error(p, &seg, e))?;
        Ok(block
            .position_of_timestamp(timestamp_ms)
            .and_then(|i| block.get(i))
            .map_or(high, |r| r.offset))
    }
}
