//! NCCL data parallelism through cudarc (feature `cuda`; design "scale plan"): bucketed all-reduce
//! of gradients and broadcast of weights between learner ranks, one per GPU.
//!
//! - The unique id: rank 0 calls [`new_unique_id`] and hands the 128 bytes to the other ranks
//!   (`deepsearch learner` sends them over gRPC: `crate::runtime::ranks`, `JoinGroup`); each rank
//!   builds [`NcclCollective::new`].
//! - One OS thread owns the communicator (`ncclComm_t` is used from that thread only); callers
//!   send it jobs over a channel (style rule 9).
//! - Tensors: each bucket of tensors is flattened into one contiguous CUDA buffer; the caller
//!   synchronises the device (so the buffer is complete), the communicator thread runs the NCCL
//!   call on the legacy default stream and synchronises it, the caller copies the result back.
//!   Simple and correct; overlapping communication with backward is future work.
//! - Watchdog: the caller waits for each job with the collective deadline; past it the
//!   communicator is aborted (`ncclCommAbort`, allowed from another thread, unblocks the stuck
//!   call) and [`LearnerError::CollectiveTimeout`] is returned: no silent hang. The collective is
//!   then unusable; the runtime restarts the rank group.
//!
//! Cannot run on a machine without a GPU; compiled in CI with
//! `cargo check -p deepsearch-learner --features cuda`; exercised by
//! `cargo test -p deepsearch-learner --features cuda-tests --test cuda` on a GPU host
//! (libnccl.so from `scripts/setup-libtorch.sh --with-nccl`).

use crate::collective::{buckets, Collective};
use crate::error::{LearnerError, Result};
use cudarc::nccl::{result as nccl, sys};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tch::{Device, Kind, Tensor};

/// A new NCCL unique id (call on rank 0, send the bytes to every other rank).
pub fn new_unique_id() -> Result<Vec<u8>> {
    let id = nccl::get_uniqueid().map_err(|e| nccl_err("get_unique_id", 0, e))?;
    Ok(id.internal.iter().map(|&c| c as u8).collect())
}

fn nccl_err(op: &str, rank: usize, e: impl std::fmt::Debug) -> LearnerError {
    LearnerError::Collective {
        op: op.into(),
        rank,
        msg: format!("nccl: {e:?}"),
    }
}

/// The communicator handle, shared with the watchdog only for `ncclCommAbort`.
struct CommPtr(sys::ncclComm_t);
// SAFETY: the communicator is used for collectives only by the communicator thread; the other
// use is `ncclCommAbort`, which NCCL documents as callable from another thread to unblock it.
unsafe impl Send for CommPtr {}

#[derive(Clone, Copy, Debug)]
enum Op {
    AllReduceSum,
    Broadcast(i32),
}

struct Job {
    op: Op,
    /// Device pointer of a contiguous buffer, its element count and NCCL dtype.
    ptr: usize,
    count: usize,
    dtype: sys::ncclDataType_t,
    reply: mpsc::Sender<std::result::Result<(), String>>,
}

/// One rank of an NCCL group.
pub struct NcclCollective {
    rank: usize,
    world: usize,
    device: usize,
    timeout: Duration,
    bucket_elems: usize,
    jobs: mpsc::Sender<Job>,
    comm: Arc<Mutex<Option<CommPtr>>>,
    aborted: Arc<AtomicBool>,
}

impl std::fmt::Debug for NcclCollective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NcclCollective")
            .field("rank", &self.rank)
            .field("world", &self.world)
            .finish()
    }
}

/// Parameters of [`NcclCollective::new`].
#[derive(Clone, Debug)]
pub struct NcclParams {
    pub rank: usize,
    pub world: usize,
    /// CUDA device ordinal of this rank.
    pub device: usize,
    /// The 128-byte unique id from rank 0's [`new_unique_id`].
    pub unique_id: Vec<u8>,
    pub timeout: Duration,
    pub bucket_elems: usize,
}

