//! Data parallelism behind one trait (design "learner ranks"): every rank computes gradients on its
//! share of the mini-batch, [`Collective::all_reduce_sum`] sums them so every rank applies the same
//! AdamW update, [`Collective::broadcast`] copies rank 0's weights to the others.
//!
//! Implementations: [`SingleProcess`] (world of one, no-ops); [`ThreadGroup`] (ranks as threads of
//! one process, for CPU tests: a shared slot + condition variable, summation in rank order so
//! every rank gets bit-identical results); [`crate::TcpCollective`] (ranks as processes on CPUs,
//! over TCP through rank 0; what `deepsearch learner --world-size W` uses without CUDA);
//! `NcclCollective` (feature `cuda`, in `crate::nccl`).
//!
//! No silent hangs (design, complaint #1): every wait has a deadline; past it the call returns
//! [`LearnerError::CollectiveTimeout`] naming the operation, the rank and the missing ranks, and the
//! group is marked aborted so the other ranks fail fast instead of waiting in turn.

use crate::error::{LearnerError, Result};
use std::ops::Range;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tch::{Kind, Tensor};

/// Collective operations over the ranks of a data-parallel group.
pub trait Collective: Send {
    fn rank(&self) -> usize;
    fn world(&self) -> usize;
    /// Sums `tensors` element-wise over all ranks, in place (all ranks end with the sum).
    fn all_reduce_sum(&mut self, tensors: &mut [Tensor]) -> Result<()>;
    /// Copies rank `root`'s `tensors` into every other rank's, in place.
    fn broadcast(&mut self, tensors: &mut [Tensor], root: usize) -> Result<()>;
}

/// Splits tensors (by element count) into consecutive buckets of about `bucket_elems` elements;
/// a tensor larger than a bucket gets a bucket of its own. Pure; shared by every implementation.
pub fn buckets(numels: &[usize], bucket_elems: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut acc) = (0, 0);
    for (i, &n) in numels.iter().enumerate() {
        if acc > 0 && acc + n > bucket_elems {
            out.push(start..i);
            start = i;
            acc = 0;
        }
        acc += n;
    }
    if start < numels.len() {
        out.push(start..numels.len());
    }
    out
}

/// A world of one: every collective is the identity.
#[derive(Debug, Default)]
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn world(&self) -> usize {
        1
    }
    fn all_reduce_sum(&mut self, _tensors: &mut [Tensor]) -> Result<()> {
        Ok(())
    }
    fn broadcast(&mut self, _tensors: &mut [Tensor], _root: usize) -> Result<()> {
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Combine {
    Sum,
    From(usize),
}

#[derive(Debug)]
struct Slot {
    op: Option<String>,
    arrived: usize,
    bufs: Vec<Option<Vec<f32>>>,
    result: Option<Arc<Vec<f32>>>,
    done_round: u64,
    aborted: Option<String>,
}

#[derive(Debug)]
struct Shared {
    slot: Mutex<Slot>,
    cv: Condvar,
    world: usize,
    timeout: Duration,
}

/// Factory of in-process ranks.
#[derive(Debug)]
pub struct ThreadGroup;

impl ThreadGroup {
    /// `world` connected ranks (move one to each thread); every wait times out after `timeout`.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(world: usize, timeout: Duration, bucket_elems: usize) -> Vec<ThreadCollective> {
        let shared = Arc::new(Shared {
            slot: Mutex::new(Slot {
                op: None,
                arrived: 0,
                bufs: vec![None; world],
                result: None,
                done_round: 0,
                aborted: None,
            }),
            cv: Condvar::new(),
            world,
            timeout,
        });
        (0..world)
            .map(|rank| ThreadCollective {
                shared: shared.clone(),
                rank,
                round: 0,
                bucket_elems,
            })
            .collect()
    }
}

