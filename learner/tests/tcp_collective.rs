//! The TCP collective between processes (issue #5: the CPU stand-in of NCCL), over real sockets on
//! 127.0.0.1 with each rank on its own thread: the same all-reduce and broadcast results as the
//! in-process thread ranks, bit for bit, and a dead, silent or mismatched peer is an error naming
//! it within the deadline, never a hang.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use deepsearch_learner::{Collective, TcpCollective, ThreadGroup};
use tch::{Kind, Tensor};

/// Bucket of 5 elements: the tensors below span several buckets.
const BUCKET: usize = 5;

/// Rank `r`'s tensors: values whose float sums depend on the order of addition.
fn tensors(r: usize) -> Vec<Tensor> {
    let x = |i: usize| ((r * 7 + i) as f32 * 0.37).sin() * 10f32.powi((i % 5) as i32 - 2);
    vec![
        Tensor::from_slice(&(0..7).map(x).collect::<Vec<f32>>()).view([7]),
        Tensor::from_slice(&(0..6).map(|i| x(i + 7)).collect::<Vec<f32>>()).view([2, 3]),
        Tensor::from_slice(&(0..3).map(|i| x(i + 20) as f64 * 1.000000001).collect::<Vec<f64>>()),
        Tensor::from_slice(&(0..4).map(|i| x(i + 30)).collect::<Vec<f32>>()).to_kind(Kind::BFloat16),
    ]
}

/// Indices (in [`ops`]'s output) of the f64 tensors.
const F64: [usize; 2] = [2, 6];

/// all_reduce, then broadcast from `root`, on one rank; returns the tensors as f64 vectors.
fn ops(c: &mut dyn Collective, root: usize) -> Vec<Vec<f64>> {
    let mut ts = tensors(c.rank());
    c.all_reduce_sum(&mut ts).unwrap();
    let mut b = tensors(c.rank() + 100);
    c.broadcast(&mut b, root).unwrap();
    ts.iter().chain(&b).map(|t| Vec::<f64>::try_from(t.to_kind(Kind::Double).reshape([-1])).unwrap()).collect()
}

/// `world` TCP ranks on threads: rank 0 listens on 127.0.0.1:0, the others connect.
fn tcp_group(world: usize, timeout: Duration) -> Vec<std::thread::JoinHandle<TcpCollective>> {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let mut hs = vec![std::thread::spawn(move || TcpCollective::leader(l, world, timeout, BUCKET).unwrap())];
    for r in 1..world {
        hs.push(std::thread::spawn(move || TcpCollective::follower(addr, r, world, timeout, BUCKET).unwrap()));
    }
    hs
}

#[test]
fn tcp_ranks_give_the_thread_ranks_results_bit_for_bit() {
    let world = 3;
    let root = 2;
    let threads: Vec<_> = ThreadGroup::new(world, Duration::from_secs(30), BUCKET)
        .into_iter()
        .map(|mut c| std::thread::spawn(move || ops(&mut c, root)))
        .collect();
    let want: Vec<_> = threads.into_iter().map(|h| h.join().unwrap()).collect();
    let joined: Vec<TcpCollective> = tcp_group(world, Duration::from_secs(30)).into_iter().map(|h| h.join().unwrap()).collect();
    let got: Vec<_> = joined
        .into_iter()
        .map(|mut c| std::thread::spawn(move || ops(&mut c, root)))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    for r in 0..world {
        assert_eq!(got[r], got[0], "rank {r} differs from rank 0");
        for (i, (g, w)) in got[r].iter().zip(&want[r]).enumerate() {
            if F64.contains(&i) {
                // the thread ranks carry f64 as f32; tcp keeps f64
                let d = g.iter().zip(w).map(|(a, b)| ((a - b) / b.abs().max(1e-3)).abs()).fold(0.0, f64::max);
                assert!(d < 1e-6, "rank {r} tensor {i}: relative difference {d}");
            } else {
                assert_eq!(g, w, "rank {r} tensor {i}: tcp and thread collectives differ");
            }
        }
    }
    // the values are the sums and the root's tensors, not something else that agrees
    let expect_sum: f64 = (0..world).map(|r| Vec::<f32>::try_from(&tensors(r)[0]).unwrap()[3] as f64).sum();
    assert!((got[0][0][3] - expect_sum).abs() < 1e-4, "{} vs {expect_sum}", got[0][0][3]);
    let root_b = Vec::<f64>::try_from(&tensors(root + 100)[2]).unwrap();
    assert_eq!(got[1][6], root_b, "broadcast of the f64 tensor from rank {root}");
}

#[test]
fn a_dead_peer_is_named_at_once_and_a_silent_one_within_the_deadline() {
    // dead: rank 1's process is gone (its socket closed)
    let mut hs = tcp_group(2, Duration::from_secs(20));
    let follower = hs.pop().unwrap().join().unwrap();
    let mut leader = hs.pop().unwrap().join().unwrap();
    drop(follower);
    let t0 = Instant::now();
    let err = leader.all_reduce_sum(&mut tensors(0)).unwrap_err().to_string();
    assert!(err.contains("rank 1 closed the connection") && err.contains("all_reduce[bucket 0]"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(5), "took {:?}", t0.elapsed());
    let again = leader.broadcast(&mut tensors(0), 0).unwrap_err().to_string();
    assert!(again.contains("aborted earlier"), "{again}");

    // silent: rank 1 is connected but never calls the collective
    let timeout = Duration::from_millis(700);
    let mut hs = tcp_group(2, timeout);
    let silent = hs.pop().unwrap().join().unwrap();
    let mut leader = hs.pop().unwrap().join().unwrap();
    let t0 = Instant::now();
    let err = leader.all_reduce_sum(&mut tensors(0)).unwrap_err().to_string();
    let waited = t0.elapsed();
    assert!(err.contains("deadline of 700 ms passed") && err.contains("rank 1 sent nothing"), "{err}");
    assert!(waited >= timeout && waited < timeout * 4, "waited {waited:?}");
    drop(silent);

    // rank 0 waiting for a world that never comes: the missing rank is named
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let err = TcpCollective::leader(l, 2, Duration::from_millis(300), BUCKET).unwrap_err().to_string();
    assert!(err.contains("ranks [1] never connected"), "{err}");
}

#[test]
fn a_rank_with_another_world_size_is_refused_with_both_sizes_named() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let leader = std::thread::spawn(move || TcpCollective::leader(l, 2, Duration::from_secs(10), BUCKET).unwrap_err().to_string());
    let follower = TcpCollective::follower(addr, 1, 3, Duration::from_secs(10), BUCKET).unwrap_err().to_string();
    let leader = leader.join().unwrap();
    assert!(leader.contains("rank 1 runs world size 3, rank 0 runs 2"), "{leader}");
    assert!(follower.contains("refused"), "{follower}");
    let bad = TcpCollective::follower(addr, 0, 2, Duration::from_secs(1), BUCKET).unwrap_err().to_string();
    assert!(bad.contains("rank") && bad.contains("1..2"), "{bad}");
}
