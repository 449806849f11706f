//! The broker's resource alarm, raised by more than one resource: memory
//! over its high watermark, disk free space under its limit. The broker
//! sees one alarm (publishers wait while it is up) whose reason names
//! every resource that raised it.

use std::sync::{Arc, Mutex, PoisonError};

use ferry_core::Broker;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Resource {
    Memory,
    Disk,
}

pub struct Alarms {
    broker: Arc<Broker>,
    /// (memory, disk): each resource's reason while it is short.
    reasons: Mutex<(Option<String>, Option<String>)>,
}

impl Alarms {
    pub fn new(broker: Arc<Broker>) -> Self {
        Alarms {
            broker,
            reasons: Mutex::new((None, None)),
        }
    }

    /// Raises (`Some(reason)`) or clears (`None`) one resource's alarm.
    pub fn set(&self, resource: Resource, reason: Option<String>) {
        let mut r = self.reasons.lock().unwrap_or_else(PoisonError::into_inner);
        match resource {
            Resource::Memory => r.0 = reason,
            Resource::Disk => r.1 = reason,
        }
        let all: Vec<&str> = [&r.0, &r.1]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        self.broker
            .set_alarm((!all.is_empty()).then(|| all.join("; ")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alarm_stays_up_while_any_resource_is_short() {
        let broker = Broker::in_memory();
        let alarms = Alarms::new(Arc::clone(&broker));
        let alarm = broker.alarm();
        alarms.set(Resource::Memory, Some("memory".into()));
        alarms.set(Resource::Disk, Some("disk".into()));
        assert_eq!(alarm.borrow().as_deref(), Some("memory; disk"));
        alarms.set(Resource::Memory, None);
        assert_eq!(alarm.borrow().as_deref(), Some("disk"));
        alarms.set(Resource::Disk, None);
        assert!(alarm.borrow().is_none());
    }
}
