//! The gateway's Prometheus text: fleet gauges per model (queue depth, workers, busy workers) for
//! autoscaling on queue depth, Redis reachability, and what this gateway accepted or refused.

use std::fmt::Write as _;

use crate::registry::FleetView;

pub fn render(fleet: &FleetView, submitted: u64, full: u64, unavailable: u64) -> String {
    let mut out = String::new();
    let total: usize = fleet.models.values().map(|model| model.waiting).sum();
    let gauge = |out: &mut String, name: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    };
    gauge(
        &mut out,
        "sd_worker_queue_depth",
        "Jobs waiting in the queue (all models)",
    );
    let _ = writeln!(out, "sd_worker_queue_depth {total}");
    gauge(
        &mut out,
        "sd_fleet_queue_depth",
        "Jobs waiting for a worker, by model",
    );
    for (name, model) in &fleet.models {
        let _ = writeln!(
            out,
            "sd_fleet_queue_depth{{model=\"{}\"}} {}",
            label(name),
            model.waiting
        );
    }
    gauge(
        &mut out,
        "sd_fleet_workers",
        "Live workers (heartbeating), by model",
    );
    for (name, model) in &fleet.models {
        let _ = writeln!(
            out,
            "sd_fleet_workers{{model=\"{}\"}} {}",
            label(name),
            model.workers
        );
    }
    gauge(
        &mut out,
        "sd_fleet_workers_busy",
        "Workers running a job, by model",
    );
    for (name, model) in &fleet.models {
        let _ = writeln!(
            out,
            "sd_fleet_workers_busy{{model=\"{}\"}} {}",
            label(name),
            model.busy
        );
    }
    gauge(
        &mut out,
        "sd_fleet_redis_up",
        "1 when the last read of Redis succeeded",
    );
    let _ = writeln!(out, "sd_fleet_redis_up {}", u8::from(fleet.reachable));
    let _ = writeln!(
        out,
        "# HELP sd_worker_jobs_submitted Jobs this gateway accepted\n# TYPE sd_worker_jobs_submitted counter\n\
         sd_worker_jobs_submitted_total {submitted}"
    );
    let _ = writeln!(
        out,
        "# HELP sd_worker_jobs_rejected Jobs this gateway refused, by reason\n# TYPE sd_worker_jobs_rejected counter\n\
         sd_worker_jobs_rejected_total{{reason=\"queue_full\"}} {full}\n\
         sd_worker_jobs_rejected_total{{reason=\"queue_unavailable\"}} {unavailable}"
    );
    out.push_str("# EOF\n");
    out
}

fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
