//! The fast L_CS paths against the literal definition, and their gradients.
//!
//! The portable path, the literal reference and `cs_init::conv_similarity` run on the device named
//! by `CS_INIT_TEST_DEVICE` (CPU by default, see `common::test_device`); the fused engine, which
//! reads raw slices, always runs on CPU.

use crate::common::{on_test_device, relative, relative_norm, scalar, uniform, values};
use candle_core::{DType, Tensor, Var};
use cs_init::similarity::fused::Method;
use cs_init::similarity::{fused, literal, portable, KernelGeometry, Variant};

/// At least 50 shapes: the edge cases the issue names, then random ones.
fn shapes() -> Vec<Vec<usize>> {
    let mut shapes: Vec<Vec<usize>> = vec![
        vec![1, 3, 3, 3],    // one filter: loss 0
        vec![1, 1, 1, 1],    // one 1x1 weight
        vec![4, 1, 3, 3],    // one channel (depthwise-like)
        vec![5, 4, 1, 1],    // pointwise
        vec![3, 2, 2, 3],    // non-square
        vec![4, 3, 1, 5],    // 1x5
        vec![3, 2, 5, 5],    // 5x5
        vec![3, 2, 7, 7],    // 7x7
        vec![6, 3, 7, 1],    // 7x1
        vec![4, 3, 5],       // conv1d
        vec![2, 1, 1],       // conv1d, single tap
        vec![7, 2, 4],       // conv1d, even kernel
        vec![3, 2, 3, 3, 3], // conv3d
        vec![2, 2, 1, 2, 3], // conv3d, mixed
        vec![3, 1, 2, 1, 1], // conv3d, degenerate
        vec![9, 5, 3, 3],
        vec![2, 9, 2, 2],
    ];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    while shapes.len() < 60 {
        let rank = 3 + next(3);
        let mut dims = vec![1 + next(8), 1 + next(6)];
        for _ in 2..rank {
            dims.push(1 + next(if rank == 5 { 3 } else { 5 }));
        }
        shapes.push(dims);
    }
    shapes
}

#[test]
fn fast_paths_match_the_literal_definition_in_f64() {
    for (n, dims) in shapes().iter().enumerate() {
        let w = on_test_device(&uniform(dims, n as u64));
        for variant in Variant::ALL {
            let expected = literal::conv_similarity_value(&w, variant).unwrap();
            let geometry = KernelGeometry::from_dims(dims).unwrap();
            let fused = fused::loss(&values(&w), &geometry, variant);
            let portable = scalar(&portable::conv_similarity(&w, variant).unwrap());
            if variant.filter_pairs(dims[0]) == 0 {
                assert_eq!(expected, 0.0);
                assert!(
                    fused.abs() < 1e-12 && portable.abs() < 1e-12,
                    "{dims:?} {variant}"
                );
                continue;
            }
            assert!(
                relative(fused, expected) <= 1e-10,
                "fused {dims:?} {variant}: {fused} vs {expected}"
            );
            assert!(
                relative(portable, expected) <= 1e-10,
                "portable {dims:?} {variant}: {portable} vs {expected}"
            );
        }
    }
}

#[test]
fn fast_paths_match_the_literal_definition_in_f32() {
    for (n, dims) in shapes().iter().enumerate() {
        let w = uniform(dims, 1000 + n as u64).to_dtype(DType::F32).unwrap();
        // The reference: the literal in f64 of the same (f32-rounded) numbers.
        let reference = on_test_device(&w.to_dtype(DType::F64).unwrap());
        let w = on_test_device(&w);
        let geometry = KernelGeometry::from_dims(dims).unwrap();
        let data = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for variant in Variant::ALL {
            if variant.filter_pairs(dims[0]) == 0 {
                continue;
            }
            let expected = scalar(&literal::conv_similarity(&reference, variant).unwrap());
            let fused = fused::loss(&data, &geometry, variant);
            let portable = scalar(&portable::conv_similarity(&w, variant).unwrap());
            assert!(
                relative(fused, expected) <= 1e-4,
                "fused {dims:?} {variant}"
            );
            assert!(
                relative(portable, expected) <= 1e-4,
                "portable {dims:?} {variant}"
            );
        }
    }
}

