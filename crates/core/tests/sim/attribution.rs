//! Matches the changes the model expects of one operation to the records
//! the broker journaled in it, one to one: every expected change must be
//! carried by a record (else a crash could not keep it), and every record
//! must be a change the model expects (else the journal says something
//! the broker did not do). The match tells the model each instance's
//! sequence number and location, and which record carries which change,
//! so a crash's fate of each record is the fate of each change.

use std::collections::HashSet;
use std::sync::Arc;

use ferry_core::message::Message;
use ferry_core::store::{QueueId, Record};

use super::Check;
use super::model::{Ev, Model};
use super::queues::SPECS;
use super::store::{Disk, RecId};

pub fn token_of(m: &Message) -> u64 {
    let mut b = [0u8; 8];
    let n = m.body.len().min(8);
    b[..n].copy_from_slice(&m.body[..n]);
    u64::from_le_bytes(b)
}

fn token_of_arc(m: &Arc<Message>) -> u64 {
    token_of(m)
}

/// Attributes `model.events` to the records logged from index `from` on.
pub fn attribute(model: &mut Model, disk: &Disk, from: usize, qids: &[QueueId]) -> Check {
    let events = std::mem::take(&mut model.events);
    let new = &disk.records[from..];
    let mut claimed = vec![false; new.len()];
    // (record, seq) pairs of `Purged` records already matched.
    let mut purged: HashSet<(usize, u64)> = HashSet::new();
    // (token, target queue, new Enqueued record, removal record) of moves.
    let mut moves: Vec<(u64, usize, RecId, RecId)> = Vec::new();

    let created_now: HashSet<usize> = events
        .iter()
        .filter_map(|ev| match ev {
            Ev::Create(i) => Some(*i),
            _ => None,
        })
        .collect();
    // Creations first: they tell the sequence numbers the rest refer to.
    for ev in &events {
        let Ev::Create(i) = *ev else { continue };
        let (qid, token, at, forwarded) = {
            let e = &model.inst[i];
            (qids[e.queue], e.token, e.at, e.forwarded)
        };
        let found = new.iter().enumerate().position(|(j, l)| {
            !claimed[j]
                && matches!(&l.record, Record::Enqueued { queue, message, at: t, .. }
                    if *queue == qid && token_of_arc(message) == token && t.0 == at)
        });
        let Some(j) = found else {
            return Err(format!(
                "not journaled: m{token} entering {} (no Enqueued record in the operation's appends: {:?})",
                SPECS[model.inst[i].queue].name,
                describe_records(new)
            ));
        };
        claimed[j] = true;
        let l = &new[j];
        let Record::Enqueued {
            seq,
            deliveries,
            replaces,
            forwarded: fw,
            message,
            ..
        } = &l.record
        else {
            unreachable!("matched above")
        };
        ensure!(
            *deliveries == 0 && replaces.is_none() && *fw == forwarded && message.persistent,
            "m{token}'s Enqueued record is off: deliveries {deliveries}, replaces {replaces:?}, forwarded {fw} (model: {forwarded})"
        );
        // FIFO order rests on this: a queue's new message comes after every
        // message it held before this operation (the order of several
        // entering in one operation is checked where it matters: a batch).
        let q = model.inst[i].queue;
        if let Some(&older) = model.live[q].iter().find(|&&o| {
            o != i && model.inst[o].seq.is_some_and(|s| s >= *seq) && !created_now.contains(&o)
        }) {
            return Err(format!(
                "m{token} entered {} with seq {seq}, not after m{} (seq {:?}) that it holds",
                SPECS[q].name, model.inst[older].token, model.inst[older].seq
            ));
        }
        let e = &mut model.inst[i];
        e.seq = Some(*seq);
        e.loc = l.loc;
        e.created = Some((from + j) as RecId);
    }

    for ev in &events {
        match *ev {
            Ev::Create(_) => {}
            Ev::Rejournal(i) => {
                let (qid, seq, token, deliveries) = {
                    let e = &model.inst[i];
                    (qids[e.queue], e.seq, e.token, e.deliveries)
                };
                let found = new.iter().enumerate().position(|(j, l)| {
                    !claimed[j]
                        && matches!(&l.record, Record::Enqueued { queue, seq: s, message, deliveries: d, replaces: None, forwarded: false, .. }
                            if *queue == qid && Some(*s) == seq && token_of_arc(message) == token && *d == deliveries)
                });
                let Some(j) = found else {
                    return Err(format!(
                        "not journaled again: m{token} (seq {seq:?}, {deliveries} deliveries) whose first record failed; appends: {:?}",
                        describe_records(new)
                    ));
                };
                claimed[j] = true;
                let rec = (from + j) as RecId;
                let e = &mut model.inst[i];
                e.created = Some(rec);
                e.loc = new[j].loc;
                e.counts.push((deliveries, rec));
            }
            Ev::Count(i, k) => {
                let (qid, seq, token) = {
                    let e = &model.inst[i];
                    (qids[e.queue], e.seq, e.token)
                };
                let found = new.iter().enumerate().position(|(j, l)| {
                    !claimed[j]
                        && matches!(&l.record, Record::Delivered { queue, seq: s, count }
                            if *queue == qid && Some(*s) == seq && *count == k)
                });
                let Some(j) = found else {
                    return Err(format!(
                        "not journaled: delivery {k} of m{token} (seq {seq:?}); appends: {:?}",
                        describe_records(new)
                    ));
                };
                claimed[j] = true;
                model.inst[i].counts.push((k, (from + j) as RecId));
            }
            Ev::Remove {
                inst,
                why,
                moved_to,
            } => {
                let (qid, seq, token, loc, created) = {
                    let e = &model.inst[inst];
                    (qids[e.queue], e.seq, e.token, e.loc, e.created)
                };
                let created_call = created.map(|r| disk.records[r as usize].call);
                let mut hit = None;
                for (j, l) in new.iter().enumerate() {
                    match &l.record {
                        Record::Removed {
                            queue,
                            seq: s,
                            loc: rl,
                        } if !claimed[j] && *queue == qid && Some(*s) == seq => {
                            hit = Some((j, *rl));
                            claimed[j] = true;
                            break;
                        }
                        Record::Purged { queue, removed } if *queue == qid => {
                            if let Some((s, rl)) = removed
                                .iter()
                                .find(|(s, _)| Some(*s) == seq && !purged.contains(&(j, *s)))
                            {
                                purged.insert((j, *s));
                                hit = Some((j, *rl));
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                let Some((j, rl)) = hit else {
                    return Err(format!(
                        "not journaled: removal ({why:?}) of m{token} (seq {seq:?}) from {}; appends: {:?}",
                        SPECS[model.inst[inst].queue].name,
                        describe_records(new)
                    ));
                };
                // The store counts live messages per file by these.
                let same_call = created_call == Some(new[j].call);
                ensure!(
                    rl == loc || (rl.is_none() && same_call),
                    "the removal of m{token} names location {rl:?}, its Enqueued record is at {loc:?}"
                );
                let rec = (from + j) as RecId;
                if let Some(n) = moved_to {
                    let home = model.inst[n].created.expect("creations are matched first");
                    moves.push((token, model.inst[n].queue, home, rec));
                }
                model.inst[inst].removes.push((rec, why));
            }
        }
    }

    // A move journals the new home first, so a torn write may duplicate a
    // message, never lose it: in every prefix of the log, each message has
    // at least as many new homes as removals by a move. (Copies of one
    // message moved together are alike, so they are compared in order, not
    // paired one by one.)
    moves.sort_unstable();
    for chunk in moves.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)) {
        let mut homes: Vec<RecId> = chunk.iter().map(|m| m.2).collect();
        let mut removals: Vec<RecId> = chunk.iter().map(|m| m.3).collect();
        homes.sort_unstable();
        removals.sort_unstable();
        for (h, r) in homes.iter().zip(&removals) {
            ensure!(
                h < r,
                "m{} moved to {}: a removal by the move (record {r}) is not after a new Enqueued record of it (record {h}); the operation's appends (from record {from}): {:?}",
                chunk[0].0,
                SPECS[chunk[0].1].name,
                describe_records(new)
            );
        }
    }

    for (j, l) in new.iter().enumerate() {
        let unexpected = match &l.record {
            Record::Purged { removed, .. } => {
                removed.iter().any(|(s, _)| !purged.contains(&(j, *s)))
            }
            _ => !claimed[j],
        };
        ensure!(
            !unexpected,
            "journaled a change the model does not expect: {}",
            describe(&l.record)
        );
    }
    Ok(())
}

/// A record, short (message bodies as tokens).
pub fn describe(r: &Record) -> String {
    match r {
        Record::Enqueued {
            queue,
            seq,
            at,
            deliveries,
            message,
            forwarded,
            ..
        } => format!(
            "Enqueued(q{} seq {seq} m{} at {} deliveries {deliveries} forwarded {forwarded})",
            queue.0,
            token_of(message),
            at.0
        ),
        Record::Delivered { queue, seq, count } => {
            format!("Delivered(q{} seq {seq} count {count})", queue.0)
        }
        Record::Removed { queue, seq, loc } => {
            format!("Removed(q{} seq {seq} loc {loc:?})", queue.0)
        }
        Record::Purged { queue, removed } => format!("Purged(q{} {removed:?})", queue.0),
        other => format!("{other:?}"),
    }
}

fn describe_records(new: &[super::store::Logged]) -> Vec<String> {
    new.iter().map(|l| describe(&l.record)).collect()
}
