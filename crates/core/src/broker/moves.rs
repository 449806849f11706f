//! Move tasks: redrive messages from a dead-letter queue back to where they
//! came from, or to a chosen queue, at a chosen rate; cancellable.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::Timestamp;
use crate::error::{CoreError, CoreResult};
use crate::message::Message;
use crate::store::Record;

use super::{Broker, QueueHandle, lock};

/// Messages moved per step when no rate is set.
const UNLIMITED_BATCH: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MoveStatus {
    Running,
    Completed,
    Cancelling,
    Cancelled,
    Failed(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoveTaskInfo {
    pub id: String,
    pub namespace: String,
    pub source: String,
    /// `None`: each message goes back to the queue it was dead-lettered from.
    pub destination: Option<String>,
    /// Messages per second; `None`: as fast as possible.
    pub rate: Option<u32>,
    pub status: MoveStatus,
    pub moved: u64,
    /// Messages in the source when the task started.
    pub to_move: u64,
    pub started_at: Timestamp,
}

struct Task {
    info: std::sync::Mutex<MoveTaskInfo>,
    cancel: watch::Sender<bool>,
}

#[derive(Default)]
pub(super) struct MoveTasks {
    next: AtomicU64,
    tasks: std::sync::Mutex<HashMap<String, Arc<Task>>>,
}

impl Broker {
    /// Starts moving the messages now in `source` (must be called inside a
    /// tokio runtime). Returns the task id.
    pub fn start_move_task(
        self: &Arc<Self>,
        namespace: &str,
        source: &str,
        destination: Option<&str>,
        rate: Option<u32>,
    ) -> CoreResult<String> {
        let src = self.queue(namespace, source)?;
        if let Some(d) = destination {
            self.queue(namespace, d)?;
        }
        if rate == Some(0) {
            return Err(CoreError::InvalidRate);
        }
        let mut tasks = lock(&self.moves.tasks);
        let busy = tasks.values().any(|t| {
            let i = lock(&t.info);
            i.namespace == namespace
                && i.source == source
                && matches!(i.status, MoveStatus::Running | MoveStatus::Cancelling)
        });
        if busy {
            return Err(CoreError::TaskRunning(source.to_owned()));
        }
        let n = self.moves.next.fetch_add(1, Ordering::Relaxed) + 1;
        let id = format!("move-{n}");
        let (below_seq, to_move) = {
            let core = lock(&src.core);
            (core.next_seq(), core.stats().ready)
        };
        let info = MoveTaskInfo {
            id: id.clone(),
            namespace: namespace.to_owned(),
            source: source.to_owned(),
            destination: destination.map(str::to_owned),
            rate,
            status: MoveStatus::Running,
            moved: 0,
            to_move,
            started_at: self.clock.now(),
        };
        let (cancel, cancelled) = watch::channel(false);
        let task = Arc::new(Task {
            info: std::sync::Mutex::new(info),
            cancel,
        });
        tasks.insert(id.clone(), Arc::clone(&task));
        drop(tasks);
        let broker = Arc::clone(self);
        tokio::spawn(async move {
            let status = broker.run_move(&task, &src, below_seq, cancelled).await;
            lock(&task.info).status = status;
        });
        Ok(id)
    }

    /// Asks a running task to stop; messages already moved stay moved.
    pub fn cancel_move_task(&self, id: &str) -> CoreResult<MoveTaskInfo> {
        let task = lock(&self.moves.tasks)
            .get(id)
            .cloned()
            .ok_or_else(|| CoreError::TaskNotFound(id.to_owned()))?;
        let mut info = lock(&task.info);
        if info.status != MoveStatus::Running {
            return Err(CoreError::TaskNotFound(id.to_owned()));
        }
        info.status = MoveStatus::Cancelling;
        let _ = task.cancel.send(true);
        Ok(info.clone())
    }

    /// Tasks on `source` (all sources if `None`), newest first.
    pub fn move_tasks(&self, namespace: &str, source: Option<&str>) -> Vec<MoveTaskInfo> {
        let mut v: Vec<MoveTaskInfo> = lock(&self.moves.tasks)
            .values()
            .map(|t| lock(&t.info).clone())
            .filter(|i| i.namespace == namespace && source.is_none_or(|s| s == i.source))
            .collect();
        v.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(b.id.cmp(&a.id)));
        v
    }

    async fn run_move(
        &self,
        task: &Task,
        src: &Arc<QueueHandle>,
        below_seq: u64,
        mut cancelled: watch::Receiver<bool>,
    ) -> MoveStatus {
        let (namespace, destination, rate, started) = {
            let i = lock(&task.info);
            (
                i.namespace.clone(),
                i.destination.clone(),
                i.rate,
                i.started_at,
            )
        };
        let batch = rate.map_or(UNLIMITED_BATCH, |r| (r as usize).clamp(1, UNLIMITED_BATCH));
        let mut moved: u64 = 0;
        let mut taken = Vec::new();
        loop {
            if *cancelled.borrow() {
                return MoveStatus::Cancelled;
            }
            taken.clear();
            // Nobody waits on what taking journals (expiries it comes
            // across): each taken message's removal goes with its new
            // home (see `move_one`).
            let _nothing = self.op(src, |core, now, fx| {
                core.take_for_move(now, batch, below_seq, fx, &mut taken)
            });
            if taken.is_empty() {
                return if src.is_deleted() {
                    MoveStatus::Failed("the source queue was deleted".into())
                } else {
                    MoveStatus::Completed
                };
            }
            let mut batch = taken.drain(..);
            while let Some((body, removal)) = batch.next() {
                // Evicted ones are read back here, with the source's lock
                // released. One that cannot be is out of the source in
                // memory only: its removal is not journaled, so a restart
                // brings it back rather than lose it.
                let msg = match self.body_of(body) {
                    Ok(m) => m,
                    Err(err) => {
                        tracing::error!(queue = %src.name, error = %err, "an evicted message could not be read back for a move; its journal record is kept");
                        continue;
                    }
                };
                if let Err(e) = self.move_one(&namespace, destination.as_deref(), msg, removal, src)
                {
                    // What was taken and not moved goes back to the source.
                    for (body, removal) in batch {
                        match self.body_of(body) {
                            Ok(msg) => self.put_back(src, msg, removal),
                            Err(err) => {
                                tracing::error!(queue = %src.name, error = %err, "an evicted message could not be read back to return it; its journal record is kept");
                            }
                        }
                    }
                    return MoveStatus::Failed(e.to_string());
                }
                moved += 1;
                lock(&task.info).moved = moved;
            }
            match rate {
                Some(r) => {
                    // Pace so that `moved` messages take `moved / r` seconds.
                    let due = started.plus(Duration::from_millis(moved * 1000 / u64::from(r)));
                    let sleep = self.clock.sleep_until(due);
                    tokio::select! {
                        _ = sleep => {}
                        _ = cancelled.changed() => {}
                    }
                }
                None => tokio::task::yield_now().await,
            }
        }
    }

    /// Puts one taken message into its destination, its removal from the
    /// source journaled in the same append. If the destination refuses it,
    /// it goes back.
    fn move_one(
        &self,
        namespace: &str,
        destination: Option<&str>,
        msg: Arc<Message>,
        removal: Option<Record>,
        src: &Arc<QueueHandle>,
    ) -> CoreResult<()> {
        let mut removal = removal;
        let target = destination.or_else(|| msg.last_death_queue());
        let result = match target {
            Some(t) => self
                .queue(namespace, t)
                .and_then(|q| self.enqueue_existing(&q, Arc::clone(&msg), true, 0, &mut removal)),
            None => Err(CoreError::NoDeadLetterSource),
        };
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                self.put_back(src, msg, removal);
                Err(e)
            }
        }
    }

    /// Returns a taken message to its source (at the back); its old record
    /// is removed in the same append that writes the new one.
    fn put_back(&self, src: &Arc<QueueHandle>, msg: Arc<Message>, removal: Option<Record>) {
        let mut removal = removal;
        if let Err(e) = self.enqueue_existing(src, msg, true, 0, &mut removal) {
            tracing::error!(queue = %src.name, error = %e, "a message taken for a move could not go back; it stays only in the journal until a restart");
        }
    }
}