#[test]
fn single_filter_has_zero_loss_and_zero_gradient() {
    for dims in [vec![1, 3, 3, 3], vec![1, 1, 5], vec![1, 2, 1, 1]] {
        let w = on_test_device(&uniform(&dims, 7));
        let geometry = KernelGeometry::from_dims(&dims).unwrap();
        for variant in Variant::ALL {
            let (loss, gradient) = fused::loss_and_gradient(&values(&w), &geometry, variant);
            assert_eq!(loss, 0.0);
            assert!(gradient.iter().all(|&g| g == 0.0));
            let var = Var::from_tensor(&w).unwrap();
            let loss = portable::conv_similarity(var.as_tensor(), variant).unwrap();
            assert_eq!(scalar(&loss), 0.0);
            let grad = loss.backward().unwrap();
            assert!(values(grad.get(var.as_tensor()).unwrap())
                .iter()
                .all(|&g| g == 0.0));
        }
    }
}

/// Central finite differences of the fused loss, on every coordinate.
fn finite_differences(data: &[f64], geometry: &KernelGeometry, variant: Variant) -> Vec<f64> {
    let h = 1e-5;
    (0..data.len())
        .map(|k| {
            let mut plus = data.to_vec();
            let mut minus = data.to_vec();
            plus[k] += h;
            minus[k] -= h;
            (fused::loss(&plus, geometry, variant) - fused::loss(&minus, geometry, variant))
                / (2.0 * h)
        })
        .collect()
}

#[test]
fn fused_gradient_matches_central_finite_differences() {
    let cases = [
        vec![3, 2, 3, 3],
        vec![4, 3, 5],
        vec![2, 2, 2, 2, 2],
        vec![3, 1, 2, 3],
        vec![4, 3, 1, 1],
    ];
    for (n, dims) in cases.iter().enumerate() {
        let data = values(&uniform(dims, 50 + n as u64));
        let geometry = KernelGeometry::from_dims(dims).unwrap();
        for variant in Variant::ALL {
            let (_, gradient) = fused::loss_and_gradient(&data, &geometry, variant);
            let numeric = finite_differences(&data, &geometry, variant);
            let err = relative_norm(&gradient, &numeric);
            assert!(err < 1e-7, "{dims:?} {variant}: relative error {err:e}");
        }
    }
}

fn autograd(loss: impl Fn(&Tensor) -> Tensor, w: &Tensor) -> Vec<f64> {
    let var = Var::from_tensor(w).unwrap();
    let grads = loss(var.as_tensor()).backward().unwrap();
    values(grads.get(var.as_tensor()).unwrap())
}

#[test]
fn gradients_match_autograd_through_the_literal_definition() {
    for (n, dims) in shapes().iter().enumerate().step_by(3) {
        let w = on_test_device(&uniform(dims, 200 + n as u64));
        let geometry = KernelGeometry::from_dims(dims).unwrap();
        for variant in Variant::ALL {
            let expected = autograd(|w| literal::conv_similarity(w, variant).unwrap(), &w);
            let portable = autograd(|w| portable::conv_similarity(w, variant).unwrap(), &w);
            // The custom op on CPU; on other devices `conv_similarity` dispatches to the portable path.
            let through_op = autograd(|w| cs_init::conv_similarity(w, variant).unwrap(), &w);
            let (_, fused) = fused::loss_and_gradient(&values(&w), &geometry, variant);
            for (name, got) in [
                ("portable", &portable),
                ("fused op", &through_op),
                ("fused", &fused),
            ] {
                let err = relative_norm(got, &expected);
                assert!(err < 1e-10, "{name} {dims:?} {variant}: {err:e}");
            }
        }
    }
}

