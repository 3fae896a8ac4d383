//! A standalone S3-compatible server (s3s + s3s-fs) serving a directory on loopback, for
//! benchmarks and manual drills against `s3://` sources: `cargo run --release --example s3_server
//! -- --root DIR`. Each sub-directory of DIR is a bucket. Prints `listening on ADDR` when ready.
//! Credentials: access key `drover`, secret `drover-secret` (path-style, SigV4).

use std::path::PathBuf;

use clap::Parser;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

#[derive(Parser)]
struct Args {
    /// Directory to serve; buckets are its sub-directories.
    #[arg(long)]
    root: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let fs = s3s_fs::FileSystem::new(&args.root)
        .map_err(|e| anyhow::anyhow!("{}: {e:?}", args.root.display()))?;
    let mut builder = S3ServiceBuilder::new(fs);
    builder.set_auth(SimpleAuth::from_single("drover", "drover-secret"));
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind(&args.addr).await?;
    println!("listening on {}", listener.local_addr()?);
    let http = ConnBuilder::new(TokioExecutor::new());
    loop {
        let (sock, _) = listener.accept().await?;
        let conn = http
            .serve_connection(TokioIo::new(sock), service.clone())
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}
