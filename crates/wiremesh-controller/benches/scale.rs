//! The controller at scale: N simulated agents (1,000 by default) in this process enroll over
//! loopback QUIC against `wiremesh-controller run` in a child process, so its memory is its own.
//! Prints the time to enroll them all, the time until a change reaches every session, the
//! controller's peak and current RSS and the netmap's size.
//!
//! `cargo bench -p wiremesh-controller --bench scale [-- --agents N]`. Run without `--bench` (by
//! `cargo test --all-targets`) it is a smoke run with 20 agents.

#[allow(dead_code)]
#[path = "../tests/fleet/mod.rs"]
mod fleet;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use wiremesh_proto::admin::{Outcome, Request};

/// Every wait ends with an error after this long.
const BOUND: Duration = Duration::from_secs(120);

fn main() -> ExitCode {
    let mut agents = None;
    let mut bench = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bench" => bench = true,
            "--agents" => agents = args.next().and_then(|n| n.parse::<usize>().ok()),
            // cargo's own flags and filters mean nothing here.
            _ => {}
        }
    }
    let agents = agents.unwrap_or(if bench { 1000 } else { 20 });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("scale: no runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(measure(agents)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scale: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn measure(n: usize) -> Result<(), String> {
    let fleet = fleet::Fleet::new(n)?;
    let daemon = fleet.start(BOUND)?;
    let with_log = |e: String| format!("{e}\ncontroller log:\n{}", daemon.log_tail());

    let cpu = || -> Result<_, String> { Ok((daemon.cpu()?, fleet::cpu_time("self")?)) };
    let cpu_start = cpu()?;
    let start = Instant::now();
    let (swarm, mut tracker) = fleet.enroll(daemon.addr, 0..n, true, BOUND)?;
    tracker
        .wait("enrolling every agent", BOUND, |t| t.leases.len() == n)
        .await
        .map_err(with_log)?;
    let enrolled = start.elapsed();
    let mut leases: Vec<_> = tracker.leases.values().collect();
    leases.sort();
    leases.dedup();
    if leases.len() != n || leases.iter().any(|l| l.is_none()) {
        return Err(format!("{n} agents but {} distinct leases", leases.len()));
    }
    // Pushes of the last enrollments are still on their way; the change is measured from a
    // settled mesh.
    let settled_epoch = fleet.status(BOUND).await?.epoch;
    tracker
        .wait("pushing the last enrollment's epoch", BOUND, |t| {
            t.at_epoch(settled_epoch) == n
        })
        .await
        .map_err(with_log)?;
    let settled = start.elapsed();
    let cpu_settled = cpu()?;

    let change = Instant::now();
    let request = Request::DeviceAdd {
        name: "scale-device".into(),
    };
    let epoch = match fleet.admin(request, BOUND).await? {
        Outcome::Device { epoch, .. } => epoch,
        other => return Err(format!("device add answered {other:?}")),
    };
    tracker
        .wait("pushing the device's epoch", BOUND, |t| {
            t.at_epoch(epoch) == n
        })
        .await
        .map_err(with_log)?;
    let pushed = change.elapsed();
    let cpu_pushed = cpu()?;
    let (peak, current) = daemon.memory()?;
    let netmap = tracker.netmap_bytes.get(&epoch).copied().unwrap_or(0);
    swarm.stop(Duration::from_secs(5)).await;

    let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
    println!("wiremesh-controller with {n} agents over loopback QUIC");
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| enroll all {n} (lease + netmap each) | {:.2} s |",
        enrolled.as_secs_f64()
    );
    println!(
        "| ... until all hold the last epoch ({settled_epoch}) | {:.2} s |",
        settled.as_secs_f64()
    );
    println!(
        "| push one change (device add) to all {n} | {:.3} s |",
        pushed.as_secs_f64()
    );
    let spent = |from: (Duration, Duration), to: (Duration, Duration)| {
        format!(
            "{:.2} s / {:.2} s",
            (to.0 - from.0).as_secs_f64(),
            (to.1 - from.1).as_secs_f64()
        )
    };
    println!(
        "| CPU controller / agents, enrolling until settled | {} |",
        spent(cpu_start, cpu_settled)
    );
    println!(
        "| CPU controller / agents, pushing the change | {} |",
        spent(cpu_settled, cpu_pushed)
    );
    println!(
        "| enrollments cut off on the way (over 10 s) and tried again | {} |",
        tracker.retries
    );
    println!("| controller peak RSS (VmHWM) | {:.1} MiB |", mib(peak));
    println!(
        "| controller RSS afterwards (VmRSS) | {:.1} MiB |",
        mib(current)
    );
    println!("| netmap of epoch {epoch} | {netmap} bytes |");
    Ok(())
}
