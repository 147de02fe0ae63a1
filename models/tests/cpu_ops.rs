//! The fused CPU ops against the candle ops they replace, forward and backward.

use candle_core::{Device, ModuleT, Tensor, Var};
use models::nets::cpu_ops::{BatchNormTrain, LeakyMaxPool};
use models::nets::max_pool_2x2;
use std::sync::{Arc, Mutex};

fn max_difference(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn var(dims: &[usize], seed_shift: f32) -> Var {
    let t = Tensor::randn(seed_shift, 1.0f32, dims, &Device::Cpu).unwrap();
    Var::from_tensor(&t).unwrap()
}

#[test]
fn batch_norm_matches_candle_nn_in_training_mode() {
    for (batch, channels, side) in [(4, 3, 5), (2, 8, 7), (16, 2, 1), (3, 5, 34)] {
        let x = var(&[batch, channels, side, side], 0.5);
        let gamma = var(&[channels], 1.0);
        let beta = var(&[channels], 0.0);
        let statistics = Arc::new(Mutex::new(Vec::new()));
        let ours = x
            .apply_op3(
                &gamma,
                &beta,
                BatchNormTrain {
                    eps: 1e-5,
                    statistics: statistics.clone(),
                },
            )
            .unwrap();
        let reference_layer = candle_nn::BatchNorm::new(
            channels,
            Tensor::zeros(channels, candle_core::DType::F32, &Device::Cpu).unwrap(),
            Tensor::ones(channels, candle_core::DType::F32, &Device::Cpu).unwrap(),
            gamma.as_tensor().clone(),
            beta.as_tensor().clone(),
            1e-5,
        )
        .unwrap();
        let reference = reference_layer.forward_t(&x, true).unwrap();
        assert!(max_difference(&ours, &reference) < 1e-4);
        // The batch statistics handed out for the running averages.
        let mean = x.mean((0, 2, 3)).unwrap().to_vec1::<f32>().unwrap();
        for (c, &(m, _)) in statistics.lock().unwrap().iter().enumerate() {
            assert!((m as f32 - mean[c]).abs() < 1e-5);
        }
        let upstream = Tensor::randn(0f32, 1.0, ours.dims(), &Device::Cpu).unwrap();
        let g_ours = (&ours * &upstream)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g_ref = (&reference * &upstream)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for v in [&x, &gamma, &beta] {
            let d = max_difference(g_ours.get(v).unwrap(), g_ref.get(v).unwrap());
            assert!(d < 1e-3, "gradient difference {d} for {:?}", v.dims());
        }
    }
}

#[test]
fn leaky_max_pool_matches_leaky_relu_then_max_pool() {
    for (batch, channels, height, width) in
        [(2, 3, 34, 34), (1, 4, 19, 19), (2, 2, 11, 7), (3, 1, 2, 3)]
    {
        let x = var(&[batch, channels, height, width], 0.0);
        let ours = x.apply_op1(LeakyMaxPool { slope: 0.2 }).unwrap();
        let reference = max_pool_2x2(&candle_nn::ops::leaky_relu(&x, 0.2).unwrap()).unwrap();
        assert_eq!(max_difference(&ours, &reference), 0.0);
        let upstream = Tensor::randn(0f32, 1.0, ours.dims(), &Device::Cpu).unwrap();
        let g_ours = (&ours * &upstream)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g_ref = (&reference * &upstream)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(max_difference(g_ours.get(&x).unwrap(), g_ref.get(&x).unwrap()) < 1e-6);
    }
}

#[test]
fn max_pool_backward_is_exact_on_odd_sizes() {
    // A 1x1x3x3 input pooled to 1x1: only the window's maximum gets the gradient; the cut last
    // row and column get none (candle's own max_pool2d backward gives 1/4 here).
    let x = Var::from_tensor(
        &Tensor::new(
            &[[[[1f32, 5.0, 0.0], [2.0, 3.0, 9.0], [7.0, 8.0, 6.0]]]],
            &Device::Cpu,
        )
        .unwrap(),
    )
    .unwrap();
    let y = max_pool_2x2(&x).unwrap();
    assert_eq!(y.flatten_all().unwrap().to_vec1::<f32>().unwrap(), [5.0]);
    let grads = y.sum_all().unwrap().backward().unwrap();
    let g = grads
        .get(&x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(g, [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
}
