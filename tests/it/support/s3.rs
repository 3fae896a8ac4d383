//! A real S3 server in-process on 127.0.0.1:0 (s3s + s3s-fs, path-style, SigV4), optionally with
//! injected faults, and helpers that write backup snapshots in drover's documented layout.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, ResponseChecksumValidation};
use bytes::{Bytes, BytesMut};
use futures::Stream;
use futures::future::BoxFuture;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::dto::*;
use s3s::service::S3ServiceBuilder;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

pub const ACCESS_KEY: &str = "drover-test-access-key";
pub const SECRET_KEY: &str = "drover-test-secret-key";
pub const BUCKET: &str = "backups";

/// Fault rates in per mille of requests.
#[derive(Clone, Debug, Default)]
pub struct FaultConfig {
    pub error_500: u32,
    pub error_503: u32,
    pub drop_conn: u32,
    pub flip: u32,
    pub abort: u32,
    pub truncate: u32,
}

pub struct Faults {
    cfg: Mutex<FaultConfig>,
    rng: AtomicU64,
    pub injected: AtomicU64,
    pub gets: AtomicU64,
    pub ranged_gets: AtomicU64,
}

impl Faults {
    pub fn new(cfg: FaultConfig, seed: u64) -> Arc<Faults> {
        Arc::new(Faults {
            cfg: Mutex::new(cfg),
            rng: AtomicU64::new(seed),
            injected: AtomicU64::new(0),
            gets: AtomicU64::new(0),
            ranged_gets: AtomicU64::new(0),
        })
    }

    pub fn set(&self, cfg: FaultConfig) {
        *self.cfg.lock().unwrap() = cfg;
    }

    fn cfg(&self) -> FaultConfig {
        self.cfg.lock().unwrap().clone()
    }

    /// splitmix64: deterministic for a seed and a request order.
    fn next(&self) -> u64 {
        let mut z = self
            .rng
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn roll(&self, per_mille: u32) -> bool {
        let hit = per_mille > 0 && self.next() % 1000 < u64::from(per_mille);
        if hit {
            self.injected.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    async fn before(&self) -> S3Result<()> {
        let c = self.cfg();
        if self.roll(c.error_503) {
            return Err(s3_error!(SlowDown, "Please reduce your request rate."));
        }
        if self.roll(c.error_500) {
            return Err(s3_error!(InternalError, "injected fault"));
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum BodyFault {
    Flip { at: u64 },
    Abort { after: u64 },
    Truncate { after: u64 },
}

/// A response body with one injected fault.
struct FaultBody {
    inner: StreamingBlob,
    pos: u64,
    fault: BodyFault,
    done: bool,
}

impl Stream for FaultBody {
    type Item = Result<Bytes, io::Error>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let chunk = match futures::ready!(Pin::new(&mut this.inner).poll_next(cx)) {
            None => return Poll::Ready(None),
            Some(Err(e)) => return Poll::Ready(Some(Err(io::Error::other(e)))),
            Some(Ok(c)) => c,
        };
        let (start, end) = (this.pos, this.pos + chunk.len() as u64);
        this.pos = end;
        match this.fault {
            BodyFault::Flip { at } if (start..end).contains(&at) => {
                let mut b = BytesMut::from(&chunk[..]);
                b[(at - start) as usize] ^= 0xFF;
                Poll::Ready(Some(Ok(b.freeze())))
            }
            BodyFault::Abort { after } if end > after => {
                this.done = true;
                Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "injected abort",
                ))))
            }
            BodyFault::Truncate { after } if end > after => {
                this.done = true;
                let keep = after.saturating_sub(start) as usize;
                Poll::Ready(if keep == 0 {
                    None
                } else {
                    Some(Ok(chunk.slice(..keep)))
                })
            }
            _ => Poll::Ready(Some(Ok(chunk))),
        }
    }
}

struct FaultyS3 {
    inner: s3s_fs::FileSystem,
    faults: Arc<Faults>,
}

impl FaultyS3 {
    async fn faulty_get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        self.faults.gets.fetch_add(1, Ordering::Relaxed);
        if req.input.range.is_some() {
            self.faults.ranged_gets.fetch_add(1, Ordering::Relaxed);
        }
        self.faults.before().await?;
        let mut resp = s3s::S3::get_object(&self.inner, req).await?;
        let c = self.faults.cfg();
        let out = &mut resp.output;
        let len = out.content_length.unwrap_or(0).max(0) as u64;
        let fault = if len == 0 {
            None
        } else if self.faults.roll(c.flip) {
            Some(BodyFault::Flip {
                at: self.faults.next() % len,
            })
        } else if self.faults.roll(c.abort) {
            Some(BodyFault::Abort { after: len / 2 })
        } else if self.faults.roll(c.truncate) {
            Some(BodyFault::Truncate { after: len / 2 })
        } else {
            None
        };
        if let Some(fault) = fault {
            if let BodyFault::Truncate { after } = fault {
                // Valid HTTP framing, fewer bytes than asked for: a silently short body.
                out.content_length = Some(after as i64);
                out.content_range = None;
            }
            if let Some(body) = out.body.take() {
                out.body = Some(StreamingBlob::wrap(FaultBody {
                    inner: body,
                    pos: 0,
                    fault,
                    done: false,
                }));
            }
        }
        Ok(resp)
    }
}

