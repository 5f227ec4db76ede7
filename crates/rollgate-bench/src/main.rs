//! `rollgate-bench`: runs the load harness against a real `rollgate` binary and prints a table
//! and JSON. See the library for what it measures so far.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Load harness for Rollgate (issue 4; work in progress).
#[derive(Parser, Debug)]
struct Args {
    /// The rollgate binary to benchmark.
    #[arg(long, default_value = "target/release/rollgate")]
    rollgate: PathBuf,
    /// Endpoints to enroll.
    #[arg(long, default_value_t = 10_000)]
    endpoints: u32,
    /// Kept-alive connections, each with its own identity.
    #[arg(long, default_value_t = 64)]
    connections: u32,
    /// Seconds to drive check-ins.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bench = rollgate_bench::CheckinBench {
        rollgate: args.rollgate,
        endpoints: args.endpoints,
        connections: args.connections,
        duration: Duration::from_secs(args.seconds),
    };
    let result = rollgate_bench::checkins(&bench).await?;
    println!(
        "enrolled {} endpoints in {:.1} s; {} connections: {:.0} check-ins/s, p50 {:.2} ms, p99 {:.2} ms",
        result.endpoints, result.enroll_secs, result.connections, result.per_sec, result.p50_ms, result.p99_ms
    );
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}