#[test]
fn f32_gradients_match_autograd_through_the_literal_definition_in_f64() {
    for (n, dims) in shapes().iter().enumerate().skip(1).step_by(3) {
        let w = uniform(dims, 300 + n as u64).to_dtype(DType::F32).unwrap();
        let reference = on_test_device(&w.to_dtype(DType::F64).unwrap());
        let w = on_test_device(&w);
        for variant in Variant::ALL {
            let expected = autograd(
                |w| literal::conv_similarity(w, variant).unwrap(),
                &reference,
            );
            let portable = autograd(|w| portable::conv_similarity(w, variant).unwrap(), &w);
            let through_op = autograd(|w| cs_init::conv_similarity(w, variant).unwrap(), &w);
            for (name, got) in [("portable", &portable), ("through op", &through_op)] {
                let err = relative_norm(got, &expected);
                assert!(err < 1e-5, "{name} {dims:?} {variant}: {err:e}");
            }
        }
    }
}

#[test]
fn the_custom_op_scales_its_gradient_by_the_upstream_gradient() {
    let w = on_test_device(&uniform(&[4, 3, 3, 3], 9));
    let var = Var::from_tensor(&w).unwrap();
    let loss = (cs_init::conv_similarity(var.as_tensor(), Variant::Paper).unwrap() * 3.0).unwrap();
    let scaled = values(loss.backward().unwrap().get(var.as_tensor()).unwrap());
    let plain = autograd(|w| cs_init::conv_similarity(w, Variant::Paper).unwrap(), &w);
    for (s, p) in scaled.iter().zip(&plain) {
        assert!((s - 3.0 * p).abs() <= 1e-12 * p.abs().max(1.0));
    }
}

#[test]
fn non_contiguous_weights_are_accepted() {
    // A weight stored as [C, S, k, k] and viewed as [S, C, k, k].
    let stored = on_test_device(&uniform(&[3, 5, 3, 3], 4));
    let view = stored.transpose(0, 1).unwrap();
    let expected = literal::conv_similarity_value(&view, Variant::Paper).unwrap();
    let got = scalar(&cs_init::conv_similarity(&view, Variant::Paper).unwrap());
    assert!(relative(got, expected) < 1e-10);
}

#[test]
fn non_conv_shapes_are_rejected_with_the_shape() {
    let w = on_test_device(&uniform(&[4, 4], 0).to_dtype(DType::F32).unwrap());
    let err = cs_init::conv_similarity(&w, Variant::Paper)
        .unwrap_err()
        .to_string();
    assert!(err.contains("[4, 4]"), "{err}");
}

/// Shapes where the paths differ most: long 1-D kernels, large 2-D and 3-D kernels, depthwise
/// and few-channel weights, odd sizes, filter counts that leave a partial block of 16.
fn path_shapes() -> Vec<Vec<usize>> {
    vec![
        vec![3, 1, 256],     // a long 1-D kernel, one channel
        vec![4, 2, 37],      // odd 1-D length
        vec![6, 1, 7, 7],    // depthwise 7x7
        vec![17, 1, 3, 3],   // depthwise, one full block and one filter
        vec![3, 2, 11, 11],  // 11x11
        vec![4, 3, 7, 7],    // a 3-channel stem
        vec![2, 3, 3, 7, 7], // 3x7x7 3-D stem
        vec![3, 2, 5, 4],    // odd, non-square
        vec![2, 1, 64, 1],   // a [k, 1] kernel
        vec![18, 20, 3, 3],  // a partial SIMD row of channels
    ]
}

#[test]
fn every_path_matches_the_literal_definition() {
    for (n, dims) in path_shapes().iter().enumerate() {
        let geometry = KernelGeometry::from_dims(dims).unwrap();
        let w64 = uniform(dims, 700 + n as u64);
        let w32 = w64.to_dtype(DType::F32).unwrap();
        let rounded = w32.to_dtype(DType::F64).unwrap();
        let data32 = w32.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for variant in Variant::ALL {
            let exact = literal::conv_similarity_value(&on_test_device(&w64), variant).unwrap();
            let exact32 =
                literal::conv_similarity_value(&on_test_device(&rounded), variant).unwrap();
            for path in Method::ALL {
                let got = fused::loss_on(path, &values(&w64), &geometry, variant);
                assert!(
                    relative(got, exact) <= 1e-10,
                    "{path:?} f64 {dims:?} {variant}: {got} vs {exact}"
                );
                let got = fused::loss_on(path, &data32, &geometry, variant);
                assert!(
                    relative(got, exact32) <= 1e-4,
                    "{path:?} f32 {dims:?} {variant}: {got} vs {exact32}"
                );
            }
        }
    }
}