fn nccl_dtype(kind: Kind) -> Result<sys::ncclDataType_t> {
    match kind {
        Kind::Float => Ok(sys::ncclDataType_t::ncclFloat32),
        Kind::BFloat16 => Ok(sys::ncclDataType_t::ncclBfloat16),
        Kind::Half => Ok(sys::ncclDataType_t::ncclFloat16),
        other => Err(LearnerError::InvalidArgument {
            arg: "tensor".into(),
            msg: format!("no NCCL dtype for {other:?}"),
        }),
    }
}

/// Runs on the communicator thread: binds the device's primary context, joins the group.
fn init_comm(p: &NcclParams) -> std::result::Result<sys::ncclComm_t, String> {
    use cudarc::driver::result as drv;
    drv::init().map_err(|e| format!("cuInit: {e:?}"))?;
    let dev = drv::device::get(p.device as i32).map_err(|e| format!("device {}: {e:?}", p.device))?;
    // SAFETY: `dev` comes from device::get; the primary context is the one libtorch uses.
    let ctx = unsafe { drv::primary_ctx::retain(dev) }.map_err(|e| format!("primary context: {e:?}"))?;
    // SAFETY: `ctx` is a live primary context retained above (never released: process lifetime).
    unsafe { drv::ctx::set_current(ctx) }.map_err(|e| format!("set context: {e:?}"))?;
    let mut id = sys::ncclUniqueId { internal: [0; 128] };
    if p.unique_id.len() != id.internal.len() {
        return Err(format!(
            "unique id has {} bytes, expected {}",
            p.unique_id.len(),
            id.internal.len()
        ));
    }
    for (d, s) in id.internal.iter_mut().zip(&p.unique_id) {
        *d = *s as _;
    }
    let mut comm = std::mem::MaybeUninit::uninit();
    // SAFETY: `comm` is a valid out-pointer; rank/world are checked by NCCL against the id.
    unsafe { nccl::comm_init_rank(comm.as_mut_ptr(), p.world as i32, id, p.rank as i32) }
        .map_err(|e| format!("comm_init_rank: {e:?}"))?;
    // SAFETY: comm_init_rank succeeded, so `comm` is initialised.
    Ok(unsafe { comm.assume_init() })
}

fn serve(comm: sys::ncclComm_t, jobs: mpsc::Receiver<Job>) {
    for job in jobs {
        let null_stream: sys::cudaStream_t = std::ptr::null_mut();
        // SAFETY: `ptr` is a contiguous CUDA buffer of `count` elements of `dtype` that the caller
        // keeps alive (and does not touch) until it receives the reply; `comm` is owned by this
        // thread. The legacy default stream orders the call after the caller's synchronize.
        let res = unsafe {
            match job.op {
                Op::AllReduceSum => nccl::all_reduce(
                    job.ptr as *const _,
                    job.ptr as *mut _,
                    job.count,
                    job.dtype,
                    sys::ncclRedOp_t::ncclSum,
                    comm,
                    null_stream,
                ),
                Op::Broadcast(root) => nccl::broadcast(
                    job.ptr as *const _,
                    job.ptr as *mut _,
                    job.count,
                    job.dtype,
                    root,
                    comm,
                    null_stream,
                ),
            }
        };
        let res = res.map(|_| ()).map_err(|e| format!("{e:?}")).and_then(|_| {
            // SAFETY: synchronising the legacy default stream of the current context.
            unsafe { cudarc::driver::result::stream::synchronize(std::ptr::null_mut()) }
                .map_err(|e| format!("stream sync: {e:?}"))
        });
        let _ = job.reply.send(res);
    }
}