macro_rules! delegate_s3 {
    ($( $op:ident : $in:ident => $out:ident ),* $(,)?) => {
        #[async_trait::async_trait]
        impl s3s::S3 for FaultyS3 {
            async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
                self.faulty_get_object(req).await
            }
            $(
                async fn $op(&self, req: S3Request<$in>) -> S3Result<S3Response<$out>> {
                    self.faults.before().await?;
                    s3s::S3::$op(&self.inner, req).await
                }
            )*
        }
    };
}

delegate_s3! {
    create_bucket: CreateBucketInput => CreateBucketOutput,
    head_bucket: HeadBucketInput => HeadBucketOutput,
    list_buckets: ListBucketsInput => ListBucketsOutput,
    get_bucket_location: GetBucketLocationInput => GetBucketLocationOutput,
    head_object: HeadObjectInput => HeadObjectOutput,
    put_object: PutObjectInput => PutObjectOutput,
    list_objects: ListObjectsInput => ListObjectsOutput,
    list_objects_v2: ListObjectsV2Input => ListObjectsV2Output,
    create_multipart_upload: CreateMultipartUploadInput => CreateMultipartUploadOutput,
    upload_part: UploadPartInput => UploadPartOutput,
    list_parts: ListPartsInput => ListPartsOutput,
    complete_multipart_upload: CompleteMultipartUploadInput => CompleteMultipartUploadOutput,
    abort_multipart_upload: AbortMultipartUploadInput => AbortMultipartUploadOutput,
}

/// Drops connections without a response at the configured rate.
#[derive(Clone)]
struct DropConn {
    inner: s3s::service::S3Service,
    faults: Arc<Faults>,
}

impl hyper::service::Service<hyper::Request<Incoming>> for DropConn {
    type Response = s3s::HttpResponse;
    type Error = s3s::HttpError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;
    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        if self.faults.roll(self.faults.cfg().drop_conn) {
            return Box::pin(async { Err(s3s::HttpError::new("injected connection drop".into())) });
        }
        hyper::service::Service::call(&self.inner, req)
    }
}

