//! GPU tests (feature `cuda-tests`; need a CUDA GPU and libnccl.so):
//! `cargo test -p deepsearch-learner --features cuda-tests --test cuda`.
//! NCCL all-reduce and broadcast over one rank per visible GPU (threads of this process), and a
//! bf16 training step on CUDA.
#![cfg(feature = "cuda-tests")]

mod common;

use deepsearch_learner::nccl::{new_unique_id, NcclCollective, NcclParams};
use deepsearch_learner::{Collective, Learner, LearnerConfig, Precision, SingleProcess};
use std::time::Duration;
use tch::{Device, Kind, Tensor};

#[test]
fn nccl_all_reduce_and_broadcast() {
    deepsearch_policy::device::parse_device("cuda:0").unwrap();
    let world = tch::Cuda::device_count() as usize;
    let id = new_unique_id().unwrap();
    let handles: Vec<_> = (0..world)
        .map(|rank| {
            let id = id.clone();
            std::thread::spawn(move || {
                let p = NcclParams {
                    rank,
                    world,
                    device: rank,
                    unique_id: id,
                    timeout: Duration::from_secs(60),
                    bucket_elems: 3,
                };
                let mut c = NcclCollective::new(p).unwrap();
                let dev = Device::Cuda(rank);
                let mut ts = vec![
                    Tensor::from_slice(&[rank as f32 + 1.0, 1.0]).to_device(dev),
                    Tensor::ones([5], (Kind::Float, dev)),
                ];
                c.all_reduce_sum(&mut ts).unwrap();
                let mut b = vec![Tensor::from_slice(&[rank as f32]).to_device(dev)];
                c.broadcast(&mut b, 0).unwrap();
                (
                    Vec::<f32>::try_from(ts[0].to_device(Device::Cpu)).unwrap(),
                    Vec::<f32>::try_from(ts[1].to_device(Device::Cpu)).unwrap(),
                    b[0].double_value(&[0]),
                )
            })
        })
        .collect();
    let n = world as f32;
    for h in handles {
        let (a, b, c) = h.join().unwrap();
        assert_eq!(a, vec![n * (n + 1.0) / 2.0, n]);
        assert_eq!(b, vec![n; 5]);
        assert_eq!(c, 0.0);
    }
}

#[test]
fn bf16_step_on_cuda() {
    let dev = deepsearch_policy::device::parse_device("cuda:0").unwrap();
    // via a saved folder: the model's RoPE table is created on the device it is loaded onto
    let dir = tempfile::tempdir().unwrap();
    common::tiny_model(1).save(dir.path(), &Default::default()).unwrap();
    let model = deepsearch_policy::PolicyModel::load(dir.path(), dev, Kind::Float).unwrap();
    let cfg = LearnerConfig {
        precision: Precision::Bf16,
        ..common::cfg()
    };
    let mut l = Learner::new(cfg, model, Box::new(SingleProcess)).unwrap();
    let before = common::weights(&l);
    let (rep, _) = l.train_on_groups(&common::synthetic_groups(1, 4, 4, 0)).unwrap();
    assert!(rep.loss.is_finite() && rep.grad_norms.iter().all(|g| g.is_finite()));
    assert!(common::max_diff(&before, &common::weights(&l)) > 0.0);
}