/// One in-process rank of a [`ThreadGroup`].
#[derive(Debug)]
pub struct ThreadCollective {
    shared: Arc<Shared>,
    rank: usize,
    round: u64,
    bucket_elems: usize,
}

impl ThreadCollective {
    /// Deposits `data` for this round, waits (with the deadline) until every rank has, and
    /// returns the combined buffer (identical on every rank).
    fn exchange(&mut self, op: &str, data: Vec<f32>, how: Combine) -> Result<Arc<Vec<f32>>> {
        let sh = &*self.shared;
        self.round += 1;
        let round = self.round;
        let start = Instant::now();
        let deadline = start + sh.timeout;
        let err = |msg: String| LearnerError::Collective {
            op: op.into(),
            rank: self.rank,
            msg,
        };
        let mut s = sh.slot.lock().map_err(|_| err("group lock poisoned".into()))?;
        if let Some(why) = &s.aborted {
            return Err(err(format!("group aborted earlier: {why}")));
        }
        match &s.op {
            Some(other) if other != op => {
                let why = format!("rank {} called `{op}` while others are in `{other}`", self.rank);
                s.aborted = Some(why.clone());
                sh.cv.notify_all();
                return Err(err(why));
            }
            _ => s.op = Some(op.to_string()),
        }
        s.bufs[self.rank] = Some(data);
        s.arrived += 1;
        if s.arrived == sh.world {
            let combined = combine(&mut s.bufs, how).map_err(&err);
            let combined = match combined {
                Ok(c) => c,
                Err(e) => {
                    s.aborted = Some(e.to_string());
                    sh.cv.notify_all();
                    return Err(e);
                }
            };
            s.result = Some(Arc::new(combined));
            s.done_round = round;
            s.arrived = 0;
            s.op = None;
            sh.cv.notify_all();
        } else {
            while s.done_round < round {
                if let Some(why) = &s.aborted {
                    return Err(err(format!("group aborted: {why}")));
                }
                let now = Instant::now();
                if now >= deadline {
                    let missing: Vec<usize> = (0..sh.world).filter(|&r| s.bufs[r].is_none()).collect();
                    let msg = format!("ranks {missing:?} never arrived");
                    s.aborted = Some(format!("`{op}` timed out on rank {}: {msg}", self.rank));
                    sh.cv.notify_all();
                    tracing::error!(op, rank = self.rank, ?missing, "collective deadline passed");
                    return Err(LearnerError::CollectiveTimeout {
                        op: op.into(),
                        rank: self.rank,
                        waited_ms: start.elapsed().as_millis() as u64,
                        msg,
                    });
                }
                s = sh
                    .cv
                    .wait_timeout(s, deadline - now)
                    .map_err(|_| err("group lock poisoned".into()))?
                    .0;
            }
        }
        s.result.clone().ok_or_else(|| err("no result".into()))
    }

    fn run(&mut self, name: &str, tensors: &mut [Tensor], how: Combine) -> Result<()> {
        let numels: Vec<usize> = tensors.iter().map(|t| t.numel()).collect();
        for (b, range) in buckets(&numels, self.bucket_elems).into_iter().enumerate() {
            let op = format!("{name}[bucket {b}]");
            let flat: Vec<Tensor> = tensors[range.clone()]
                .iter()
                .map(|t| {
                    t.detach()
                        .to_kind(Kind::Float)
                        .to_device(tch::Device::Cpu)
                        .reshape([-1])
                })
                .collect();
            let data = Vec::<f32>::try_from(Tensor::cat(&flat, 0))?;
            let out = self.exchange(&op, data, how)?;
            let _g = tch::no_grad_guard();
            let mut off = 0usize;
            for t in &mut tensors[range] {
                let n = t.numel();
                let src = Tensor::from_slice(&out[off..off + n]).view(t.size().as_slice());
                t.copy_(&src.to_kind(t.kind()).to_device(t.device()));
                off += n;
            }
        }
        Ok(())
    }
}