#[test]
fn every_path_has_the_gradient_of_the_literal_definition() {
    for (n, dims) in path_shapes().iter().enumerate() {
        let geometry = KernelGeometry::from_dims(dims).unwrap();
        let w = uniform(dims, 800 + n as u64);
        let w32 = w.to_dtype(DType::F32).unwrap();
        let data32 = w32.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for variant in Variant::ALL {
            let expected = autograd(
                |w| literal::conv_similarity(w, variant).unwrap(),
                &on_test_device(&w),
            );
            let expected32 = autograd(
                |w| literal::conv_similarity(w, variant).unwrap(),
                &on_test_device(&w32.to_dtype(DType::F64).unwrap()),
            );
            for path in Method::ALL {
                let (_, got) = fused::loss_and_gradient_on(path, &values(&w), &geometry, variant);
                let err = relative_norm(&got, &expected);
                assert!(err < 1e-10, "{path:?} f64 {dims:?} {variant}: {err:e}");
                let (_, got) = fused::loss_and_gradient_on(path, &data32, &geometry, variant);
                let got: Vec<f64> = got.iter().map(|&g| f64::from(g)).collect();
                let err = relative_norm(&got, &expected32);
                assert!(err < 1e-4, "{path:?} f32 {dims:?} {variant}: {err:e}");
            }
        }
    }
}

#[test]
fn every_path_matches_central_finite_differences() {
    for (n, dims) in [
        vec![3, 1, 16],
        vec![2, 2, 3, 3],
        vec![17, 1, 2, 2],
        vec![2, 2, 2, 1, 3],
    ]
    .iter()
    .enumerate()
    {
        let data = values(&uniform(dims, 900 + n as u64));
        let geometry = KernelGeometry::from_dims(dims).unwrap();
        for variant in Variant::ALL {
            for path in Method::ALL {
                let h = 1e-5;
                let numeric: Vec<f64> = (0..data.len())
                    .map(|k| {
                        let (mut plus, mut minus) = (data.clone(), data.clone());
                        plus[k] += h;
                        minus[k] -= h;
                        (fused::loss_on(path, &plus, &geometry, variant)
                            - fused::loss_on(path, &minus, &geometry, variant))
                            / (2.0 * h)
                    })
                    .collect();
                let (_, gradient) = fused::loss_and_gradient_on(path, &data, &geometry, variant);
                let err = relative_norm(&gradient, &numeric);
                assert!(err < 1e-7, "{path:?} {dims:?} {variant}: {err:e}");
            }
        }
    }
}

#[test]
fn the_custom_op_runs_the_chosen_path() {
    for (n, dims) in [vec![20, 1, 7, 7], vec![3, 1, 200], vec![5, 2, 48, 1]]
        .iter()
        .enumerate()
    {
        let w = uniform(dims, 950 + n as u64);
        let geometry = KernelGeometry::from_dims(dims).unwrap();
        assert_ne!(
            Method::choose(&geometry, Variant::Paper),
            Method::Channels,
            "{dims:?}"
        );
        let expected = autograd(|w| literal::conv_similarity(w, Variant::Paper).unwrap(), &w);
        let through_op = autograd(|w| cs_init::conv_similarity(w, Variant::Paper).unwrap(), &w);
        let err = relative_norm(&through_op, &expected);
        assert!(err < 1e-10, "{dims:?}: {err:e}");
    }
}

#[test]
fn the_cost_model_picks_the_path_the_shape_needs() {
    let choose =
        |dims: &[usize]| Method::choose(&KernelGeometry::from_dims(dims).unwrap(), Variant::Paper);
    assert_eq!(choose(&[512, 512, 3, 3]), Method::Channels);
    assert_eq!(choose(&[768, 1, 7, 7]), Method::Filters);
    assert_eq!(choose(&[64, 3, 7, 7]), Method::Filters);
    assert_eq!(choose(&[208, 8, 3, 3]), Method::Filters);
    assert_eq!(choose(&[258, 1, 256]), Method::Spectral);
    assert_eq!(choose(&[1024, 1, 512, 1]), Method::Spectral);
}
