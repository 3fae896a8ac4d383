//! A backup store in S3 or an S3-compatible server, through aws-sdk-s3. The only module that
//! imports the AWS SDK.
//!
//! Configuration is the standard AWS chain: environment (`AWS_ACCESS_KEY_ID`, `AWS_REGION`,
//! `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_S3`, `AWS_MAX_ATTEMPTS`…), profiles, instance roles.
//! Path-style addressing, which most S3-compatible servers need, is switched on by
//! `?path-style=true` on the URL or `DROVER_S3_PATH_STYLE=true`. With no region configured,
//! `us-east-1` is used.

use std::ops::Range;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Region, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use super::{BackupStore, Body, SnapshotEntry, StoreError, layout};

/// `s3://bucket/prefix?path-style=true`, without the scheme.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    pub prefix: String,
    pub path_style: bool,
}

impl S3Url {
    pub fn parse(rest: &str) -> Result<S3Url, String> {
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        if bucket.is_empty() {
            return Err("no bucket: write s3://bucket/prefix".into());
        }
        let mut path_style =
            std::env::var("DROVER_S3_PATH_STYLE").is_ok_and(|v| v == "true" || v == "1");
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("path-style", v)) => path_style = v == "true" || v == "1",
                _ => return Err(format!("unknown option '{pair}' (known: path-style=true)")),
            }
        }
        Ok(S3Url {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            path_style,
        })
    }
}

pub struct S3Store {
    client: Client,
    url: S3Url,
}

impl S3Store {
    /// A client from the standard AWS configuration chain.
    pub async fn connect(url: S3Url) -> S3Store {
        let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
        let mut conf = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(url.path_style)
            // drover verifies every object's SHA-256 itself, ranged reads included.
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if sdk.region().is_none() {
            conf = conf.region(Region::new("us-east-1"));
        }
        S3Store {
            client: Client::from_conf(conf.build()),
            url,
        }
    }

    /// A store over an already configured client (tests use this for a loopback server).
    pub fn with_client(client: Client, url: S3Url) -> S3Store {
        S3Store { client, url }
    }

    /// Uploads every file under `root` to `<prefix>/<path relative to root>`: a backup tree
    /// written by a backup system (the reference platform's, for the demo). Each snapshot's
    /// `manifest.json` goes up only after every other object, so a reader never sees a complete
    /// snapshot with objects missing. drover's restore never calls this: it only reads stores.
    pub async fn upload_tree(&self, root: &std::path::Path) -> Result<usize, StoreError> {
        use futures::{StreamExt, TryStreamExt};
        let files = crate::util::relative_files(root).map_err(|e| StoreError::Permanent {
            what: root.display().to_string(),
            message: e.to_string(),
        })?;
        let count = files.len();
        let (manifests, objects): (Vec<_>, Vec<_>) = files
            .into_iter()
            .partition(|rel| rel.ends_with(layout::MANIFEST));
        for batch in [objects, manifests] {
            futures::stream::iter(batch)
                .map(|rel| self.put_file(root, rel))
                .buffer_unordered(16)
                .try_collect::<()>()
                .await?;
        }
        Ok(count)
    }

    async fn put_file(&self, root: &std::path::Path, rel: String) -> Result<(), StoreError> {
        let what = self.what(&rel);
        let body = aws_sdk_s3::primitives::ByteStream::from_path(root.join(&rel))
            .await
            .map_err(|e| StoreError::Permanent {
                what: what.clone(),
                message: e.to_string(),
            })?;
        self.client
            .put_object()
            .bucket(&self.url.bucket)
            .key(self.key(&rel))
            .body(body)
            .send()
            .await
            .map_err(|e| classify(&what, e))?;
        Ok(())
    }

    fn key(&self, rest: &str) -> String {
        if self.url.prefix.is_empty() {
            rest.to_owned()
        } else {
            format!("{}/{rest}", self.url.prefix)
        }
    }

    fn what(&self, rest: &str) -> String {
        format!("s3://{}/{}", self.url.bucket, self.key(rest))
    }
}

