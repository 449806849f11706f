//! The seeded simulation of the broker core (see `simulation.rs`).
//!
//! - `rng`: the seeded PRNG everything random draws from.
//! - `queues`: the simulated queues and their settings.
//! - `store`: the faulty store (delays, failures, refusals, torn crashes).
//! - `waiters`: publishers waiting on their commits, woken in random order.
//! - `model`: the reference model.
//! - `attribution`: each operation's records against the model's changes.
//! - `ops`: the random operations.
//! - `driver`: one seed's run, operation by operation.
//! - `recovery`: crashes, and the checks of what comes back.

/// The outcome of a check: `Err` says what went wrong.
pub type Check<T = ()> = Result<T, String>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

pub mod attribution;
pub mod driver;
pub mod model;
pub mod ops;
pub mod queues;
pub mod recovery;
pub mod rng;
pub mod store;
pub mod waiters;

use driver::{Sim, Totals};

/// Runs one seed for `ops` operations (crashes included, plus a final one).
/// On failure: what went wrong, and the operations that led there.
pub fn run_seed(seed: u64, ops: usize) -> Result<Totals, String> {
    let mut sim = Sim::new(seed)?;
    let mut left = ops;
    loop {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| format!("runtime: {e}"))?;
        let outcome = runtime.block_on(sim.run_life(&mut left));
        // The life ends with its runtime: tasks the broker spawned go too.
        drop(runtime);
        let result = outcome.and_then(|keep| sim.crash_and_recover(keep));
        if let Err(e) = result {
            let tail: Vec<&String> = sim.trace.iter().rev().take(40).collect();
            let trace = if std::env::var_os("FERRY_SIM_TRACE").is_some() {
                sim.trace.join("\n    ")
            } else {
                tail.into_iter()
                    .rev()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n    ")
            };
            return Err(format!(
                "{e}\n  last operations (FERRY_SIM_TRACE=1 for all):\n    {trace}"
            ));
        }
        if left == 0 {
            return Ok(sim.totals);
        }
    }
}
