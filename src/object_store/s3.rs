//! `S3Store`: S3 or any S3-compatible service through rust-s3's blocking API.

use super::{
    check_range, validate_key, validate_prefix, Expect, ObjectMeta, ObjectStore, StoreError,
    StoreResult, Versioned,
};
use s3::creds::Credentials;
use s3::error::S3Error;
use s3::{Bucket, Region};
use std::ops::Range;
use std::time::Duration;

/// Where and how to reach the bucket.
#[derive(Clone, Debug, Default)]
pub struct S3Config {
    /// `http(s)://host:port` of an S3-compatible service; `None` = AWS.
    pub endpoint: Option<String>,
    pub region: String,
    pub bucket: String,
    /// Prepended to every key (`prefix/key`); empty for none.
    pub prefix: String,
    /// Path-style URLs (`endpoint/bucket/key`), as MinIO and SeaweedFS need.
    pub path_style: bool,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub request_timeout: Duration,
}

impl S3Config {
    /// Credentials from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.
    pub fn with_env_credentials(mut self) -> Self {
        self.access_key = std::env::var("AWS_ACCESS_KEY_ID")
            .ok()
            .filter(|s| !s.is_empty());
        self.secret_key = std::env::var("AWS_SECRET_ACCESS_KEY")
            .ok()
            .filter(|s| !s.is_empty());
        self
    }
}

pub struct S3Store {
    bucket: Box<Bucket>,
    prefix: String,
    describe: String,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe)
    }
}

impl S3Store {
    pub fn new(config: &S3Config) -> StoreResult<Self> {
        let err = |reason: String| StoreError::permanent("", reason);
        // Retries are ours (RetryingStore), with jitter and logging.
        s3::set_retries(0);
        let region = match &config.endpoint {
            Some(endpoint) => Region::Custom {
                region: config.region.clone(),
                endpoint: endpoint.trim_end_matches('/').to_string(),
            },
            None => config
                .region
                .parse()
                .map_err(|e| err(format!("bad region {:?}: {e}", config.region)))?,
        };
        let credentials = match (&config.access_key, &config.secret_key) {
            (Some(a), Some(s)) => Credentials::new(Some(a), Some(s), None, None, None),
            (None, None) => Credentials::anonymous(),
            _ => {
                return Err(err(
                    "set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither".into(),
                ))
            }
        }
        .map_err(|e| err(format!("credentials: {e}")))?;
        let mut bucket = Bucket::new(&config.bucket, region, credentials)
            .map_err(|e| err(format!("bucket {:?}: {e}", config.bucket)))?;
        if config.path_style {
            bucket = bucket.with_path_style();
        }
        if !config.request_timeout.is_zero() {
            bucket = bucket
                .with_request_timeout(config.request_timeout)
                .map_err(|e| err(format!("timeout: {e}")))?;
        }
        let prefix = config.prefix.trim_matches('/').to_string();
        if !prefix.is_empty() {
            validate_key(&prefix)?;
        }
        let describe = format!(
            "s3://{}/{} ({})",
            config.bucket,
            prefix,
            config.endpoint.as_deref().unwrap_or("aws")
        );
        Ok(S3Store {
            bucket,
            prefix,
            describe,
        })
    }

    fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }
}

/// An S3 error body as one short line: its `<Code>` and `<Message>` only.
/// The rest (request ids, the `AWSAccessKeyId` some stores echo, the
/// string to sign) never reaches a log line or a client.
fn error_summary(status: u16, body: &str) -> String {
    let element = |name: &str| -> Option<String> {
        let open = format!("<{name}>");
        let start = body.find(&open)? + open.len();
        let end = start + body[start..].find(&format!("</{name}>"))?;
        let text: String = body[start..end]
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        Some(text)
    };
    match (element("Code"), element("Message")) {
        (Some(code), Some(message)) => format!("HTTP {status} {code}: {message}"),
        (Some(code), None) => format!("HTTP {status} {code}"),
        _ => format!("HTTP {status}"),
    }
}

/// Maps rust-s3 errors to the store's error kinds.
fn classify(key: &str, e: S3Error) -> StoreError {
    match e {
        S3Error::HttpFailWithBody(404, _) => StoreError::NotFound {
            key: key.to_string(),
        },
        S3Error::HttpFailWithBody(412, _) => StoreError::PreconditionFailed {
            key: key.to_string(),
        },
        // A conditional write raced another one: try again.
        S3Error::HttpFailWithBody(409, body) => {
            StoreError::transient(key, error_summary(409, &body))
        }
        S3Error::HttpFailWithBody(status, body) => {
            let reason = error_summary(status, &body);
            if status == 408 || status == 429 || status >= 500 {
                StoreError::transient(key, reason)
            } else {
                StoreError::permanent(key, reason)
            }
        }
        S3Error::Atto(err) => match err.kind() {
            attohttpc::ErrorKind::Io(_) | attohttpc::ErrorKind::ConnectError { .. } => {
                StoreError::transient(key, err.to_string())
            }
            _ => StoreError::permanent(key, err.to_string()),
        },
        S3Error::Io(err) => StoreError::transient(key, err.to_string()),
        other => StoreError::permanent(key, other.to_string()),
    }
}

