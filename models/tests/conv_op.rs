//! The im2col convolution op against candle's `conv2d`, forward and backward.

use candle_core::{Device, Tensor, Var};
use models::nets::conv_op::Conv2dOp;

fn close(a: &Tensor, b: &Tensor, tolerance: f32) {
    assert_eq!(a.dims(), b.dims());
    let difference = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let scale = b
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
        .max(1.0);
    assert!(
        difference <= tolerance * scale,
        "max difference {difference} (scale {scale})"
    );
}

#[test]
fn matches_candle_conv2d_and_its_gradients() {
    let device = Device::Cpu;
    // (batch, channels, side, outputs, kernel, stride, padding): odd and even sides, 1x1 and
    // 3x3 kernels, strides 1 and 2, paddings 0 to 2.
    let cases = [
        (2, 3, 8, 4, 3, 1, 1),
        (3, 5, 7, 6, 3, 1, 2),
        (2, 4, 9, 3, 3, 2, 1),
        (2, 4, 8, 8, 1, 2, 0),
        (1, 2, 6, 5, 3, 1, 0),
        (2, 3, 10, 4, 3, 2, 1),
        (2, 3, 5, 2, 1, 1, 2),
        (1, 2, 11, 3, 3, 3, 1),
        (2, 2, 7, 3, 5, 2, 2),
    ];
    for (batch, channels, side, outputs, kernel, stride, padding) in cases {
        let x = Var::from_tensor(
            &Tensor::randn(0f32, 1.0, (batch, channels, side, side), &device).unwrap(),
        )
        .unwrap();
        let w = Var::from_tensor(
            &Tensor::randn(0f32, 1.0, (outputs, channels, kernel, kernel), &device).unwrap(),
        )
        .unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 1.0, outputs, &device).unwrap()).unwrap();
        let ours = x.apply_op3(&w, &b, Conv2dOp { stride, padding }).unwrap();
        let reference = x
            .conv2d(&w, padding, stride, 1, 1)
            .unwrap()
            .broadcast_add(&b.reshape((1, outputs, 1, 1)).unwrap())
            .unwrap();
        close(&ours, &reference, 1e-5);
        // A fixed random upstream gradient, so every output element matters.
        let upstream = Tensor::randn(0f32, 1.0, reference.dims(), &device).unwrap();
        let ours_grads = (&ours * &upstream)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let reference_grads = (&reference * &upstream)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for var in [&x, &w, &b] {
            close(
                ours_grads.get(var).unwrap(),
                reference_grads.get(var).unwrap(),
                1e-5,
            );
        }
    }
}