/// A running server: its address, fault controls, and the directory it serves.
pub struct Server {
    pub addr: SocketAddr,
    pub faults: Arc<Faults>,
    pub root: std::path::PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// Serves `root` (bucket [`BUCKET`] is created) with no faults until [`Faults::set`].
    pub async fn start(root: &Path) -> Server {
        std::fs::create_dir_all(root.join(BUCKET)).unwrap();
        let faults = Faults::new(FaultConfig::default(), 42);
        let fs = s3s_fs::FileSystem::new(root).expect("s3s-fs root");
        let mut b = S3ServiceBuilder::new(FaultyS3 {
            inner: fs,
            faults: Arc::clone(&faults),
        });
        b.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = DropConn {
            inner: b.build(),
            faults: Arc::clone(&faults),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let conn = http
                    .serve_connection(TokioIo::new(sock), service.clone())
                    .into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        });
        Server {
            addr,
            faults,
            root: root.to_owned(),
            task,
        }
    }

    /// An SDK client for this server; `attempts` = 1 disables the SDK's own retries, so that
    /// faults reach drover's.
    pub fn client(&self, attempts: u32) -> Client {
        let retry = if attempts <= 1 {
            RetryConfig::disabled()
        } else {
            RetryConfig::standard().with_max_attempts(attempts)
        };
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(format!("http://{}", self.addr))
            .credentials_provider(Credentials::new(
                ACCESS_KEY,
                SECRET_KEY,
                None,
                None,
                "drover-test",
            ))
            .force_path_style(true)
            .retry_config(retry)
            .timeout_config(
                aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .read_timeout(Duration::from_secs(10))
                    .build(),
            )
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        Client::from_conf(conf)
    }

    /// Environment for a `drover` subprocess that should reach this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", format!("http://{}", self.addr)),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }
}

/// One object of a snapshot to write.
pub struct Obj<'a> {
    pub name: &'a str,
    pub data: &'a [u8],
}

pub fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The manifest JSON for a snapshot (drover-backup/1).
pub fn manifest(unit: &str, site: Option<&str>, time: &str, objects: &[Obj]) -> String {
    let objs: Vec<serde_json::Value> = objects.iter().map(|o| serde_json::json!({ "name": o.name, "size": o.data.len(), "sha256": sha256(o.data) })).collect();
    let mut m = serde_json::json!({ "format": "drover-backup/1", "unit": unit, "product": "wiki", "snapshot_time": time, "objects": objs });
    if let Some(s) = site {
        m["site"] = serde_json::json!(s);
    }
    m.to_string()
}

/// The snapshot directory name for an RFC 3339 time.
pub fn snapshot_dir(time: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(time)
        .unwrap()
        .with_timezone(&chrono::Utc)
        .format("%Y%m%dT%H%M%SZ")
        .to_string()
}

/// Writes a snapshot into a local directory store (objects, then the manifest unless incomplete).
pub fn write_local(
    root: &Path,
    unit: &str,
    site: Option<&str>,
    time: &str,
    objects: &[Obj],
    complete: bool,
) {
    let dir = root.join(unit).join(snapshot_dir(time));
    for o in objects {
        let p = dir.join(o.name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, o.data).unwrap();
    }
    if complete {
        std::fs::write(
            dir.join("manifest.json"),
            manifest(unit, site, time, objects),
        )
        .unwrap();
    }
}

/// Uploads a snapshot with the AWS SDK (a third-party client), manifest last.
pub async fn upload(
    client: &Client,
    prefix: &str,
    unit: &str,
    site: Option<&str>,
    time: &str,
    objects: &[Obj<'_>],
    complete: bool,
) {
    let base = format!("{prefix}/{unit}/{}", snapshot_dir(time));
    for o in objects {
        client
            .put_object()
            .bucket(BUCKET)
            .key(format!("{base}/{}", o.name))
            .body(o.data.to_vec().into())
            .send()
            .await
            .unwrap();
    }
    if complete {
        let m = manifest(unit, site, time, objects);
        client
            .put_object()
            .bucket(BUCKET)
            .key(format!("{base}/manifest.json"))
            .body(m.into_bytes().into())
            .send()
            .await
            .unwrap();
    }
}

/// Deterministic pseudo-random bytes.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