fn combine(bufs: &mut [Option<Vec<f32>>], how: Combine) -> std::result::Result<Vec<f32>, String> {
    let all: Vec<Vec<f32>> = bufs.iter_mut().map(|b| b.take().unwrap_or_default()).collect();
    let len = all[0].len();
    if let Some((r, b)) = all.iter().enumerate().find(|(_, b)| b.len() != len) {
        return Err(format!("rank {r} sent {} elements, rank 0 sent {len}", b.len()));
    }
    Ok(match how {
        Combine::From(root) => all.into_iter().nth(root).ok_or("root out of range")?,
        Combine::Sum => {
            // rank order: every rank gets the same bits
            let mut acc = vec![0f32; len];
            for b in &all {
                for (a, x) in acc.iter_mut().zip(b) {
                    *a += x;
                }
            }
            acc
        }
    })
}

impl Collective for ThreadCollective {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world(&self) -> usize {
        self.shared.world
    }
    fn all_reduce_sum(&mut self, tensors: &mut [Tensor]) -> Result<()> {
        self.run("all_reduce", tensors, Combine::Sum)
    }
    fn broadcast(&mut self, tensors: &mut [Tensor], root: usize) -> Result<()> {
        if root >= self.shared.world {
            return Err(LearnerError::InvalidArgument {
                arg: "root".into(),
                msg: format!("{root} >= world {}", self.shared.world),
            });
        }
        self.run("broadcast", tensors, Combine::From(root))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_plan() {
        assert_eq!(buckets(&[3, 3, 3, 10, 1], 6), vec![0..2, 2..3, 3..4, 4..5]);
        assert_eq!(buckets(&[1, 1, 1], 100), vec![0..3]);
        assert!(buckets(&[], 4).is_empty());
    }

    #[test]
    fn thread_ranks_sum_and_broadcast() {
        let ranks = ThreadGroup::new(3, Duration::from_secs(10), 2);
        let handles: Vec<_> = ranks
            .into_iter()
            .map(|mut c| {
                std::thread::spawn(move || {
                    let r = c.rank() as f32;
                    let mut ts = vec![Tensor::from_slice(&[r, 1.0]), Tensor::from_slice(&[10.0 * r])];
                    c.all_reduce_sum(&mut ts).unwrap();
                    let sum = (
                        Vec::<f32>::try_from(&ts[0]).unwrap(),
                        Vec::<f32>::try_from(&ts[1]).unwrap(),
                    );
                    let mut b = vec![Tensor::from_slice(&[r + 5.0])];
                    c.broadcast(&mut b, 2).unwrap();
                    (sum, Vec::<f32>::try_from(&b[0]).unwrap())
                })
            })
            .collect();
        for h in handles {
            let ((a, b), bc) = h.join().unwrap();
            assert_eq!(a, vec![3.0, 3.0]);
            assert_eq!(b, vec![30.0]);
            assert_eq!(bc, vec![7.0]);
        }
    }

    #[test]
    fn watchdog_names_the_missing_rank_instead_of_hanging() {
        let mut ranks = ThreadGroup::new(2, Duration::from_millis(200), 16);
        let _absent = ranks.pop().unwrap(); // rank 1 never arrives
        let mut c = ranks.pop().unwrap();
        let t0 = Instant::now();
        let err = c.all_reduce_sum(&mut [Tensor::from_slice(&[1f32])]).unwrap_err();
        assert!(t0.elapsed() < Duration::from_secs(5));
        let msg = err.to_string();
        assert!(
            msg.contains("all_reduce[bucket 0]") && msg.contains("rank 0") && msg.contains("[1]"),
            "{msg}"
        );
        // the group is aborted: the next call fails at once
        let err = c
            .all_reduce_sum(&mut [Tensor::from_slice(&[1f32])])
            .unwrap_err()
            .to_string();
        assert!(err.contains("aborted"), "{err}");
    }
}
