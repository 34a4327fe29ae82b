//! A worker process for the fault tests: `fault-worker URL CONCURRENCY`. Stops on SIGTERM/SIGINT.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(url), Some(concurrency)) = (args.get(1), args.get(2).and_then(|c| c.parse().ok()))
    else {
        eprintln!("usage: fault-worker URL CONCURRENCY");
        return ExitCode::from(2);
    };
    let worker = match jobq_tests::worker(url, concurrency) {
        Ok(worker) => worker,
        Err(e) => {
            eprintln!("fault-worker: {e}");
            return ExitCode::FAILURE;
        }
    };
    match worker.run_until(jobq_core::worker::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fault-worker: {e}");
            ExitCode::FAILURE
        }
    }
}
