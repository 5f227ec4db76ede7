//! Runs the simulator on two files and prints the report with its run time, for measuring:
//! `cargo run --release -p rollgate-sim --example run -- CAMPAIGN FLEET [SEED] [--json]`.

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let args: Vec<&String> = args.iter().filter(|a| *a != "--json").collect();
    let [campaign, fleet, rest @ ..] = args.as_slice() else {
        return Err("usage: run CAMPAIGN FLEET [SEED] [--json]".into());
    };
    let seed = rest.first().map(|s| s.parse::<u64>()).transpose()?.unwrap_or(42);
    let (campaign, fleet) = (std::fs::read_to_string(campaign)?, std::fs::read_to_string(fleet)?);
    let started = Instant::now();
    let report = rollgate_sim::simulate(&campaign, &fleet, seed)?;
    let took = started.elapsed();
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    eprintln!("simulated in {took:.2?}");
    Ok(())
}