impl NcclCollective {
    /// Starts the communicator thread and joins the group (blocks until every rank has joined,
    /// or fails after `timeout`).
    pub fn new(p: NcclParams) -> Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let comm: Arc<Mutex<Option<CommPtr>>> = Arc::new(Mutex::new(None));
        let comm2 = comm.clone();
        let params = p.clone();
        std::thread::Builder::new()
            .name(format!("nccl-rank-{}", p.rank))
            .spawn(move || match init_comm(&params) {
                Ok(c) => {
                    if let Ok(mut g) = comm2.lock() {
                        *g = Some(CommPtr(c));
                    }
                    let _ = ready_tx.send(Ok(()));
                    serve(c, rx);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(|e| LearnerError::Collective {
                op: "init".into(),
                rank: p.rank,
                msg: e.to_string(),
            })?;
        match ready_rx.recv_timeout(p.timeout) {
            Ok(Ok(())) => {}
            Ok(Err(msg)) => {
                return Err(LearnerError::Collective {
                    op: "init".into(),
                    rank: p.rank,
                    msg,
                })
            }
            Err(_) => {
                return Err(LearnerError::CollectiveTimeout {
                    op: "init".into(),
                    rank: p.rank,
                    waited_ms: p.timeout.as_millis() as u64,
                    msg: "not every rank joined".into(),
                })
            }
        }
        Ok(NcclCollective {
            rank: p.rank,
            world: p.world,
            device: p.device,
            timeout: p.timeout,
            bucket_elems: p.bucket_elems,
            jobs: tx,
            comm,
            aborted: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Runs one job with the watchdog.
    fn submit(&self, name: &str, op: Op, buf: &Tensor) -> Result<()> {
        if self.aborted.load(Ordering::SeqCst) {
            return Err(LearnerError::Collective {
                op: name.into(),
                rank: self.rank,
                msg: "communicator aborted earlier".into(),
            });
        }
        // host/device sync: the buffer must be complete before NCCL reads it on another stream
        tch::Cuda::synchronize(self.device as i64);
        let (reply, wait) = mpsc::channel();
        let job = Job {
            op,
            ptr: buf.data_ptr() as usize,
            count: buf.numel(),
            dtype: nccl_dtype(buf.kind())?,
            reply,
        };
        self.jobs.send(job).map_err(|_| LearnerError::Collective {
            op: name.into(),
            rank: self.rank,
            msg: "communicator thread is gone".into(),
        })?;
        match wait.recv_timeout(self.timeout) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(msg)) => Err(LearnerError::Collective {
                op: name.into(),
                rank: self.rank,
                msg,
            }),
            Err(_) => {
                self.aborted.store(true, Ordering::SeqCst);
                if let Ok(g) = self.comm.lock() {
                    if let Some(c) = g.as_ref() {
                        // SAFETY: see CommPtr; aborting unblocks the communicator thread.
                        let _ = unsafe { nccl::comm_abort(c.0) };
                    }
                }
                tracing::error!(
                    op = name,
                    rank = self.rank,
                    "nccl deadline passed: communicator aborted"
                );
                Err(LearnerError::CollectiveTimeout {
                    op: name.into(),
                    rank: self.rank,
                    waited_ms: self.timeout.as_millis() as u64,
                    msg: "communicator aborted".into(),
                })
            }
        }
    }

    fn run(&mut self, name: &str, tensors: &mut [Tensor], op: Op) -> Result<()> {
        let numels: Vec<usize> = tensors.iter().map(|t| t.numel()).collect();
        for (b, range) in buckets(&numels, self.bucket_elems).into_iter().enumerate() {
            let label = format!("{name}[bucket {b}]");
            let kind = tensors[range.start].kind();
            let flat: Vec<Tensor> = tensors[range.clone()]
                .iter()
                .map(|t| t.detach().to_kind(kind).reshape([-1]))
                .collect();
            let buf = Tensor::cat(&flat, 0).to_device(Device::Cuda(self.device)).contiguous();
            self.submit(&label, op, &buf)?;
            let _g = tch::no_grad_guard();
            let mut off = 0i64;
            for t in &mut tensors[range] {
                let n = t.numel() as i64;
                t.copy_(&buf.narrow(0, off, n).view(t.size().as_slice()).to_kind(t.kind()));
                off += n;
            }
        }
        Ok(())
    }
}

impl Collective for NcclCollective {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world(&self) -> usize {
        self.world
    }
    fn all_reduce_sum(&mut self, tensors: &mut [Tensor]) -> Result<()> {
        self.run("all_reduce", tensors, Op::AllReduceSum)
    }
    fn broadcast(&mut self, tensors: &mut [Tensor], root: usize) -> Result<()> {
        self.run("broadcast", tensors, Op::Broadcast(root as i32))
    }
}