#[async_trait]
impl BackupStore for S3Store {
    async fn list_snapshots(&self, unit: Option<&str>) -> Result<Vec<SnapshotEntry>, StoreError> {
        let under = match unit {
            Some(u) => format!("{}/", self.key(u)),
            None if self.url.prefix.is_empty() => String::new(),
            None => format!("{}/", self.url.prefix),
        };
        let strip = if self.url.prefix.is_empty() {
            0
        } else {
            self.url.prefix.len() + 1
        };
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.url.bucket)
            .prefix(&under)
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| classify(&self.what(&under[strip.min(under.len())..]), e))?;
            for obj in page.contents() {
                if let Some(key) = obj.key()
                    && key.len() > strip
                {
                    keys.push((
                        key[strip..].to_owned(),
                        obj.size().unwrap_or(0).max(0) as u64,
                    ));
                }
            }
        }
        Ok(layout::group(keys))
    }

    async fn read(
        &self,
        unit: &str,
        snapshot: &str,
        object: &str,
        range: Option<Range<u64>>,
    ) -> Result<Body, StoreError> {
        let rest = format!("{unit}/{snapshot}/{object}");
        let what = self.what(&rest);
        let mut req = self
            .client
            .get_object()
            .bucket(&self.url.bucket)
            .key(self.key(&rest));
        if let Some(r) = &range {
            if r.is_empty() {
                return Ok(Body::default());
            }
            req = req.range(format!("bytes={}-{}", r.start, r.end - 1));
        }
        let out = req.send().await.map_err(|e| classify(&what, e))?;
        let expected = out.content_length().map(|n| n.max(0) as u64);
        let mut stream = out.body;
        let mut body = Body::default();
        while let Some(chunk) = stream.try_next().await.map_err(|e| StoreError::Transient {
            what: what.clone(),
            message: format!("reading the body: {e}"),
        })? {
            body.0.push(chunk);
        }
        if let Some(n) = expected
            && body.len() != n
        {
            return Err(StoreError::Transient {
                what,
                message: format!("truncated body: {} of {n} bytes", body.len()),
            });
        }
        Ok(body)
    }

    fn describe(&self) -> String {
        format!("s3://{}/{}", self.url.bucket, self.url.prefix)
            .trim_end_matches('/')
            .to_owned()
    }
}

const NO_CREDENTIALS: &str = "no AWS credentials were found";

/// The credentials chain found no credentials at all (a set-up problem no retry can fix), as
/// opposed to a provider that timed out or was throttled (worth another attempt).
fn no_credentials(text: &str) -> bool {
    text.contains("no credentials found in chain")
        || text.contains("credential provider was not enabled")
        || text.contains("no providers in chain")
}

/// What an operator must set when the error is about drover's S3 set-up rather than the store:
/// credentials, the endpoint, the region.
fn setup_problem<E: ProvideErrorMetadata>(err: &SdkError<E>, raw: &str) -> Option<&'static str> {
    let text = raw.to_ascii_lowercase();
    if let SdkError::DispatchFailure(_) = err {
        if no_credentials(&text) {
            return Some(
                "no AWS credentials were found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
                 (or AWS_PROFILE) in drover's environment, and AWS_ENDPOINT_URL and AWS_REGION \
                 for a store that is not AWS S3",
            );
        }
        if text.contains("credentials") || text.contains("imds") {
            return Some(
                "loading AWS credentials failed (retried): check the credential provider drover \
                 uses (AWS_PROFILE, the instance metadata service) or set AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY",
            );
        }
        if [
            "connection refused",
            "dns error",
            "failed to lookup",
            "tcp connect",
            "connect error",
        ]
        .iter()
        .any(|s| text.contains(s))
        {
            return Some(
                "cannot connect to the S3 endpoint: check AWS_ENDPOINT_URL (for a store that is \
                 not AWS S3: its URL, e.g. http://127.0.0.1:9000) and that it is reachable",
            );
        }
    }
    match err.code() {
        Some("InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AccessDenied") => Some(
            "the store refused drover's credentials: check AWS_ACCESS_KEY_ID, \
             AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and the bucket's permissions",
        ),
        Some("AuthorizationHeaderMalformed" | "PermanentRedirect") => {
            Some("the bucket is in another region: set AWS_REGION to the bucket's region")
        }
        _ => None,
    }
}

/// The first 300 characters of an SDK message (they can run to several lines of context).
fn shorten(raw: &str) -> String {
    let one_line = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

/// Transient (retry) or not, from an SDK error.
fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    what: &str,
    err: SdkError<E>,
) -> StoreError {
    let raw = DisplayErrorContext(&err).to_string();
    let setup = setup_problem(&err, &raw);
    let message = match setup {
        Some(hint) => format!("{hint} (the S3 client said: {})", shorten(&raw)),
        None => raw,
    };
    let transient = match &err {
        _ if setup.is_some_and(|h| h.starts_with(NO_CREDENTIALS)) => false,
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        SdkError::DispatchFailure(d) => d.is_io() || d.is_timeout() || d.is_other(),
        SdkError::ServiceError(se) => {
            let status = se.raw().status();
            status.is_server_error()
                || status.as_u16() == 429
                || matches!(
                    se.err().code(),
                    Some(
                        "SlowDown"
                            | "InternalError"
                            | "ServiceUnavailable"
                            | "RequestTimeout"
                            | "Throttling"
                    )
                )
        }
        _ => false,
    };
    let not_found = matches!(err.code(), Some("NoSuchKey" | "NoSuchBucket" | "NotFound"))
        || err
            .raw_response()
            .is_some_and(|r| r.status().as_u16() == 404);
    if transient {
        StoreError::Transient {
            what: what.to_owned(),
            message,
        }
    } else if not_found {
        StoreError::NotFound {
            what: what.to_owned(),
        }
    } else {
        StoreError::Permanent {
            what: what.to_owned(),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            S3Url::parse("b/p/q").unwrap(),
            S3Url {
                bucket: "b".into(),
                prefix: "p/q".into(),
                path_style: false
            }
        );
        assert!(S3Url::parse("b?path-style=true").unwrap().path_style);
        assert!(S3Url::parse("").is_err());
        assert!(S3Url::parse("b?colour=red").is_err());
    }
}
