//! [`TcpCollective`]: the data-parallel [`Collective`] between learner *processes* without GPUs
//! (design "scale plan": the CPU stand-in of NCCL, same trait, same call sites). `deepsearch
//! learner --world-size W` uses it when the model is on the CPU; the tests run it over real
//! sockets on 127.0.0.1.
//!
//! A star through rank 0: rank 0 listens ([`TcpCollective::leader`]), every other rank connects
//! ([`TcpCollective::follower`], retrying until the deadline) and says hello (rank, world size).
//! For each bucket ([`buckets`]) of an all-reduce, every rank > 0 sends its buffer to rank 0,
//! which sums in rank order (0, 1, 2, ... — the order [`crate::ThreadCollective`] uses, so both
//! give the same bits) and sends the sum back; a broadcast goes root → rank 0 → everyone.
//! Tensors travel as little-endian f32 (f64 for a bucket holding an f64 tensor; bf16/f16 are
//! widened to f32, exactly).
//!
//! No silent hangs: every socket read and write has the collective timeout; a peer silent past it
//! gives [`LearnerError::CollectiveTimeout`] naming the peer rank, a closed connection gives
//! [`LearnerError::Collective`] naming it. After any error the collective is aborted: its sockets
//! are shut down (so the other ranks fail at once instead of waiting out their deadline) and
//! every later call fails fast.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use tch::{Kind, Tensor};

use crate::collective::{buckets, Collective};
use crate::error::{LearnerError, Result};

/// First bytes of every hello: guards against a stray client on the port.
const MAGIC: &[u8; 8] = b"DSLRNTCP";

/// Element type on the wire.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Wire {
    F32,
    F64,
}

impl Wire {
    fn of(kind: Kind) -> Wire {
        if kind == Kind::Double {
            Wire::F64
        } else {
            Wire::F32
        }
    }
    fn kind(self) -> Kind {
        match self {
            Wire::F32 => Kind::Float,
            Wire::F64 => Kind::Double,
        }
    }
    fn size(self) -> usize {
        match self {
            Wire::F32 => 4,
            Wire::F64 => 8,
        }
    }
}

/// What every message of one collective step starts with; all ranks must agree on it.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Header {
    /// 1 = all-reduce, 2 = broadcast.
    op: u8,
    wire: u8,
    root: u32,
    bucket: u32,
    bytes: u64,
}

impl Header {
    const LEN: usize = 18;
    fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0] = self.op;
        b[1] = self.wire;
        b[2..6].copy_from_slice(&self.root.to_le_bytes());
        b[6..10].copy_from_slice(&self.bucket.to_le_bytes());
        b[10..18].copy_from_slice(&self.bytes.to_le_bytes());
        b
    }
    fn decode(b: &[u8; Self::LEN]) -> Header {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&b[10..18]);
        Header { op: b[0], wire: b[1], root: u32_at(2), bucket: u32_at(6), bytes: u64::from_le_bytes(bytes) }
    }
}

/// One rank of a TCP group.
#[derive(Debug)]
pub struct TcpCollective {
    rank: usize,
    world: usize,
    timeout: Duration,
    bucket_elems: usize,
    /// Rank 0: the connection to rank r at index r - 1. Other ranks: the one connection to rank 0.
    peers: Vec<TcpStream>,
    aborted: Option<String>,
}

fn io_error(op: &str, rank: usize, peer: usize, timeout: Duration, e: std::io::Error) -> LearnerError {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => LearnerError::CollectiveTimeout {
            op: op.into(),
            rank,
            waited_ms: timeout.as_millis() as u64,
            msg: format!("rank {peer} sent nothing (is it alive?)"),
        },
        ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted => LearnerError::Collective {
            op: op.into(),
            rank,
            msg: format!("rank {peer} closed the connection (it exited or failed)"),
        },
        _ => LearnerError::Collective { op: op.into(), rank, msg: format!("talking to rank {peer}: {e}") },
    }
}