impl ObjectStore for S3Store {
    fn put(&self, key: &str, data: &[u8]) -> StoreResult<()> {
        validate_key(key)?;
        self.bucket
            .put_object(self.full_key(key), data)
            .map(|_| ())
            .map_err(|e| classify(key, e))
    }

    fn put_if(&self, key: &str, data: &[u8], expect: Expect<'_>) -> StoreResult<()> {
        validate_key(key)?;
        let (header, value) = match expect {
            Expect::Absent => ("If-None-Match", "*"),
            Expect::Version(tag) => ("If-Match", tag),
        };
        self.bucket
            .put_object_builder(self.full_key(key), data)
            .with_header(header, value)
            .map_err(|e| StoreError::permanent(key, e.to_string()))?
            .execute()
            .map(|_| ())
            .map_err(|e| classify(key, e))
    }

    fn get(&self, key: &str) -> StoreResult<Vec<u8>> {
        validate_key(key)?;
        self.bucket
            .get_object(self.full_key(key))
            .map(|r| r.to_vec())
            .map_err(|e| classify(key, e))
    }

    fn get_versioned(&self, key: &str) -> StoreResult<Versioned> {
        validate_key(key)?;
        let r = self
            .bucket
            .get_object(self.full_key(key))
            .map_err(|e| classify(key, e))?;
        let etag = r
            .headers()
            .into_iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("etag"))
            .map(|(_, v)| v)
            .ok_or_else(|| StoreError::permanent(key, "the store sent no ETag"))?;
        Ok(Versioned {
            data: r.to_vec(),
            etag,
        })
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Vec<u8>> {
        validate_key(key)?;
        if range.start > range.end {
            return Err(StoreError::permanent(key, "range start is after its end"));
        }
        if range.start == range.end {
            // HTTP cannot express an empty range; answer it locally after
            // checking the object exists and is long enough.
            check_range(key, &range, self.size(key)?)?;
            return Ok(Vec::new());
        }
        let data = self
            .bucket
            .get_object_range(self.full_key(key), range.start, Some(range.end - 1))
            .map(|r| r.to_vec())
            .map_err(|e| match classify(key, e) {
                StoreError::Permanent { reason, .. } if reason.starts_with("HTTP 416") => {
                    StoreError::OutOfBounds {
                        key: key.to_string(),
                        reason: format!(
                            "range {}..{} is outside the object",
                            range.start, range.end
                        ),
                    }
                }
                other => other,
            })?;
        let wanted = range.end - range.start;
        if data.len() as u64 != wanted {
            // S3 shortens a range that runs past the end of the object.
            return Err(StoreError::OutOfBounds {
                key: key.to_string(),
                reason: format!(
                    "range {}..{} is outside the object (got {} of {wanted} bytes)",
                    range.start,
                    range.end,
                    data.len()
                ),
            });
        }
        Ok(data)
    }

    fn size(&self, key: &str) -> StoreResult<u64> {
        validate_key(key)?;
        let (head, _status) = self
            .bucket
            .head_object(self.full_key(key))
            .map_err(|e| classify(key, e))?;
        head.content_length
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| StoreError::permanent(key, "HEAD response has no content length"))
    }

    fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        validate_prefix(prefix)?;
        let full = self.full_key(prefix);
        let strip = if self.prefix.is_empty() {
            0
        } else {
            self.prefix.len() + 1
        };
        let pages = self
            .bucket
            .list(full, None)
            .map_err(|e| classify(prefix, e))?;
        let mut out: Vec<ObjectMeta> = pages
            .into_iter()
            .flat_map(|p| p.contents)
            .filter_map(|o| {
                let key = o.key.get(strip..)?.to_string();
                key.starts_with(prefix)
                    .then_some(ObjectMeta { key, size: o.size })
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> StoreResult<()> {
        validate_key(key)?;
        match self.bucket.delete_object(self.full_key(key)) {
            Ok(_) => Ok(()),
            Err(S3Error::HttpFailWithBody(404, _)) => Ok(()),
            Err(e) => Err(classify(key, e)),
        }
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn identity(&self) -> String {
        format!("s3://{}/{}", self.bucket.name(), self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_body_is_reduced_to_its_code_and_message() {
        // As MinIO and AWS answer a wrong secret (the key id is echoed).
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SignatureDoesNotMatch</Code>\
            <Message>The request signature we calculated does not match the signature you provided.</Message>\
            <AWSAccessKeyId>AKIAEXAMPLEKEY</AWSAccessKeyId><StringToSign>AWS4-HMAC-SHA256\n...</StringToSign>\
            <RequestId>17E3</RequestId></Error>";
        let e = classify(
            "topics/t/1/0/x.seg",
            S3Error::HttpFailWithBody(403, body.into()),
        );
        let text = e.to_string();
        assert!(
            text.contains("HTTP 403 SignatureDoesNotMatch: The request signature"),
            "{text}"
        );
        for secret in ["AKIAEXAMPLEKEY", "StringToSign", "RequestId"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert_eq!(error_summary(502, "<html>bad gateway</html>"), "HTTP 502");
        assert_eq!(
            error_summary(409, "<Error><Code>Conflict\u{1b}[2J</Code></Error>"),
            "HTTP 409 Conflict[2J"
        );
    }
}