fn configure(s: &TcpStream, timeout: Duration) -> std::io::Result<()> {
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))
}

impl TcpCollective {
    /// Rank 0 of a group of `world`: accepts the other `world - 1` ranks on `listener` (each says
    /// hello with its rank and world size) until `timeout`; every later operation has the same
    /// deadline per socket read or write.
    pub fn leader(listener: TcpListener, world: usize, timeout: Duration, bucket_elems: usize) -> Result<Self> {
        let err = |msg: String| LearnerError::Collective { op: "join".into(), rank: 0, msg };
        listener.set_nonblocking(true).map_err(|e| err(e.to_string()))?;
        let deadline = Instant::now() + timeout;
        let mut slots: Vec<Option<TcpStream>> = (1..world).map(|_| None).collect();
        while slots.iter().any(Option::is_none) {
            match listener.accept() {
                Ok((s, from)) => {
                    s.set_nonblocking(false).map_err(|e| err(e.to_string()))?;
                    configure(&s, timeout).map_err(|e| err(e.to_string()))?;
                    match read_hello(&s, world) {
                        Ok(r) if slots[r - 1].is_none() => {
                            (&s).write_all(MAGIC).map_err(|e| err(format!("answering rank {r} at {from}: {e}")))?;
                            tracing::debug!(rank = r, %from, "tcp collective: rank joined");
                            slots[r - 1] = Some(s);
                        }
                        Ok(r) => return Err(err(format!("rank {r} joined twice (second time from {from}): two processes were given the same rank"))),
                        Err(msg) => return Err(err(format!("peer at {from}: {msg}"))),
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        let missing: Vec<usize> = (1..world).filter(|r| slots[r - 1].is_none()).collect();
                        return Err(LearnerError::CollectiveTimeout {
                            op: "join".into(),
                            rank: 0,
                            waited_ms: timeout.as_millis() as u64,
                            msg: format!("ranks {missing:?} never connected"),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(err(format!("accepting: {e}"))),
            }
        }
        let peers = slots.into_iter().flatten().collect();
        Ok(TcpCollective { rank: 0, world, timeout, bucket_elems, peers, aborted: None })
    }

    /// Rank `rank` (> 0) of a group of `world`: connects to rank 0 at `leader`, retrying until
    /// `timeout` (rank 0 may still be starting), and says hello.
    pub fn follower(leader: SocketAddr, rank: usize, world: usize, timeout: Duration, bucket_elems: usize) -> Result<Self> {
        let err = |msg: String| LearnerError::Collective { op: "join".into(), rank, msg };
        if rank == 0 || rank >= world {
            return Err(LearnerError::InvalidArgument { arg: "rank".into(), msg: format!("{rank}: a follower's rank must be in 1..{world}") });
        }
        let deadline = Instant::now() + timeout;
        let s = loop {
            let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
            match TcpStream::connect_timeout(&leader, left.min(Duration::from_secs(5))) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => {
                    return Err(LearnerError::CollectiveTimeout {
                        op: "join".into(),
                        rank,
                        waited_ms: timeout.as_millis() as u64,
                        msg: format!("rank 0 at {leader} did not accept a connection ({e})"),
                    })
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        configure(&s, timeout).map_err(|e| err(e.to_string()))?;
        let mut hello = MAGIC.to_vec();
        hello.extend_from_slice(&(rank as u32).to_le_bytes());
        hello.extend_from_slice(&(world as u32).to_le_bytes());
        (&s).write_all(&hello).map_err(|e| io_error("join", rank, 0, timeout, e))?;
        let mut ack = [0u8; 8];
        (&s).read_exact(&mut ack).map_err(|e| match e.kind() {
            ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset => err(format!("rank 0 at {leader} refused this rank (wrong world size or rank taken? see rank 0's log)")),
            _ => io_error("join", rank, 0, timeout, e),
        })?;
        if &ack != MAGIC {
            return Err(err(format!("{leader} is not a deepsearch learner collective")));
        }
        Ok(TcpCollective { rank, world, timeout, bucket_elems, peers: vec![s], aborted: None })
    }

    /// Sets the deadline of every later socket read and write (joining may have had a longer one).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        for s in &self.peers {
            let _ = configure(s, timeout);
        }
        self
    }

    /// Index into `peers` of rank `r`'s connection (rank 0: any r > 0; others: only r = 0).
    fn peer(&self, r: usize) -> &TcpStream {
        if self.rank == 0 {
            &self.peers[r - 1]
        } else {
            &self.peers[0]
        }
    }

    fn send(&self, op: &str, to: usize, h: &Header, data: &[u8]) -> Result<()> {
        let mut s = self.peer(to);
        s.write_all(&h.encode()).and_then(|_| s.write_all(data)).map_err(|e| io_error(op, self.rank, to, self.timeout, e))
    }

    /// Reads one message from `from` and checks that it belongs to the same step as `want`.
    fn recv(&self, op: &str, from: usize, want: &Header) -> Result<Vec<u8>> {
        let mut s = self.peer(from);
        let mut hb = [0u8; Header::LEN];
        s.read_exact(&mut hb).map_err(|e| io_error(op, self.rank, from, self.timeout, e))?;
        let got = Header::decode(&hb);
        if got != *want {
            return Err(LearnerError::Collective {
                op: op.into(),
                rank: self.rank,
                msg: format!("rank {from} is in a different collective ({got:?}, this rank {want:?}): the ranks ran different steps"),
            });
        }
        let mut data = vec![0u8; got.bytes as usize];
        s.read_exact(&mut data).map_err(|e| io_error(op, self.rank, from, self.timeout, e))?;
        Ok(data)
    }

    /// One bucket: returns the combined bytes (identical on every rank).
    fn exchange(&mut self, op: &str, h: Header, mine: Vec<u8>) -> Result<Vec<u8>> {
        let root = h.root as usize;
        if self.rank == 0 {
            let result = if h.op == 1 {
                let mut acc = add(Wire::of_code(h.wire), None, &mine);
                for r in 1..self.world {
                    let theirs = self.recv(op, r, &h)?;
                    acc = add(Wire::of_code(h.wire), Some(acc), &theirs);
                }
                acc
            } else if root == 0 {
                mine
            } else {
                self.recv(op, root, &h)?
            };
            for r in 1..self.world {
                if h.op == 1 || r != root {
                    self.send(op, r, &h, &result)?;
                }
            }
            Ok(result)
        } else {
            if h.op == 1 || root == self.rank {
                self.send(op, 0, &h, &mine)?;
            }
            if h.op == 2 && root == self.rank {
                return Ok(mine);
            }
            self.recv(op, 0, &h)
        }
    }

    fn run(&mut self, name: &str, tensors: &mut [Tensor], op: u8, root: usize) -> Result<()> {
        if let Some(why) = &self.aborted {
            return Err(LearnerError::Collective { op: name.into(), rank: self.rank, msg: format!("collective aborted earlier: {why}") });
        }
        let r = self.run_buckets(name, tensors, op, root);
        if let Err(e) = &r {
            tracing::error!(rank = self.rank, error = %e, "tcp collective failed; aborting it");
            self.aborted = Some(e.to_string());
            for s in &self.peers {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
        r
    }

    fn run_buckets(&mut self, name: &str, tensors: &mut [Tensor], op: u8, root: usize) -> Result<()> {
        let numels: Vec<usize> = tensors.iter().map(|t| t.numel()).collect();
        for (b, range) in buckets(&numels, self.bucket_elems).into_iter().enumerate() {
            let label = format!("{name}[bucket {b}]");
            let wire = if tensors[range.clone()].iter().any(|t| Wire::of(t.kind()) == Wire::F64) { Wire::F64 } else { Wire::F32 };
            let flat: Vec<Tensor> = tensors[range.clone()].iter().map(|t| t.detach().to_device(tch::Device::Cpu).to_kind(wire.kind()).reshape([-1])).collect();
            let buf = Tensor::cat(&flat, 0).contiguous();
            let mut mine = vec![0u8; buf.numel() * wire.size()];
            buf.copy_data_u8(&mut mine, buf.numel());
            let h = Header { op, wire: wire.code(), root: root as u32, bucket: b as u32, bytes: mine.len() as u64 };
            let out = self.exchange(&label, h, mine)?;
            let n = buf.numel() as i64;
            let result = Tensor::from_data_size(&out, &[n], wire.kind());
            let _g = tch::no_grad_guard();
            let mut off = 0i64;
            for t in &mut tensors[range] {
                let k = t.numel() as i64;
                t.copy_(&result.narrow(0, off, k).view(t.size().as_slice()).to_kind(t.kind()).to_device(t.device()));
                off += k;
            }
        }
        Ok(())
    }
}

impl Wire {
    fn code(self) -> u8 {
        match self {
            Wire::F32 => 0,
            Wire::F64 => 1,
        }
    }
    fn of_code(c: u8) -> Wire {
        if c == 1 {
            Wire::F64
        } else {
            Wire::F32
        }
    }
}

/// `acc + bytes`, element-wise in `wire`'s type (`acc` None: 0 + bytes, as ThreadCollective does).
fn add(wire: Wire, acc: Option<Vec<u8>>, bytes: &[u8]) -> Vec<u8> {
    let mut acc = acc.unwrap_or_else(|| vec![0u8; bytes.len()]);
    match wire {
        Wire::F32 => {
            for (a, b) in acc.chunks_exact_mut(4).zip(bytes.chunks_exact(4)) {
                let s = f32::from_le_bytes([a[0], a[1], a[2], a[3]]) + f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                a.copy_from_slice(&s.to_le_bytes());
            }
        }
        Wire::F64 => {
            for (a, b) in acc.chunks_exact_mut(8).zip(bytes.chunks_exact(8)) {
                let (mut x, mut y) = ([0u8; 8], [0u8; 8]);
                x.copy_from_slice(a);
                y.copy_from_slice(b);
                a.copy_from_slice(&(f64::from_le_bytes(x) + f64::from_le_bytes(y)).to_le_bytes());
            }
        }
    }
    acc
}

/// Reads a peer's hello; returns its rank.
fn read_hello(s: &TcpStream, world: usize) -> std::result::Result<usize, String> {
    let mut b = [0u8; 16];
    (&*s).read_exact(&mut b).map_err(|e| format!("no hello ({e})"))?;
    if &b[..8] != MAGIC {
        return Err("not a deepsearch learner rank (bad hello)".into());
    }
    let rank = u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize;
    let their_world = u32::from_le_bytes([b[12], b[13], b[14], b[15]]) as usize;
    if their_world != world {
        return Err(format!("rank {rank} runs world size {their_world}, rank 0 runs {world}"));
    }
    if rank == 0 || rank >= world {
        return Err(format!("rank {rank} is out of range 1..{world}"));
    }
    Ok(rank)
}

impl Collective for TcpCollective {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world(&self) -> usize {
        self.world
    }
    fn all_reduce_sum(&mut self, tensors: &mut [Tensor]) -> Result<()> {
        self.run("all_reduce", tensors, 1, 0)
    }
    fn broadcast(&mut self, tensors: &mut [Tensor], root: usize) -> Result<()> {
        if root >= self.world {
            return Err(LearnerError::InvalidArgument { arg: "root".into(), msg: format!("{root} >= world {}", self.world) });
        }
        self.run("broadcast", tensors, 2, root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_sums_follow_rank_order() {
        let h = Header { op: 2, wire: 1, root: 3, bucket: 7, bytes: 1 << 40 };
        assert_eq!(Header::decode(&h.encode()), h);
        let b: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        let s = add(Wire::F32, Some(b.clone()), &b);
        let got: Vec<f32> = s.chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        assert_eq!(got, vec![3.0, -4.0]);
    }
}
